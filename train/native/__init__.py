"""The neuron time loop in C for the CPU (``neuron_loop.c``), the ``native`` backend of
``train.neurons.neuron_sequence``.

The source is compiled once per machine with the system C compiler (``$CC``, default ``cc``) by
``sim.native.compile_cached``, the project's one builder, which caches the shared library under the
user's cache directory (``$SPIKEPORT_CACHE``, else ``$XDG_CACHE_HOME/spikeport``, else
``~/.cache/spikeport``) named by a hash of the source, the flags, the compiler's version and the
CPU's features: later runs load it in milliseconds, and a changed source builds a new one. Without
a compiler ``available()`` is False and ``neuron_sequence`` keeps the torch loop.

The loops run through ctypes, which releases the GIL, on up to ``torch.get_num_threads()`` threads,
each taking a range of batch rows, when the layer is large enough to gain from it (``threads_for``).
"""
from __future__ import annotations

import ctypes
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from spikeport.sim.native import CFLAGS, compile_cached

from ..neurons import kernel_sequence
from ..surrogates import kernel_constants

SOURCE = Path(__file__).with_name("neuron_loop.c")
# CFLAGS: -ffp-contract=off (no fused multiply-add, so every product and sum rounds as in the torch
# loop) and -march=native (the loops vectorise with the host's vector unit: 10-20x over baseline x86-64).

_P, _I64, _INT, _D = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
_FORWARD_ARGS = [_P, _I64] + [_P] * 9 + [_I64] * 6 + [_INT] * 3
_BACKWARD_ARGS = [_P] * 15 + [_D, _D, _INT] + [_I64] * 6 + [_INT] * 8


def build() -> Path:
    """Compile ``neuron_loop.c`` into the cache (if not there yet) and return the library's path.
    Raises RuntimeError naming the compiler when it is missing or fails."""
    return compile_cached(SOURCE, CFLAGS, what="native neuron loop")


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
