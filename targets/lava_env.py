"""The managed Lava runtime: a Python 3.10 environment of its own, beside the project's.

Lava (lava-nc 0.10.0, lava-dl 0.6.0; archived by Intel in May 2026) runs only on Python 3.10 with
numpy < 2 and the torch lava-dl pins. spikeport itself runs on current Python and numpy 2, so Lava
lives in a separate virtual environment that spikeport creates and talks to through a file-based
bridge (``targets/bridge.py``). Nothing from this environment is imported into the project's.

Where the runtime lives, first match wins:

1. ``$SPIKEPORT_LAVA_PYTHON``: an existing interpreter that already has Lava (used as is);
2. ``$SPIKEPORT_LAVA_HOME``: a directory for the managed environment;
3. ``<sys.prefix>/lava-runtime`` when the project runs in a virtual environment (so it sits beside
   the project's own environment and ``make clean`` removes both), otherwise
   ``~/.local/share/spikeport/lava-runtime``.

``spikeport lava setup`` creates it (``make demo`` / ``make test`` call it); the first Lava run
creates it too. A marker file records what was installed: when ``REQUIREMENTS`` change, the
environment is rebuilt.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# What the runtime holds: Lava's last releases and what they need. lava-dl 0.6.0 pins torch 2.3.x
# (its slayer and netx import torch); numpy < 2 because lava-nc 0.10 uses removed numpy 1 APIs.
REQUIREMENTS = ("lava-nc==0.10.0", "lava-dl==0.6.0", "numpy<2", "torch>=2.3,<2.4", "h5py>=3.8")
PYTHON_VERSION = (3, 10)
# Disk the runtime takes once installed (measured: 5.6 GB, of which torch's CUDA libraries 2.8 GB,
# torch 1.6 GB and triton 0.4 GB; PyPI has no CPU-only torch 2.3 for Linux x86_64), plus the wheels
# pip holds while it installs them.
NEEDS_BYTES = 7 * 10**9
MARKER = "spikeport-lava-runtime.json"
MARKER_VERSION = 1

HOW_TO_GET_310 = """Lava (lava-nc 0.10, lava-dl 0.6) runs only on Python 3.10, and none was found.
Install one, then run the command again, for example:
  pyenv install 3.10                                  (pyenv)
  sudo apt-get install python3.10 python3.10-venv     (Debian/Ubuntu with deadsnakes)
  conda create -n py310 python=3.10                   (conda; then PYTHON310=$CONDA_PREFIX/bin/python)
or point PYTHON310 at a Python 3.10 interpreter: PYTHON310=/path/to/python3.10 spikeport lava setup"""


class LavaRuntimeMissing(RuntimeError):
    """The Lava runtime is not installed and cannot be created here (message says what to do)."""


def runtime_dir() -> Path:
    """The managed environment's directory (see the module docstring)."""
    if os.environ.get("SPIKEPORT_LAVA_HOME"):
        return Path(os.environ["SPIKEPORT_LAVA_HOME"]).expanduser()
    if sys.prefix != getattr(sys, "base_prefix", sys.prefix):  # inside a virtual environment
        return Path(sys.prefix) / "lava-runtime"
    return Path.home() / ".local" / "share" / "spikeport" / "lava-runtime"


def _python_in(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _is_python310(exe: str) -> bool:
    try:
        out = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == "True"


def find_python310() -> str | None:
    """A Python 3.10 interpreter: ``$PYTHON310``, ``python3.10`` on PATH, pyenv's, or the usual
    system places. A pyenv shim exists even when 3.10 is not installed, so each candidate is run."""
    home = Path.home()
    candidates = [os.environ.get("PYTHON310", ""), shutil.which("python3.10") or ""]
    candidates += sorted(str(p) for p in (home / ".pyenv" / "versions").glob("3.10*/bin/python3.10"))
    candidates += ["/usr/local/bin/python3.10", "/usr/bin/python3.10"]
    for c in candidates:
        if c and _is_python310(c):
            return c
    return None


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that will hold ``path`` (its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def space_note(path: Path, needs: int | None = None) -> str | None:
    """One line when the file system that will hold ``path`` has less than ``needs`` bytes free
    (default ``NEEDS_BYTES``)."""
    needs = NEEDS_BYTES if needs is None else needs
    free = free_bytes(path)
    if free >= needs:
        return None
    return (f"only {free / 1e9:.1f} GB free for {path}; the Lava runtime needs about {needs / 1e9:.0f} GB "
            f"(torch 2.3 with its CUDA libraries, the only torch 2.3 on PyPI for Linux); free some space "
            f"or point SPIKEPORT_LAVA_HOME at a directory with room")


def _marker() -> dict:
    return {"marker_version": MARKER_VERSION, "requirements": list(REQUIREMENTS)}


def _read_marker(env: Path) -> dict | None:
    try:
        return json.loads((env / MARKER).read_text())
    except (OSError, ValueError):
        return None


def installed_python() -> Path | None:
    """The runtime's interpreter if it is installed and current, else ``None``."""
    explicit = os.environ.get("SPIKEPORT_LAVA_PYTHON")
    if explicit:
        return Path(explicit)
    env = runtime_dir()
    py = _python_in(env)
    if py.exists() and _read_marker(env) == _marker():
        return py
    return None


def setup(force: bool = False, python: str | None = None, quiet: bool = False) -> Path:
    """Create (or rebuild) the managed runtime; returns its interpreter. Idempotent.

    Downloads lava-nc, lava-dl, numpy < 2 and torch 2.3 from PyPI the first time (5.6 GB installed
    with torch's CUDA libraries; pip's cache is not used, so the wheels are not kept twice). Raises
    ``LavaRuntimeMissing`` when no Python 3.10 is found or the install fails (with the free space
    when that is short).
    """
    if os.environ.get("SPIKEPORT_LAVA_PYTHON"):
        return Path(os.environ["SPIKEPORT_LAVA_PYTHON"])
    env = runtime_dir()
    if not force and installed_python() is not None:
        return _python_in(env)
    base = python or find_python310()
    if base is None or not _is_python310(base):
        raise LavaRuntimeMissing(HOW_TO_GET_310 if base is None else
                                 f"{base} is not a Python 3.10 interpreter (Lava needs exactly 3.10)")

    def say(msg):
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    say(f"creating the Lava runtime in {env} with {base} (once; downloads lava-nc, lava-dl, torch 2.3)")
    if env.exists():
        shutil.rmtree(env)
    env.parent.mkdir(parents=True, exist_ok=True)
    short = space_note(env)
    if short:
        say(f"warning: {short}")
    pip_opts = ["-q", "--no-cache-dir"] if quiet else ["--no-cache-dir"]
    try:
        subprocess.run([base, "-m", "venv", str(env)], check=True)
        py = str(_python_in(env))
        subprocess.run([py, "-m", "pip", "install", *pip_opts, "--upgrade", "pip", "setuptools", "wheel"], check=True)
        subprocess.run([py, "-m", "pip", "install", *pip_opts, *REQUIREMENTS], check=True)
    except subprocess.CalledProcessError as err:
        shutil.rmtree(env, ignore_errors=True)  # a half-installed runtime would only hold the disk
        short = space_note(env)
        raise LavaRuntimeMissing(f"creating the Lava runtime in {env} failed ({err}); "
                                 + (f"{short}, then " if short else "")
                                 + "rerun `spikeport lava setup --force`") from None
    (env / MARKER).write_text(json.dumps(_marker(), indent=1))
    say(f"Lava runtime ready: {py}")
    return Path(py)


def ensure(create: bool = True) -> Path:
    """The runtime's interpreter, created on first use when ``create`` (else ``LavaRuntimeMissing``)."""
    py = installed_python()
    if py is not None:
        return py
    if not create:
        raise LavaRuntimeMissing(f"no Lava runtime in {runtime_dir()}: run `spikeport lava setup`")
    return setup()


def status() -> dict:
    """What ``spikeport lava status`` prints: where the runtime is, whether it is ready, versions."""
    py = installed_python()
    info = {"runtime": str(runtime_dir()), "python": str(py) if py else None, "ready": py is not None,
            "requirements": list(REQUIREMENTS)}
    if py is None:
        info["python3.10_found"] = find_python310()
        return info
    code = ("import json, sys, importlib.metadata as m; print(json.dumps({'python': sys.version.split()[0], "
            "**{n: m.version(n) for n in ('lava-nc', 'lava-dl', 'numpy', 'torch')}}))")
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=120)
    if out.returncode == 0:
        info["versions"] = json.loads(out.stdout)
    else:
        info["ready"] = False
        info["error"] = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "the interpreter failed"
    return info
