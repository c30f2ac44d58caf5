#!/usr/bin/env bash
# The GPU check: one call on a lent GPU verifies and times minifcn's CuPy path, and writes
# everything into $OUT (at most 8 files come back from there; these are 7):
#   summary.txt        each step's status and seconds, the tests' summary line, the demo's
#                      mean IoU, the FCN-8s rows (also printed last)
#   env.txt            GPU, driver, CUDA, Python, NumPy, CuPy and PyTorch versions
#   tests.log          the whole test suite with MINIFCN_REQUIRE_GPU=1 (a skipped CuPy case
#                      is an error)
#   demo.log           minifcn demo --device cuda (metrics.txt appended)
#   bench_all.log/json minifcn bench all --device both: every op and the whole FCN-8s, NumPy
#                      vs CuPy vs PyTorch (cuDNN on the GPU, TF32 off on both sides)
#   bench_fcn.log      minifcn bench fcn --device cuda at 500x500, batch 1 and batch 8
#
# On the GPU machine (Python 3.12 with CuPy and PyTorch, no network; nothing is installed,
# minifcn runs from the working tree), from the repository root, in one device call:
#   bash benchmarks/gpu_check.sh
# Each step has its own time limit (170+30+40+55+160 s), so the check ends within 8 minutes.
# Practise it on a machine without a GPU, on the CuPy emulation at tiny sizes:
#   OUT=/tmp/gpu-check PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh --emulate
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the folder to write into}
PY=${PYTHON:-python3}
EMULATE=0
[ "${1:-}" = "--emulate" ] && EMULATE=1
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MINIFCN_REQUIRE_GPU=1

if [ "$EMULATE" = 1 ]; then     # `import cupy` loads tests/cupy_emulation, in child processes too
  export PYTHONPATH="$PWD/tests/cupy_emulation/shim:$PYTHONPATH"
  TESTS=${GPU_CHECK_TESTS:-tests/test_gpu_path.py tests/test_backend.py tests/test_optim.py}
  SIZE=(--size 48 --width 0.0625) DEMO=(--iters 1 --test-images 2) REPEAT=(--repeat 1)
  FCN_SIZE=48x48 FCN_WIDTH=0.0625 LIMITS=(600 300 300 300 300)
else
  TESTS=${GPU_CHECK_TESTS:-tests}
  SIZE=() DEMO=(--seconds 45) REPEAT=(--repeat 2)
  FCN_SIZE=500x500 FCN_WIDTH=1 LIMITS=(170 55 160 30 40)
fi
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

step() {  # step NAME LIMIT LOG COMMAND...: run with a time limit, log, record status and time
  local name=$1 limit=$2 log=$3; shift 3
  local start=$SECONDS
  echo "=== $name: $*" | tee -a "$log"
  timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
  local status=$?
  local note=""; [ "$status" = 124 ] && note=" (stopped at its ${limit} s limit)"
  printf '%-12s exit %3s  %4s s%s\n' "$name" "$status" "$((SECONDS - start))" "$note" \
    | tee -a "$SUMMARY"
}

{ echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  emulated: $EMULATE"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv
  command -v nvcc >/dev/null && nvcc --version | tail -1
  "$PY" - <<'EOF'
import platform, numpy
print("python", platform.python_version(), "| numpy", numpy.__version__)
try:
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    print("cupy", cupy.__version__, "| runtime", cupy.cuda.runtime.runtimeGetVersion(),
          "| driver", cupy.cuda.runtime.driverGetVersion(), "|", props["name"].decode(),
          "| SMs", props["multiProcessorCount"])
except Exception as err:
    print("cupy: unusable:", err)
try:
    import torch
    print("torch", torch.__version__, "| cuda", torch.version.cuda, "| cudnn",
          torch.backends.cudnn.version(), "| gpu", torch.cuda.is_available())
except Exception as err:
    print("torch: unusable:", err)
EOF
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

XDIST=()
"$PY" -c "import xdist" 2>/dev/null && [ "$EMULATE" = 0 ] && XDIST=(-n 8)
# shellcheck disable=SC2086  # TESTS is a list of paths
step tests "${LIMITS[0]}" "$OUT/tests.log" "$PY" -m pytest -q -p no:cacheprovider "${XDIST[@]}" $TESTS
step bench-fcn "${LIMITS[3]}" "$OUT/bench_fcn.log" "$PY" -m minifcn bench fcn --device cuda \
  --size "$FCN_SIZE" --width "$FCN_WIDTH" --batch 1 "${REPEAT[@]}" --no-progress
step bench-fcn-8 "${LIMITS[4]}" "$OUT/bench_fcn.log" "$PY" -m minifcn bench fcn --device cuda \
  --size "$FCN_SIZE" --width "$FCN_WIDTH" --batch 8 "${REPEAT[@]}" --no-progress
step demo "${LIMITS[1]}" "$OUT/demo.log" "$PY" -m minifcn demo --device cuda "${DEMO[@]}" \
  --out /tmp/minifcn-gpu-check-demo --no-progress
cat /tmp/minifcn-gpu-check-demo/metrics.txt >> "$OUT/demo.log" 2>/dev/null
step bench-all "${LIMITS[2]}" "$OUT/bench_all.log" "$PY" -m minifcn bench all --device both \
  "${SIZE[@]}" "${REPEAT[@]}" --json "$OUT/bench_all.json" --no-progress

{ echo; echo "tests:  $(grep -E '(passed|failed|error)' "$OUT/tests.log" | tail -1)"
  echo "demo:   $(grep -E 'held-out mean IoU' "$OUT/demo.log" | tail -1)"
  echo "fcn:";  grep -E '^ *fcn8s' "$OUT/bench_fcn.log" | sed 's/^/        /'
} | tee -a "$SUMMARY"
