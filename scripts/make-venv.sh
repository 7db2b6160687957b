#!/usr/bin/env bash
# Create the project's environment (default .venv): current CPython (3.12 preferred; 3.11-3.13),
# numpy 2, current torch; then the managed Lava runtime beside it (.venv/lava-runtime: Python 3.10,
# lava-nc 0.10, lava-dl 0.6, numpy < 2, torch 2.3), created by `spikeport lava setup`.
set -euo pipefail
venv=${1:-.venv}

works() {  # a pyenv shim exists even when its version is not installed: run it to be sure
    "$1" -c 'import sys; assert (3, 11) <= sys.version_info[:2] <= (3, 13)' >/dev/null 2>&1
}

find_python() {
    local c
    for c in "${PYTHON:-}" python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 \
             python3.13 "$HOME"/.pyenv/versions/3.13*/bin/python3.13 \
             python3.11 "$HOME"/.pyenv/versions/3.11*/bin/python3.11 python3; do
        [ -n "$c" ] || continue
        if works "$c"; then command -v "$c" || echo "$c"; return 0; fi
    done
    return 1
}

if ! py=$(find_python); then
    cat >&2 <<'MSG'
error: no Python 3.11, 3.12 or 3.13 found (spikeport needs one; 3.12 is the default).
Install one, for example `pyenv install 3.12` or `sudo apt-get install python3.12-venv`,
or point PYTHON at it: PYTHON=/path/to/python3.12 make test
MSG
    exit 1
fi
# Disk: the project's environment takes 6.2 GB (torch with its CUDA libraries, triton) and the Lava
# runtime 5.6 GB; pip's cache is not used, so the wheels are not kept a second time.
parent=$(dirname "$(realpath -m "$venv")"); mkdir -p "$parent"
free_kb=$(df -Pk "$parent" | awk 'NR == 2 {print $4}')
if [ -n "$free_kb" ] && [ "$free_kb" -lt 13000000 ]; then
    echo "warning: $((free_kb / 1000000)) GB free for $venv; the two environments need about 13 GB" >&2
fi
echo "creating $venv with $py ($("$py" -c 'import sys; print(sys.version.split()[0])'))"
"$py" -m venv --clear "$venv"   # --clear: an older .venv (Python 3.10, before the runtime split) is replaced
"$venv/bin/python" -m pip install -q --no-cache-dir --upgrade pip "setuptools>=77" wheel
"$venv/bin/python" -m pip install -q --no-cache-dir -e ".[dev,onnx]"
# NeuroBench 2.3.0, whose own metric code tests/test_neurobench_compare.py runs on an snnTorch twin.
# --no-deps: its metrics, models and Benchmark import only torch, snntorch and tqdm; the numba,
# llvmlite, tonic and torchaudio it declares serve its datasets and preprocessors, never imported here.
"$venv/bin/python" -m pip install -q --no-cache-dir "snntorch>=1.0"
"$venv/bin/python" -m pip install -q --no-cache-dir --no-deps "neurobench==2.3.0"
# The Lava runtime (needs a Python 3.10; the message says how to get one if there is none).
"$venv/bin/spikeport" lava setup
