#!/usr/bin/env bash
# The prepared GPU check (docs/benchmarks.md, "The GPU check"): on a machine with a GPU, no network
# and its own Python (3.12, torch with CUDA), in at most 5.5 minutes,
#
#   1. install    the bundle .gpu_bundle/ (benchmarks/gpu_bundle.py builds it) into $GPU_CHECK_SITE
#                 (/tmp/site; pip install --no-index --no-deps --target, the .tar.xz unpacked there,
#                 PYTHONPATH), unless this Python already has the pipeline's versions (then nothing
#                 is installed)
#   2. env        Python, torch, CUDA, the GPU and driver, the packages' versions
#   3. pytest     tests/test_gpu.py, including the tiny workflow with device: cuda (run 1)
#   4. workflow   the same tiny workflow again (run 2; run 1 too if pytest did not make it)
#   5. compare    run 1 against run 2: every safetensors, score and prediction file and results.parquet,
#                 byte for byte
#   6. throughput MiniLM's architecture (random weights) scoring and training in fp32, bf16, tf32:
#                 examples/s, tokens/s, s/step (benchmarks/gpu_check.py)
#   7. report     $OUT/gpu_check.json and $OUT/gpu_check.md, with every step's exit status and time
#
# and leaves in $OUT (default ./gpu_check_out): gpu_check.md, gpu_check.json, env.txt (nvidia-smi and
# the install's output), pytest.log, workflow.log (both runs' Snakemake output), throughput.log and
# job_logs.tar.gz (run 1's per-job logs). Each step runs under `timeout`, within an overall budget of
# $GPU_CHECK_SECONDS (default 330) that keeps time for the report, so one step that hangs or fails
# does not take the others with it; the script exits 0 when every step did.
#
#   GPU_CHECK_DEVICE=cpu PYTHON=.venv/bin/python GPU_CHECK_SECONDS=2400 bash benchmarks/gpu_check.sh
#       the same steps on the CPU with this repository's environment (a few repetitions only, step
#       limits x 5): checks the check's plumbing
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-$REPO/gpu_check_out}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
PY=${PYTHON:-python3}
BUNDLE=${GPU_CHECK_BUNDLE:-$REPO/.gpu_bundle}
WORK=${GPU_CHECK_WORK:-/tmp/gpu_check}
SITE=${GPU_CHECK_SITE:-/tmp/site}
BUDGET=${GPU_CHECK_SECONDS:-330}
REPORT_RESERVE=25
START=$(date +%s)
mkdir -p "$OUT"
rm -rf "$WORK"
mkdir -p "$WORK"
: > "$WORK/steps.tsv"

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONDONTWRITEBYTECODE=1
export ADAPTER_PRUNING_TEST_DEVICE=$DEVICE GPU_CHECK_WORKDIR=$WORK
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
if [ -d "$BUNDLE/minilm" ]; then export ADAPTER_PRUNING_MINILM_DIR=$BUNDLE/minilm; fi
DATA=$REPO/../shared/data
if [ -d "$BUNDLE/data" ]; then DATA=$BUNDLE/data; fi
export ADAPTER_PRUNING_DATA=$DATA
QUICK=""
LIMIT_SCALE=${GPU_CHECK_LIMIT_SCALE:-1}
if [ "$DEVICE" != cuda ]; then QUICK=--quick; LIMIT_SCALE=${GPU_CHECK_LIMIT_SCALE:-5}; fi

# step NAME LIMIT_SECONDS COMMAND...: run COMMAND under timeout (LIMIT, or what is left of the budget
# minus the report's reserve; LIMIT x GPU_CHECK_LIMIT_SCALE, default 1, 5 in CPU mode), record "name,
# exit status, seconds" in $WORK/steps.tsv.
step() {
  local name=$1 limit=$(( $2 * LIMIT_SCALE ))
  shift 2
  local left=$(( START + BUDGET - REPORT_RESERVE - $(date +%s) ))
  if [ "$left" -lt 10 ]; then
    printf '%s\t%s\t%s\t%s\n' "$name" 124 0 "skipped: no time left" >> "$WORK/steps.tsv"
    echo "== $name: skipped (budget spent)"
    return 124
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (at most $limit s)"
  local t0 rc
  t0=$(date +%s.%N)
  timeout -k 5 "$limit" "$@"
  rc=$?
  local secs
  secs=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))" 2>/dev/null || echo 0)
  local note=""
  [ "$rc" = 124 ] && note="timed out after $limit s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$secs" "$note" >> "$WORK/steps.tsv"
  echo "== $name: exit $rc after $secs s"
  return "$rc"
}

needs_bundle() {
  # 0 (needed) when this Python lacks one of the bundle's packages at the bundle's version
  [ -f "$BUNDLE/MANIFEST.txt" ] || return 1
  "$PY" - "$BUNDLE/MANIFEST.txt" <<'EOF'
import importlib.metadata as md, sys
want = [l.split()[1] for l in open(sys.argv[1]) if l.startswith("#   ")]
bad = []
for req in want:
    name, version = req.split("==")
    try:
        if md.version(name) != version:
            bad.append(f"{name} {md.version(name)} (want {version})")
    except md.PackageNotFoundError:
        bad.append(f"{name} missing")
print("packages to install:", ", ".join(bad) or "none")
sys.exit(0 if bad else 1)
EOF
}

{
  echo "# $(date -u +%FT%TZ) device=$DEVICE python=$PY"
  nvidia-smi 2>&1 || echo "(no nvidia-smi)"
  if needs_bundle; then
    step install 90 "$PY" benchmarks/gpu_check.py install --bundle "$BUNDLE" --site "$SITE"
    export PYTHONPATH=$SITE:$PYTHONPATH
  else
    printf '%s\t%s\t%s\t%s\n' install 0 0 "nothing to install" >> "$WORK/steps.tsv"
  fi
  step env 30 "$PY" benchmarks/gpu_check.py env --out "$WORK/env.json"
} > "$OUT/env.txt" 2>&1

step pytest 150 "$PY" -m pytest tests/test_gpu.py -v -p no:cacheprovider --junitxml "$WORK/pytest.xml" \
  > "$OUT/pytest.log" 2>&1
{
  if [ ! -f "$WORK/run1/results/summary/results.parquet" ]; then
    [ -d "$WORK/tiny-bert" ] || "$PY" -c "from adapter_pruning.testing import make_tiny_bert as m; \
m('$WORK/tiny-bert', hidden_size=64, intermediate_size=128, max_position_embeddings=128)"
    step workflow1 120 "$PY" benchmarks/gpu_check.py workflow "$WORK/run1" --model "$WORK/tiny-bert" --data "$DATA" \
      --device "$DEVICE" --out "$WORK/run1.json"
  fi
  step workflow2 120 "$PY" benchmarks/gpu_check.py workflow "$WORK/run2" --model "$WORK/tiny-bert" --data "$DATA" \
    --device "$DEVICE" --out "$WORK/run2.json"
  step compare 30 "$PY" benchmarks/gpu_check.py compare "$WORK/run1" "$WORK/run2" --out "$WORK/compare.json"
  for r in run1 run2; do echo "===== $r"; cat "$WORK/$r/snakemake.log" 2>/dev/null; done
} > "$OUT/workflow.log" 2>&1
step throughput 100 "$PY" benchmarks/gpu_check.py throughput --data "$DATA" --device "$DEVICE" --work "$WORK" \
  $QUICK --out "$WORK/throughput.json" > "$OUT/throughput.log" 2>&1
tar -czf "$OUT/job_logs.tar.gz" -C "$WORK/run1" logs 2>/dev/null || true
"$PY" benchmarks/gpu_check.py report --work "$WORK" --out "$OUT" > /dev/null 2>> "$OUT/env.txt"
cat "$OUT/gpu_check.md" 2>/dev/null || echo "no report (see $OUT/env.txt)"
failed=$(awk -F'\t' '$2 != 0 {print $1}' "$WORK/steps.tsv" | tr '\n' ' ')
echo "total $(( $(date +%s) - START )) s; failed steps: ${failed:-none}"
[ -z "$failed" ]
