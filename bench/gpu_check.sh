#!/usr/bin/env bash
# GPU checks of the fused Triton neuron kernels, in one go (about 4-6 minutes on one H200):
#   1. tests/test_triton_kernels.py with the compiled kernels on CUDA (SPIKEPORT_TRITON_DEVICE=cuda):
#      spikes and gradients equal the torch reference and autograd through the step functions;
#   2. the GPU section of bench/train_throughput.py (spikeport Triton and reference loop, snnTorch,
#      SpikingJelly eager and torch.compile, the no-neuron floor; batches 64 and 1024).
#
# Two steps:
#   bench/gpu_check.sh fetch    here, with network: puts the peers' wheels (pure Python) in .whl/
#                               (git-ignored), versions as installed in .venv
#   bench/gpu_check.sh          on the GPU machine, from the repository root, with .whl carried
#                               (the device tool's run: carry [".whl"], timeout_s 540); it
#                               uses the machine's python3 (torch, triton), installs the wheels under
#                               /tmp/site, makes spikeport importable from this checkout, and writes
#                               logs and JSON to $OUT (or bench/out/ when OUT is unset).
# The whole run is bounded by GPU_CHECK_TIMEOUT seconds (default 480) so that it fits an 8-minute slot.
# GPU_CHECK_DEVICE=cpu rehearses the same steps without a GPU (kernels under Triton's interpreter).
set -u
cd "$(dirname "$0")/.."

if [ "${1:-}" = "fetch" ]; then
    py=.venv/bin/python
    pkgs=$($py - <<'EOF'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in ("spikingjelly", "snntorch", "loguru")))
EOF
)
    mkdir -p .whl
    # shellcheck disable=SC2086
    exec $py -m pip download --no-deps --only-binary=:all: -d .whl $pkgs
fi

PY=${PY:-python3}
out=${OUT:-bench/out}
mkdir -p "$out"
budget=${GPU_CHECK_TIMEOUT:-480}
start=$(date +%s)
left() { local l=$(( budget - ($(date +%s) - start) )); [ "$l" -gt 10 ] || l=10; echo "$l"; }

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# spikeport from this checkout without installing it: the package folder plus links for the
# top-level folders that pyproject.toml maps to spikeport.train, .sim, .export, .targets. pytest's
# pythonpath (pyproject: ".") would put the checkout's bare spikeport/ first: point it at the copy.
pytest_path=()
if ! (cd /tmp && $PY -c "import spikeport.train") 2>/dev/null; then
    rm -rf /tmp/sp && mkdir -p /tmp/sp && cp -r spikeport /tmp/sp/spikeport || exit 1
    for d in train sim export targets; do ln -s "$PWD/$d" "/tmp/sp/spikeport/$d"; done
    export PYTHONPATH=/tmp/sp${PYTHONPATH:+:$PYTHONPATH}
    pytest_path=(-o pythonpath=/tmp/sp)
fi

$PY - <<'EOF' 2>&1 | tee "$out/gpu_env.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
import triton
print("triton", triton.__version__)
EOF

echo "== 1. Triton kernels on CUDA vs the reference (tests/test_triton_kernels.py)"
SPIKEPORT_TRITON_DEVICE=${GPU_CHECK_DEVICE:-cuda} PYTHONUNBUFFERED=1 timeout "$(left)" $PY -m pytest -q -p no:cacheprovider \
    "${pytest_path[@]}" tests/test_triton_kernels.py 2>&1 | tee "$out/gpu_tests.txt"
tests_rc=${PIPESTATUS[0]}

echo "== 2. GPU section of bench/train_throughput.py"
PYTHONUNBUFFERED=1 timeout "$(left)" $PY bench/train_throughput.py --sections gpu --repeats 1 \
    --gpu-seconds "${GPU_SECONDS:-3}" --warmup 5 --json "$out/gpu_bench.json" 2>&1 | tee "$out/gpu_bench.txt"
bench_rc=${PIPESTATUS[0]}

echo "tests exit $tests_rc, bench exit $bench_rc, $(( $(date +%s) - start )) s"
[ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
