#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine: system packages, a virtual environment, the toolkit.
# GPU users: create .venv and install the CUDA build of torch into it first
# (e.g. `.venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cu126`); this script then keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql-15)
ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1 || need_apt+=(postgresql-15-postgis-3)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# torch first, so that nothing below pulls the multi-GB CUDA build on a CPU machine.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/pip install -q --disable-pip-version-check "torch==2.13.0"
fi
stamp=.venv/.omnisat-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e ".[server,test]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import omnisat_data, omnisat_model, omnisat_train, cli" 
  touch "$stamp"
fi
