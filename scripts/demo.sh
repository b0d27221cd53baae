#!/usr/bin/env bash
# The main job on the embedded default: the demo world, then TreeSatAI-TS built from it. Extra arguments go to `omnisat-data demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/omnisat-data demo "$@"
