"""C code for the CPU, compiled once per machine and loaded through ctypes.

``compile_cached`` is the one builder: the system C compiler (``$CC``, default ``cc``) builds a source
into a shared library cached under the user's cache directory (``$SPIKEPORT_CACHE``, else
``$XDG_CACHE_HOME/spikeport``, else ``~/.cache/spikeport``), named by a hash of the source, the flags,
the compiler's version and the CPU's features: later runs load it in milliseconds, and a changed
source builds a new one. ``train.native`` (the training time loop) builds with it too.

``neuron_steps.c`` here is the simulator's integer neuron update for all T steps of a group
(``steps``), bit for bit ``sim.simulator.neuron_step``: the same double-precision operations in the
same order, with no fused multiply-add. Without a compiler ``available()`` is False and the simulator
keeps its numpy loop; ``SPIKEPORT_SIM_NATIVE=0`` keeps it too.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("neuron_steps.c")
# -ffp-contract=off: no fused multiply-add, so every product and sum rounds as numpy's do.
# -march=native: the loops vectorise with the host's vector unit.
CFLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared")
# The neuron steps add -fno-trapping-math: without it GCC 12 leaves any loop that calls trunc()
# scalar. It changes no result (no reassociation, no contraction, signed zeros kept); it only lets
# the compiler assume that no floating-point exception flag is read.
STEPS_CFLAGS = CFLAGS + ("-fno-trapping-math",)


def cache_dir() -> Path:
    root = os.environ.get("SPIKEPORT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "spikeport")
    return Path(root) / "native"


def _cpu_flags() -> str:
    """The CPU's feature flags (Linux), part of the cache key: a library built with -march=native
    is never loaded on a CPU that lacks its instructions (a cache shared between machines)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def compile_cached(source: Path, cflags: tuple = CFLAGS, what: str = "native code") -> Path:
    """Compile ``source`` into the cache (if not there yet) and return the library's path. Raises
    RuntimeError naming the compiler when it is missing or fails (``what`` names the code)."""
    cc = os.environ.get("CC") or "cc"
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"no C compiler {cc!r} for the {what} ({e})") from e
    src = Path(source).read_bytes()
    key = hashlib.sha256(src + repr((cflags, version, platform.machine(), _cpu_flags())).encode()).hexdigest()[:16]
    lib = cache_dir() / f"{Path(source).stem}-{key}.so"
    if lib.exists():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=lib.parent)  # then an atomic rename: safe for
    os.close(fd)                                                # processes building at the same time
    try:
        p = subprocess.run([cc, *cflags, "-o", tmp, str(source), "-lm"], capture_output=True, text=True,
                           timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"{cc} failed to build the {what}: {p.stderr.strip()[-2000:]}")
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_STEPS_ARGS = [_P, _P, _I64, _I64, _I64, _INT] + [_P] * 6 + [_I64, _I64] + [_P] * 3 + [_I64, _I64] + [_INT] * 4 \
    + [_I64, _I64]


@functools.lru_cache(maxsize=1)
def _load():
    """(library, None), or (None, the reason it is unavailable)."""
    try:
        lib = ctypes.CDLL(str(compile_cached(SOURCE, STEPS_CFLAGS, what="simulator's native neuron steps")))
    except (RuntimeError, OSError) as e:
        return None, str(e)
    for name in ("steps_f32_u8", "steps_f64_u8", "steps_f32_f32", "steps_f64_f32"):
        getattr(lib, name).argtypes = _STEPS_ARGS
        getattr(lib, name).restype = None
    return lib, None


def enabled() -> bool:
    """True unless ``SPIKEPORT_SIM_NATIVE`` turns the native steps off (``0``, ``false``, ``off``)."""
    return os.environ.get("SPIKEPORT_SIM_NATIVE", "1").strip().lower() not in ("0", "false", "off", "no")


def available() -> bool:
    """True when the library builds (or is cached) and loads, and it is enabled."""
    return enabled() and _load()[0] is not None


def unavailable_reason() -> str:
    return "SPIKEPORT_SIM_NATIVE turns it off" if not enabled() else (_load()[1] or "")


@functools.lru_cache(maxsize=4)
def _pool(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="spikeport-sim")


# Below this many neuron-steps per thread a split costs more than it saves (thread hand-off ~50 us).
MIN_STEPS_PER_THREAD = 1 << 18


def _f64(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64)


def steps(a: np.ndarray, late: bool, u: np.ndarray, v: np.ndarray, c, out: np.ndarray, flags: tuple,
          reset: int | None = None, phase: int = 0, rec_u: np.ndarray | None = None,
          rec_v: np.ndarray | None = None, threads: int = 1) -> None:
    """All ``T`` steps of one group, in place.

    ``a`` ``(T, B, N)`` float32 or float64: the input ``a << 6``, read one step late when ``late``.
    ``u``, ``v`` ``(B, N)`` float64: the state, carried in and out. ``out`` ``(T, B, N)``: the spikes,
    uint8 or float32 0/1 (what a float32 product reads next, without a cast). ``rec_u``, ``rec_v``
    ``(T, B, N)`` int32: ``u`` and ``v`` after each step, when given. ``c`` a ``NeuronConstants``
    (``cu``, ``cv``, ``vth`` ``(N,)``; ``bias`` ``(N,)``, ``(B, N)`` or ``(T, 1, N)``), ``flags`` what
    ``layer_bounds`` returned, ``reset``/``phase`` the protocol's reset (``(t + 1) % reset == phase``).
    """
    lib = _load()[0]
    T, B, N = a.shape
    if a.dtype not in (np.float32, np.float64) or not a.flags.c_contiguous:
        a = _f64(a)
    for x in (u, v):
        assert x.dtype == np.float64 and x.flags.c_contiguous and x.shape == (B, N)
    assert out.dtype in (np.uint8, np.float32) and out.flags.c_contiguous and out.shape == (T, B, N)
    cu, cv, vth = _f64(c.cu), _f64(c.cv), _f64(c.vth)
    assert cu.size == cv.size == vth.size == N
    bias = _f64(c.bias)  # any shape that broadcasts to (T, B, N): its strides say where each row is
    bias3 = np.broadcast_to(bias.reshape((1,) * (3 - bias.ndim) + bias.shape), (T, B, N))
    bias_t, bias_b = (s // 8 for s in bias3.strides[:2])
    record = rec_u is not None
    if record:
        for x in (rec_u, rec_v):
            assert x.dtype == np.int32 and x.flags.c_contiguous and x.shape == (T, B, N)
    kinds = ("f32" if a.dtype == np.float32 else "f64", "u8" if out.dtype == np.uint8 else "f32")
    fn = getattr(lib, "steps_{}_{}".format(*kinds))
    wrap32, wrap24, saturate = (int(bool(f)) for f in flags)
    zero = np.zeros(N, dtype=a.dtype)  # what a late input holds at step 0
    head = [a.ctypes.data, zero.ctypes.data, T, B, N, int(late), u.ctypes.data, v.ctypes.data, cu.ctypes.data,
            cv.ctypes.data, vth.ctypes.data, bias.ctypes.data, bias_t, bias_b, out.ctypes.data,
            rec_u.ctypes.data if record else None, rec_v.ctypes.data if record else None,
            int(reset or 0), int(phase), wrap32, wrap24, saturate, int(bool(c.no_current))]
    parts = max(1, min(threads, B, (T * B * N) // MIN_STEPS_PER_THREAD))
    if parts == 1:
        fn(*head, 0, B)
        return
    cuts = [B * k // parts for k in range(parts + 1)]
    futures = [_pool(parts).submit(fn, *head, cuts[k], cuts[k + 1]) for k in range(parts)]
    for f in futures:
        f.result()
