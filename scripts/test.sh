#!/usr/bin/env bash
# The test suite (real PostgreSQL/pgstac, HTTP Range server, GDAL over /vsicurl), without the cases marked
# slow (the demo's whole main job, the fault campaign, kills, DDP, Dask clusters): those run with --all,
# or alone with -m slow. Other arguments go to pytest; CI runs both halves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
marker=(-m "not slow")
args=()
for a in "$@"; do
  case "$a" in
    --all) marker=() ;;
    -m) marker=(); args+=("$a") ;;  # an explicit marker expression replaces the default
    *) args+=("$a") ;;
  esac
done
exec .venv/bin/python -m pytest "${marker[@]}" "${args[@]}"
