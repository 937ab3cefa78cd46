#!/usr/bin/env bash
# Set-up: a virtual environment in .venv with everything the pipeline and its tests need.
#
#   bash install.sh              install (or refresh) .venv, then record what it was installed from
#   bash install.sh --if-needed  the same, but only when .venv is missing or not current (make run/test use this)
#   bash install.sh --check      exit 0 when .venv is current, 1 when not; installs nothing
#
# ".venv is current" means: .venv/bin/python exists and .venv/.install-stamp holds the sha256 of
# pyproject.toml and this script as they were at the last successful install.
#
# torch is pinned to 2.13.0 (CPU build): a looser requirement pulls a multi-GB CUDA build.
# On a GPU machine, install the CUDA build of torch first (TORCH_SPEC="torch==2.13.0" with the
# index URL of your CUDA version) or set TORCH_SPEC to the torch you already use; a later refresh
# keeps it, since "torch==2.13.0" is satisfied by 2.13.0+cu….
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
STAMP=.venv/.install-stamp

fingerprint() {
  if command -v sha256sum >/dev/null 2>&1; then
    cat pyproject.toml install.sh | sha256sum | cut -d' ' -f1
  else
    cat pyproject.toml install.sh | shasum -a 256 | cut -d' ' -f1
  fi
}

is_current() {
  [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(fingerprint)" ]
}

case "${1:-}" in
  "") ;;
  --check)
    if is_current; then echo ".venv is current"; exit 0; fi
    echo ".venv is missing or older than pyproject.toml/install.sh"; exit 1 ;;
  --if-needed)
    if is_current; then echo ".venv is current (pyproject.toml and install.sh unchanged): nothing to install"; exit 0; fi
    echo ".venv is missing or older than pyproject.toml/install.sh: installing" ;;
  *)
    echo "install.sh: unknown option '$1' (use no option, --if-needed or --check)" >&2; exit 2 ;;
esac

want=$(fingerprint)
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
rm -f "$STAMP"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "$TORCH_SPEC"
.venv/bin/python -m pip install -q -e ".[test]"
versions=$(.venv/bin/python -c 'import torch, transformers, adapters, snakemake; print("torch", torch.__version__, "transformers", transformers.__version__, "adapters", adapters.__version__, "snakemake", snakemake.__version__)')
echo "$want" > "$STAMP"
echo "installed: $versions"
