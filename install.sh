#!/usr/bin/env bash
# Set-up: a virtual environment in .venv with everything the pipeline and its tests need.
#
#   bash install.sh              install (or refresh) .venv, then record what it was installed from
#   bash install.sh --if-needed  the same, but only when .venv is missing or not current (make run/test use this)
#   bash install.sh --check      exit 0 when .venv is current, 1 when not; installs nothing
#   bash install.sh --torch-plan print what would be done about torch (the pip arguments, and whether
#                                the torch in .venv is kept or replaced); installs nothing
#
# ".venv is current" means: .venv/bin/python exists, .venv/.install-stamp holds the sha256 of
# pyproject.toml and this script as they were at the last successful install, and the torch spec
# (below) is the one that install used (.venv/.torch-spec).
#
# torch: TORCH_SPEC, default "torch==2.13.0" (the CPU build on this project's machines; a looser
# requirement pulls a multi-GB CUDA build). It is split into words and given to pip as they are, so it
# may carry pip options, e.g. a CUDA build from PyTorch's index:
#
#   TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" bash install.sh
#
# The spec is remembered in .venv/.torch-spec: later runs without TORCH_SPEC (make run, make test)
# keep using it, and a different TORCH_SPEC makes .venv not current. When the spec's index URL names a
# build (/whl/cu126, /whl/cpu, ...) and the torch in .venv is of the other kind (a CPU build where a CUDA
# build is asked for, or the reverse), that torch is uninstalled first and the message says so: pip
# alone would keep it, since "torch==2.13.0" is satisfied by 2.13.0+cpu. At the end the script says
# which torch it installed and, for a CUDA build, whether this machine can use it (and why not).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
DEFAULT_TORCH_SPEC="torch==2.13.0"
STAMP=$VENV/.install-stamp
SPEC_FILE=$VENV/.torch-spec

recorded_spec() {
  if [ -f "$SPEC_FILE" ]; then cat "$SPEC_FILE"; else echo "$DEFAULT_TORCH_SPEC"; fi
}
TORCH_SPEC=${TORCH_SPEC:-$(recorded_spec)}
read -r -a TORCH_ARGS <<< "$TORCH_SPEC"

fingerprint() {
  if command -v sha256sum >/dev/null 2>&1; then
    cat pyproject.toml install.sh | sha256sum | cut -d' ' -f1
  else
    cat pyproject.toml install.sh | shasum -a 256 | cut -d' ' -f1
  fi
}

is_current() {
  [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(fingerprint)" ] \
    && [ "$(recorded_spec)" = "$TORCH_SPEC" ]
}

# The build the spec asks for, from its index URL: "cuda", "cpu", or "" (unknown: pip decides).
wanted_build() {
  case "$TORCH_SPEC" in
    */whl/cu[0-9]*) echo cuda ;;
    */whl/cpu*) echo cpu ;;
    *) echo "" ;;
  esac
}

# The build of the torch in $VENV, read from torch/version.py without importing torch:
# "cuda <version>", "cpu", or "" (no torch there).
installed_build() {
  [ -x "$VENV/bin/python" ] || return 0
  "$VENV/bin/python" - <<'EOF' 2>/dev/null || true
import importlib.util, pathlib, re
spec = importlib.util.find_spec("torch")
if spec and spec.submodule_search_locations:
    text = pathlib.Path(next(iter(spec.submodule_search_locations)), "version.py").read_text()
    version = re.search(r"^__version__\s*=\s*'([^']*)'", text, re.M)
    cuda = re.search(r"^cuda(?:\s*:\s*[^=]+)?\s*=\s*(None|'([^']*)')", text, re.M)
    if version and cuda:
        print(("cpu" if cuda.group(1) == "None" else f"cuda {cuda.group(2)}"), version.group(1))
EOF
}

# "keep" or "replace: <why>" for the torch already in $VENV.
torch_decision() {
  local want have
  want=$(wanted_build)
  have=$(installed_build)
  if [ -z "$have" ] || [ -z "$want" ]; then echo keep; return; fi
  case "$want:${have%% *}" in
    cuda:cpu) echo "replace: torch ${have##* } in $VENV is a CPU build, and TORCH_SPEC asks for a CUDA build ($TORCH_SPEC)" ;;
    cpu:cuda) echo "replace: torch ${have##* } in $VENV is a CUDA build, and TORCH_SPEC asks for the CPU build ($TORCH_SPEC)" ;;
    *) echo keep ;;
  esac
}

case "${1:-}" in
  "") ;;
  --check)
    if is_current; then echo "$VENV is current"; exit 0; fi
    echo "$VENV is missing or older than pyproject.toml/install.sh/TORCH_SPEC"; exit 1 ;;
  --if-needed)
    if is_current; then echo "$VENV is current (pyproject.toml, install.sh and TORCH_SPEC unchanged): nothing to install"; exit 0; fi
    echo "$VENV is missing or older than pyproject.toml/install.sh/TORCH_SPEC: installing" ;;
  --torch-plan)
    printf 'pip install'; printf ' %q' "${TORCH_ARGS[@]}"; printf '\n'
    echo "wanted build: $(wanted_build || true)"
    echo "installed: $(installed_build)"
    echo "$(torch_decision)"
    exit 0 ;;
  *)
    echo "install.sh: unknown option '$1' (use no option, --if-needed, --check or --torch-plan)" >&2; exit 2 ;;
esac

want=$(fingerprint)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
rm -f "$STAMP"
"$VENV/bin/python" -m pip install -q --upgrade pip
decision=$(torch_decision)
if [ "$decision" != keep ]; then
  echo "install.sh: ${decision#replace: }: uninstalling it first"
  "$VENV/bin/python" -m pip uninstall -q -y torch
fi
"$VENV/bin/python" -m pip install -q "${TORCH_ARGS[@]}"
"$VENV/bin/python" -m pip install -q -e ".[test]"
versions=$("$VENV/bin/python" -c 'import torch, transformers, adapters, snakemake; print("torch", torch.__version__, "transformers", transformers.__version__, "adapters", adapters.__version__, "snakemake", snakemake.__version__)')
cuda=$("$VENV/bin/python" -c '
import torch
from adapter_pruning.devices import cuda_problem
if torch.version.cuda is None:
    print("CPU build (no CUDA)")
else:
    problem = cuda_problem()
    print(f"CUDA {torch.version.cuda} build: " + ("usable here" if problem is None else f"NOT usable here: {problem}"))
')
echo "$TORCH_SPEC" > "$SPEC_FILE"
echo "$want" > "$STAMP"
echo "installed: $versions"
echo "torch: $cuda"
