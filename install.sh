#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with everything the pipeline and its tests need.
# torch is pinned to 2.13.0 (CPU build): a looser requirement pulls a multi-GB CUDA build.
# On a GPU machine, install the CUDA build of torch first (TORCH_SPEC="torch==2.13.0" with the
# index URL of your CUDA version) or set TORCH_SPEC to the torch you already use.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "$TORCH_SPEC"
.venv/bin/python -m pip install -q -e ".[test]"
echo "installed: $(.venv/bin/python -c 'import torch, transformers, adapters, snakemake; print("torch", torch.__version__, "transformers", transformers.__version__, "adapters", adapters.__version__, "snakemake", snakemake.__version__)')"
