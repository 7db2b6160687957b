#!/usr/bin/env bash
# Create the project's virtual environment (default .venv) with Python 3.10 and the Lava stack.
set -euo pipefail
venv=${1:-.venv}

find_python() {
    local c
    for c in "${PYTHON310:-}" python3.10 "$HOME"/.pyenv/versions/3.10*/bin/python3.10 \
             /usr/local/bin/python3.10 /usr/bin/python3.10; do
        [ -n "$c" ] || continue
        # a pyenv shim exists even when 3.10 is not selected: run it to be sure
        if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then
            echo "$c"; return 0
        fi
    done
    return 1
}

if ! py=$(find_python); then
    cat >&2 <<'MSG'
error: Python 3.10 not found. Lava (lava-nc 0.10, lava-dl 0.6) runs only on Python 3.10.
Install one, then run make again, for example:
  pyenv install 3.10 && pyenv local 3.10        (pyenv)
  sudo apt-get install python3.10 python3.10-venv   (Debian/Ubuntu with deadsnakes)
  conda create -n py310 python=3.10              (conda; then PYTHON310=$CONDA_PREFIX/bin/python)
or point PYTHON310 at a Python 3.10 interpreter: PYTHON310=/path/to/python3.10 make test
MSG
    exit 1
fi
echo "creating $venv with $py"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel
"$venv/bin/python" -m pip install -q -e ".[lava,dev,onnx]"
