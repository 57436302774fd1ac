#!/usr/bin/env bash
# One GPU session, one device call: install carried wheels, build gsplat's CUDA code (timed),
# make the golden renders, run the GPU tests, then optional stages. Run from the repo root:
#
#   bash scripts/gpu_session.sh
#
# carry: [".whl"] for the core stages; add ".device/gsplat_examples", ".device/whl_examples" and
# ".device/data" for simple_trainer, and ".device/whl_pycolmap" (38 MB) only if a stage needs
# pycolmap (64 MiB limit for the whole tree).
#
# Environment knobs (all optional):
#   OUT                    where results go (the device tool sets it; default /tmp/gpu_out)
#   SKIP_GOLDEN=1          keep the committed tests/golden files (do not remake them)
#   SKIP_BENCH=1           skip scripts/bench_gpu.py even if it exists
#   BENCH_TIMEOUT=240      seconds for the benchmark stage
#   TRAINER_DATA=<dir>     a COLMAP folder (images/ + sparse/0) in the carried tree: runs gsplat's
#                          examples/simple_trainer.py from .device/gsplat_examples on it
#   TRAINER_STEPS=2000     --max_steps for simple_trainer; TRAINER_TIMEOUT=240 its time limit
#   TRAINER_FACTOR=1       --data_factor
#   TRAINER_ARGS="..."     extra simple_trainer flags, e.g. "--init_type random" when sparse/0 has
#                          no 3D points (as .device/data/fountain_half)
#
# What comes back (at most 8 files): session.log (everything), build.log (gsplat JIT build),
# golden.tar (tests/golden/gsplat_*.pt: `tar -xf golden.tar -C tests/golden`), pytest_gpu.log,
# bench.log, trainer.log, gsplat_cuda.so (the built extension, when under 16 MB).
set -u -o pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
export PYTHONUNBUFFERED=1
T0=$(date +%s)
stage() { echo; echo "=== [$(( $(date +%s) - T0 ))s] $*"; }

stage "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
nproc; free -g | head -2
python3 -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_device_name(0))"
which nvcc && nvcc --version | tail -2

stage "install carried wheels into /tmp/site"
WHEELS=$(ls .whl/*.whl .device/whl_examples/*.whl .device/whl_pycolmap/*.whl 2>/dev/null)
echo "$WHEELS"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site $WHEELS || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD
python3 -c "import gsplat, plyfile; print('gsplat', gsplat.__version__, gsplat.__file__)" || exit 1

stage "patch gsplat for CUDA 13 (if scripts/gsplat_cuda13.patch exists)"
if [ -f scripts/gsplat_cuda13.patch ]; then
    (cd /tmp/site && patch -p1 --forward < "$OLDPWD/scripts/gsplat_cuda13.patch") || echo "patch did not apply"
else
    echo "no patch"
fi

stage "splatkit.gpu probes before the build"
python3 -m splatkit.gpu

stage "build gsplat's CUDA extension (JIT, timed)"
export MAX_JOBS=16 TORCH_CUDA_ARCH_LIST="9.0" TORCH_EXTENSIONS_DIR=/tmp/torch_ext
B0=$(date +%s)
timeout 480 python3 - > "$OUT/build.log" 2>&1 <<'EOF'
import time, torch
t = time.time()
from gsplat.cuda._backend import _C
print("built/loaded", _C, f"in {time.time() - t:.1f} s")
from gsplat import rasterization
dev = "cuda"
n = 1000
means = torch.randn(n, 3, device=dev) + torch.tensor([0.0, 0.0, 5.0], device=dev)
quats = torch.randn(n, 4, device=dev)
scales = torch.rand(n, 3, device=dev) * 0.1
opac = torch.rand(n, device=dev)
cols = torch.rand(n, 3, device=dev)
K = torch.tensor([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]], device=dev)[None]
img, alpha, info = rasterization(means, quats, scales, opac, cols, torch.eye(4, device=dev)[None], K, 128, 96)
torch.cuda.synchronize()
print("tiny rasterization OK", tuple(img.shape), float(img.mean()))
EOF
RC=$?
echo "build rc=$RC after $(( $(date +%s) - B0 )) s (MAX_JOBS=$MAX_JOBS, arch $TORCH_CUDA_ARCH_LIST)"
tail -n 30 "$OUT/build.log"
if [ $RC -ne 0 ]; then
    echo "gsplat build FAILED: first errors:"
    grep -n -m 40 -E "error|Error" "$OUT/build.log"
    exit 1
fi
SO=/tmp/torch_ext/gsplat_cuda/gsplat_cuda.so
if [ -f "$SO" ]; then
    ls -la "$SO"
    strip --strip-debug -o /tmp/gsplat_cuda.so "$SO" 2>/dev/null || cp "$SO" /tmp/gsplat_cuda.so
    SZ=$(stat -c %s /tmp/gsplat_cuda.so)
    if [ "$SZ" -lt 16000000 ]; then cp /tmp/gsplat_cuda.so "$OUT/"; echo "copied gsplat_cuda.so ($SZ bytes)"; fi
fi

stage "splatkit.gpu probes after the build"
python3 -m splatkit.gpu

if [ "${SKIP_GOLDEN:-0}" != 1 ]; then
stage "golden renders (gsplat) + CPU backend comparison"
rm -rf /tmp/golden && mkdir -p /tmp/golden
timeout 300 python3 scripts/make_golden.py --out /tmp/golden --compare cpu reference
echo "make_golden rc=$?"
(cd /tmp/golden && tar -cf "$OUT/golden.tar" gsplat_*.pt) && ls -la /tmp/golden
    export SPLATKIT_GOLDEN='/tmp/golden/gsplat_*.pt'
fi

stage "pytest: GPU tests + golden comparison"
timeout 300 python3 -m pytest -q -p no:cacheprovider \
    tests/test_render_gsplat.py tests/test_render_golden.py tests/test_gpu.py tests/test_train_gpu.py -rs 2>&1 \
    | tee "$OUT/pytest_gpu.log"
echo "pytest rc=${PIPESTATUS[0]}"

if [ -f scripts/bench_gpu.py ] && [ "${SKIP_BENCH:-0}" != 1 ]; then
    stage "benchmark: scripts/bench_gpu.py"
    timeout "${BENCH_TIMEOUT:-240}" python3 scripts/bench_gpu.py ${BENCH_ARGS:-run .device/data/fox_800 --steps 3000 --quick} 2>&1 | tee "$OUT/bench.log"
    echo "bench rc=${PIPESTATUS[0]}"
fi

if [ -n "${TRAINER_DATA:-}" ] && [ -f .device/gsplat_examples/simple_trainer.py ]; then
    stage "gsplat examples/simple_trainer.py on $TRAINER_DATA"
    DATA=$(readlink -f "$TRAINER_DATA")
    STEPS=${TRAINER_STEPS:-2000}
    (cd .device/gsplat_examples && timeout "${TRAINER_TIMEOUT:-240}" python3 simple_trainer.py default \
        --data_dir "$DATA" --data_factor "${TRAINER_FACTOR:-1}" --result_dir /tmp/st_result \
        --max_steps "$STEPS" --eval_steps "$STEPS" --save_steps "$STEPS" --test_every 8 \
        --disable_viewer --disable_video --tb_every 1000000 ${TRAINER_ARGS:-}) 2>&1 | tee "$OUT/trainer.log"
    echo "simple_trainer rc=${PIPESTATUS[0]}"
    cat /tmp/st_result/stats/*.json 2>/dev/null | tee -a "$OUT/trainer.log"
fi

stage "done"
ls -la "$OUT"
