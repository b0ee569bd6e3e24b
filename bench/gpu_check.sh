#!/usr/bin/env bash
# GPU check of the Triton backends: environment, GPU tests, benchmarks (rfmfast bench --device
# cuda), within a time budget.
#
#   bash bench/gpu_check.sh              # on the GPU machine; results under $OUT
#   bash bench/gpu_check.sh --dry-run    # anywhere: interpreter tests + the GPU benchmarks at
#                                        # tiny sizes in Triton's interpreter
#
# Writes into $OUT (default bench/results/gpu_check_<time>): env.txt, tests.log, bench.log,
# rfmfast_bench.csv (the harness's one schema: append its rows to a file in bench/results),
# one PNG per benchmark and gpu_summary.md (rfmfast bench --report of those rows).
# Nothing is downloaded. The Triton backends need no compiled code, so the package runs from
# this source tree (PYTHONPATH); RFMFAST_GPU_CHECK_BUILD=1 also tries an offline editable install
# (the C++ CPU extension, not needed here). Python wheels placed in .whl/ (e.g. xrfm, for the
# AGOP baseline) are installed offline into /tmp/site first.
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-$ROOT/bench/results/gpu_check_$(date -u +%Y%m%d_%H%M%S)}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
START=$(date +%s)
TOTAL_S=${GPU_CHECK_TOTAL_S:-430}            # hard budget for everything (the target is 8 min)
elapsed() { echo $(( $(date +%s) - START )); }
log() { echo "[gpu_check +$(elapsed)s] $*"; }
export PYTHONUNBUFFERED=1

# ---- 0. environment ----------------------------------------------------------------------
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm \
    --format=csv 2>&1 || echo "nvidia-smi: not available"
  $PY -c "import sys, torch, triton; print(sys.version.split()[0], 'torch', torch.__version__, \
'triton', triton.__version__, 'cuda', torch.cuda.is_available())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

if ls .whl/*.whl > /dev/null 2>&1; then
  log "installing carried wheels: $(ls .whl/*.whl | xargs -n1 basename | tr '\n' ' ')"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

# ---- 1. build ------------------------------------------------------------------------------
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
if [ "${RFMFAST_GPU_CHECK_BUILD:-0}" = 1 ]; then
  log "pip install -e . --no-build-isolation --no-deps (offline)"
  timeout 150 $PY -m pip install -q --no-index --no-build-isolation --no-deps -e . \
    >> "$OUT/env.txt" 2>&1 || log "editable install failed (see env.txt); running from source"
fi
$PY -m rfmfast.info >> "$OUT/env.txt" 2>&1 || log "rfmfast.info failed (see env.txt)"
tail -n 8 "$OUT/env.txt"
if [ $DRY = 0 ] && ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  log "no CUDA device visible to torch: use --dry-run on a machine without GPU"; exit 2
fi

# ---- 2. tests ------------------------------------------------------------------------------
# First the tests marked gpu outside test_triton_backend.py (solvers, RFM and lin-RFM on CUDA
# tensors: quick), then the Triton tests: the backend's own (test_triton_backend.py) and the op
# tests' triton cases. One block-size config per kernel (no autotuning runs): the tests check
# results, not speed. Compilation dominates on a fresh machine: spread the op tests over workers
# where pytest-xdist is.
TRITON_TESTS=(tests/test_triton_backend.py tests/test_kernel_matrix.py tests/test_kernel_matmul.py
              tests/test_agop.py tests/test_dual_kernel.py tests/test_autograd.py)
if [ $DRY = 0 ]; then
  log "tests: pytest -m gpu (outside tests/test_triton_backend.py)"
  RFMFAST_TRITON_AUTOTUNE=0 timeout 150 $PY -m pytest -q -p no:cacheprovider -rs -m gpu tests \
    --ignore=tests/test_triton_backend.py 2>&1 | tee "$OUT/tests.log"
  GPU_RC=${PIPESTATUS[0]}
  [ "$GPU_RC" = 5 ] && GPU_RC=1                # 5: nothing collected is a failure here
else
  GPU_RC=0
fi
XDIST=()
if [ $DRY = 0 ] && $PY -c "import xdist" 2> /dev/null; then XDIST=(-n 8); fi
# -k triton: every test of test_triton_backend.py (its module name matches), the op tests'
# triton cases
log "tests: ${TRITON_TESTS[*]} -k triton ${XDIST[*]}"
RFMFAST_TRITON_AUTOTUNE=0 timeout 210 $PY -m pytest -q -p no:cacheprovider -rs "${XDIST[@]}" \
  "${TRITON_TESTS[@]}" -k triton 2>&1 | tee -a "$OUT/tests.log"
TRI_RC=${PIPESTATUS[0]}
# the distance rule on CUDA tensors: offsets, near-duplicates, self-pairs (triton cases only)
log "tests: tests/test_distance_rule.py -k triton"
RFMFAST_TRITON_AUTOTUNE=0 timeout 120 $PY -m pytest -q -p no:cacheprovider -rs "${XDIST[@]}" \
  tests/test_distance_rule.py -k triton 2>&1 | tee -a "$OUT/tests.log"
TEST_RC=${PIPESTATUS[0]}
[ "$TRI_RC" != 0 ] && TEST_RC=$TRI_RC
log "tests done: triton tests + distance rule rc=$TEST_RC, other gpu tests rc=$GPU_RC"

# ---- 3. benchmarks -------------------------------------------------------------------------
LEFT=$(( TOTAL_S - $(elapsed) ))
if [ $LEFT -lt 60 ]; then
  log "only ${LEFT}s left: skipping the benchmarks"
  BENCH_RC=124
else
  BUDGET=$(( LEFT - 60 ))                      # after this, no new case starts (recorded as skipped)
  # kernel_matmul, the RFM fit, agop and the precision table first, then the others while the
  # budget lasts; e.g. GPU_CHECK_ONLY=rfm,agop for a shorter rerun
  ONLY=${GPU_CHECK_ONLY:-kernel_matmul,rfm,agop,precision,kernel_grads,kernel_matrix,solve,accuracy}
  ARGS=(--device cuda --out "$OUT" --budget "$BUDGET" --only "$ONLY")
  [ $DRY = 1 ] && ARGS+=(--dry-run)
  # more options of rfmfast bench, e.g. GPU_CHECK_BENCH_ARGS="--quick --repeats 3"
  read -r -a EXTRA <<< "${GPU_CHECK_BENCH_ARGS:-}"
  ARGS+=("${EXTRA[@]}")
  log "benchmarks: rfmfast bench ${ARGS[*]} (budget ${BUDGET}s, hard stop ${LEFT}s)"
  timeout -s TERM $(( LEFT - 5 )) $PY -m rfmfast.bench "${ARGS[@]}" 2>&1 | tee "$OUT/bench.log"
  BENCH_RC=${PIPESTATUS[0]}
  $PY -m rfmfast.bench.report "$OUT" --all-sizes -o "$OUT/gpu_summary.md" \
    || log "summary failed (the CSV is in $OUT)"
fi

# ---- 3b. lin-RFM on ten million ratings on the GPU (target: under 60 s) ------------------------
RATINGS_RC=0
LEFT=$(( TOTAL_S - $(elapsed) - 10 ))
if [ $DRY = 0 ] && [ $LEFT -gt 60 ]; then
  log "ratings: bench/gpu_ratings_10m.py (hard stop $(( LEFT < 240 ? LEFT : 240 ))s)"
  timeout -s TERM $(( LEFT < 240 ? LEFT : 240 )) $PY bench/gpu_ratings_10m.py \
    --out "$OUT/ratings_10m.jsonl" 2>&1 | tee "$OUT/ratings_10m.log"
  RATINGS_RC=${PIPESTATUS[0]}
elif [ $DRY = 1 ]; then
  $PY bench/gpu_ratings_10m.py --shape 300 400 20000 --device cpu 2>&1 | tail -n 2
  RATINGS_RC=${PIPESTATUS[0]}
else
  log "ratings: skipped (${LEFT}s left)"
fi

# ---- 4. CPU thread scaling (the machine's 16 cores) -----------------------------------------
# kernel_matmul and the contention rows on 1, 2, 4, 8, 16 threads, where the C++ extension is
# built (RFMFAST_GPU_CHECK_BUILD=1) and time is left; rows go to the same CSV.
SCALE_RC=0
if $PY -c "import rfmfast._C" 2> /dev/null && [ $(( TOTAL_S - $(elapsed) )) -gt 90 ]; then
  for T in 1 2 4 8 16; do
    LEFT=$(( TOTAL_S - $(elapsed) - 10 ))
    [ $LEFT -lt 20 ] && { log "scaling: no time left for $T threads"; break; }
    log "scaling: rfmfast bench --only kernel_matmul --quick --threads $T"
    timeout -s TERM $LEFT $PY -m rfmfast.bench --only kernel_matmul --quick --threads $T \
      --out "$OUT" --no-plot >> "$OUT/scaling.log" 2>&1 || SCALE_RC=$?
  done
  tail -n 20 "$OUT/scaling.log"
else
  log "scaling: skipped (no C++ extension here, or no time left)"
fi

log "done in $(elapsed)s: tests rc=$TEST_RC, gpu tests rc=$GPU_RC, bench rc=$BENCH_RC, ratings rc=$RATINGS_RC, scaling rc=$SCALE_RC"
log "results: $OUT (append the rows of rfmfast_bench.csv to bench/results/gpu_bench.csv)"
[ "$TEST_RC" = 0 ] && [ "$GPU_RC" = 0 ] && [ "$BENCH_RC" = 0 ]
