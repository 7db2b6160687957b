"""The neuron time loop in C for the CPU (``neuron_loop.c``), the ``native`` backend of
``train.neurons.neuron_sequence``.

The source is compiled once per machine with the system C compiler (``$CC``, default ``cc``) and the
shared library cached under the user's cache directory (``$SPIKEPORT_CACHE``, else
``$XDG_CACHE_HOME/spikeport``, else ``~/.cache/spikeport``), named by a hash of the source, the
flags and the compiler's version: later runs load it in milliseconds, and a changed source builds a
new one. Without a compiler ``available()`` is False and ``neuron_sequence`` keeps the torch loop.

The loops run through ctypes, which releases the GIL, on up to ``torch.get_num_threads()`` threads,
each taking a range of batch rows, when the layer is large enough to gain from it (``threads_for``).
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

import torch

from ..neurons import kernel_sequence
from ..surrogates import kernel_constants

SOURCE = Path(__file__).with_name("neuron_loop.c")
# -ffp-contract=off: no fused multiply-add, so every product and sum rounds as in the torch loop.
# -march=native: the loops vectorise with the host's vector unit (10-20x over baseline x86-64 here).
CFLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared")

_P, _I64, _INT, _D = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
_FORWARD_ARGS = [_P, _I64] + [_P] * 9 + [_I64] * 6 + [_INT] * 3
_BACKWARD_ARGS = [_P] * 15 + [_D, _D, _INT] + [_I64] * 6 + [_INT] * 8


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


def _compiler() -> str:
    return os.environ.get("CC") or "cc"


def build() -> Path:
    """Compile ``neuron_loop.c`` into the cache (if not there yet) and return the library's path.
    Raises RuntimeError naming the compiler when it is missing or fails."""
    cc = _compiler()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"no C compiler {cc!r} for the native neuron loop ({e})") from e
    src = SOURCE.read_bytes()
    key = hashlib.sha256(src + repr((CFLAGS, version, platform.machine(), _cpu_flags())).encode()).hexdigest()[:16]
    lib = cache_dir() / f"neuron_loop-{key}.so"
    if lib.exists():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=lib.parent)  # then an atomic rename: safe for
    os.close(fd)                                                # processes building at the same time
    try:
        p = subprocess.run([cc, *CFLAGS, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True,
                           timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"{cc} failed to build the native neuron loop: {p.stderr.strip()[-2000:]}")
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


@functools.lru_cache(maxsize=1)
def _load():
    """(library, None), or (None, the reason it is unavailable)."""
    try:
        lib = ctypes.CDLL(str(build()))
    except (RuntimeError, OSError) as e:
        return None, str(e)
    for suffix in ("f32", "f64"):
        getattr(lib, f"forward_{suffix}").argtypes = _FORWARD_ARGS
        getattr(lib, f"forward_{suffix}").restype = None
        getattr(lib, f"backward_{suffix}").argtypes = _BACKWARD_ARGS
        getattr(lib, f"backward_{suffix}").restype = ctypes.c_int  # 1: out of memory
    return lib, None


def available() -> bool:
    """True when the library builds (or is cached) and loads."""
    return _load()[0] is not None


def unavailable_reason() -> str:
    return _load()[1] or ""


@functools.lru_cache(maxsize=1)
def _pool(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="spikeport-neuron")


# Below this many neuron-steps per thread a split costs more than it saves. Measured on the 2-core VM
# (forward + backward, LIF, T = 20, two threads against one): 1.0 M neuron-steps 1.11 vs 0.95 ms,
# 4.1 M 5.13 vs 4.46 ms, 17.3 M (a 15x24x24 conv layer, batch 100) 64 vs 99 ms.
MIN_STEPS_PER_THREAD = 1 << 22


def threads_for(work: int) -> int:
    """Threads the loops use for ``work`` neuron-steps: ``$SPIKEPORT_NATIVE_THREADS`` when set, else
    torch's thread count, at most one per ``MIN_STEPS_PER_THREAD``."""
    fixed = os.environ.get("SPIKEPORT_NATIVE_THREADS")
    if fixed:
        try:
            return max(1, int(fixed))
        except ValueError:
            raise ValueError(f"SPIKEPORT_NATIVE_THREADS={fixed!r}: expected a whole number of threads") from None
    return max(1, min(torch.get_num_threads(), work // MIN_STEPS_PER_THREAD))


def _run(fn, args_before, args_after, rows: int, work: int):
    """``fn(*args_before, row0, row1, *args_after)`` over the rows, split across threads."""
    parts = max(1, min(threads_for(work), rows))
    if parts == 1:
        status = [fn(*args_before, 0, rows, *args_after)]
    else:
        cuts = [rows * k // parts for k in range(parts + 1)]
        futures = [_pool(parts).submit(fn, *args_before, cuts[k], cuts[k + 1], *args_after) for k in range(parts)]
        status = [f.result() for f in futures]
    if any(status):
        raise MemoryError("the native neuron loop could not allocate its scratch row")


def _suffix(t: torch.Tensor) -> str:
    return {torch.float32: "f32", torch.float64: "f64"}[t.dtype]


def _per_neuron(p: torch.Tensor, stride: int, nf: int) -> torch.Tensor:
    """The loops read one value per neuron of the row: a shared parameter is expanded to nf values."""
    return p if stride else p.reshape(-1)[:1].expand(nf).contiguous()  # (an unused dummy: any values)


def _forward_launch(src, step, V, O, I, r_state, i_state, ds, dm, th, b, M, nf, t0, n, *, cuba, has_bias,
                    save_i, init, strides):
    fn = getattr(_load()[0], f"forward_{_suffix(V)}")
    s_syn, s_mem, s_th, s_bias = strides
    ds, dm, th = _per_neuron(ds, s_syn, nf), _per_neuron(dm, s_mem, nf), _per_neuron(th, s_th, nf)
    b = _per_neuron(b, s_bias, nf) if has_bias else V.new_zeros(nf)  # v + 0 is v exactly
    ptrs = [src.data_ptr(), step] + [t.data_ptr() for t in (V, O, I, r_state, i_state, ds, dm, th, b)]
    _run(fn, ptrs + [M, nf], [t0, n, int(cuba), int(save_i), int(init)], M // nf, M * n)


def _backward_launch(g, rec, V, O, I, GI, gv_state, gi_state, acc_mem, acc_syn, acc_th, acc_bias, ds, dm, th,
                     surrogate, M, nf, t_hi, n, *, cuba, has_rec, detach, need_mem, need_syn, need_th, need_bias,
                     init, strides):
    fn = getattr(_load()[0], f"backward_{_suffix(V)}")
    code, c0, c1 = kernel_constants(surrogate)
    s_syn, s_mem, s_th = strides
    ds, dm, th = _per_neuron(ds, s_syn, nf), _per_neuron(dm, s_mem, nf), _per_neuron(th, s_th, nf)
    ptrs = [t.data_ptr() for t in (g, rec, V, O, I, GI, gv_state, gi_state, acc_mem, acc_syn, acc_th, acc_bias,
                                   ds, dm, th)]
    flags = [int(f) for f in (cuba, has_rec, detach, need_mem, need_syn, need_th, need_bias, init)]
    _run(fn, ptrs + [c0, c1, code, M, nf], [t_hi, n] + flags, M // nf, M * n)


# Same interface and results as ``neurons._NeuronSequence``, computed by neuron_loop.c.
NativeNeuronSequence = kernel_sequence("NativeNeuronSequence", _forward_launch, _backward_launch)
