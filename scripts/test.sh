#!/usr/bin/env bash
# The full test suite (real PostgreSQL/pgstac, HTTP Range server, GDAL over /vsicurl). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
