"""Bit-accurate simulator of an ``IntNetwork``: Lava's ``fixed_pt`` arithmetic, batched.

One Loihi CUBA neuron step (``neuron_step``), exactly as lava/proc/lif/models.py
(``AbstractPyLifModelFixed.subthr_dynamics`` + ``PyLifModelBitAcc``)::

    u = trunc(u * (4096 - (du + 1)) / 4096)        # decay rounds toward zero
    u = wrap32(u + (a << 6))                       # Lava adds in int32
    u = u - 2**24 if u > 2**23 else u              # ONE conditional wrap (not a modulo:
    u = u + 2**24 if u <= -2**23 else u            #   a huge input stays out of range, as in Lava)
    v = wrap32(trunc(v * (4096 - dv) / 4096) + u + (bias_mant << bias_exp))
    v = clip(v, -(2**23 - 1), 2**23 - 1)           # saturates
    s = v > (vth << 6)                             # strict
    v[s] = 0                                       # reset, no refractory period

Synapses (``sim.network``): Dense ``a = (W_eff @ s) >> -weight_exp`` (floor) or ``<< weight_exp``;
Conv and sum-pool ``a = wrap24(conv(s, w << weight_exp))``.

Timing
    ``hardware`` (default, Lava's): every synaptic layer delivers at step ``t`` what it computed
    from the spikes of step ``t - 1``; a network of L layers answers L steps after its input.
    ``ideal``: no delays, aligned with the float model.

Speed
    The network is feed-forward, so each layer is simulated for all ``T`` steps before the next:
    its synaptic input for the whole sequence is one matrix product, and only the neuron loops
    over time. Integers are held in float64 arrays: every value the arithmetic produces is an
    integer below ``2**53`` in magnitude, so float64 holds it exactly; ``u * c`` with
    ``c = k / 4096`` (``k < 4096``) is exact because ``|u k| < 2**43`` and dividing by ``2**12`` is
    exact. Synaptic sums use float32 BLAS when the largest possible sum (``max_i sum_j |w_ij|``,
    inputs 0/1) is below ``2**24`` -- float32 represents every integer up to ``2**24`` exactly and
    every partial sum stays below the bound -- and float64 otherwise (bound ``2**53``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import formats as F
from .network import Conv2d, Dense, IntNetwork, SumPool2d

TIMINGS = ("hardware", "ideal")
_F32_EXACT = 2 ** 24
_F64_EXACT = 2 ** 53


@dataclass(frozen=True)
class NeuronConstants:
    """Per-neuron constants of one layer, precomputed from its registers (float64, shape (N,))."""

    cu: np.ndarray        # (4096 - (du + 1)) / 4096
    cv: np.ndarray        # (4096 - dv) / 4096
    bias: np.ndarray      # bias_mant << bias_exp
    vth: np.ndarray       # vth << 6
    no_current: bool      # every du = 4095: u carries nothing over (STBP LIF)

    @classmethod
    def of(cls, neurons, out_shape) -> "NeuronConstants":
        du = neurons.expand("du", out_shape)
        dv = neurons.expand("dv", out_shape)
        bm = neurons.expand("bias_mant", out_shape)
        be = neurons.expand("bias_exp", out_shape)
        vth = neurons.expand("vth", out_shape)
        cu = (F.DECAY_UNITY - (du + F.DS_OFFSET)) / F.DECAY_UNITY
        return cls(cu=cu.astype(np.float64),
                   cv=((F.DECAY_UNITY - (dv + F.DM_OFFSET)) / F.DECAY_UNITY).astype(np.float64),
                   bias=(bm << be).astype(np.float64),
                   vth=(vth << F.VTH_SHIFT).astype(np.float64),
                   no_current=bool(np.all(cu == 0)))


def _wrap(x: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap of integer-valued floats into ``bits`` signed bits (a modulo)."""
    half = 2.0 ** (bits - 1)
    return np.mod(x + half, 2.0 * half) - half


def neuron_step(u: np.ndarray, v: np.ndarray, a64: np.ndarray, c: NeuronConstants,
                wrap32: bool = True) -> np.ndarray:
    """Advance ``u`` and ``v`` in place by one step; returns the spikes (bool).

    ``a64`` is the synaptic input already shifted, ``a << 6``. Lava adds in int32, so ``u + a64``
    and ``v + u + bias`` wrap at 32 bits; ``wrap32=False`` skips that wrap when the caller knows
    no input reaches ``2**24`` (then ``|u| <= 2**23`` and no int32 sum can overflow).
    """
    if c.no_current:
        np.copyto(u, a64)
    else:
        np.multiply(u, c.cu, out=u)
        np.trunc(u, out=u)
        u += a64
    if wrap32:
        u[...] = _wrap(u, 32)
    hi = u > F.UV_MAX
    if hi.any():
        u[hi] -= 2.0 ** F.UV_BITS
    lo = u <= -F.UV_MAX
    if lo.any():
        u[lo] += 2.0 ** F.UV_BITS
    np.multiply(v, c.cv, out=v)
    np.trunc(v, out=v)
    v += u
    v += c.bias
    if wrap32:
        v[...] = _wrap(v, 32)
    np.clip(v, -(F.UV_MAX - 1), F.UV_MAX - 1, out=v)
    s = v > c.vth
    v[s] = 0.0
    return s


# --- synapses over a whole sequence -----------------------------------------------------------

def _exact_dtype(weight: np.ndarray, where: str):
    bound = float(np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1).max()) if weight.size else 0.0
    if bound < _F32_EXACT:
        return np.float32
    if bound < _F64_EXACT:
        return np.float64
    raise ValueError(f"{where}: synaptic sums can reach {bound:.3g}, beyond exact float64 (2**53)")


class _Synapse:
    """A layer's synaptic operator prepared for batched evaluation: ``(M, *in) 0/1 -> (M, N)``."""

    def __init__(self, syn, in_shape, out_shape, where):
        self.in_shape, self.out_shape = in_shape, out_shape
        if isinstance(syn, SumPool2d):
            self.kind, self.k = "pool", int(syn.kernel)
            return
        self.kind = syn.kind
        w = syn.effective_weight()
        self.dtype = _exact_dtype(w, where)
        if isinstance(syn, Dense):
            self.w = np.ascontiguousarray(w.T.astype(self.dtype))  # (in, out)
            self.exp = int(syn.weight_exp)
        else:  # Conv2d, weight folded with its exponent
            self.kh, self.kw = w.shape[2:]
            self.stride, self.padding = tuple(syn.stride), tuple(syn.padding)
            self.w = np.ascontiguousarray(w.reshape(w.shape[0], -1).T.astype(self.dtype))  # (C*kh*kw, out)

    def __call__(self, s: np.ndarray) -> np.ndarray:
        m = s.shape[0]
        if self.kind == "dense":
            a = (s.reshape(m, -1).astype(self.dtype, copy=False) @ self.w).astype(np.float64)
            if self.exp >= 0:
                return a * 2.0 ** self.exp
            return np.floor(a / 2.0 ** -self.exp)  # arithmetic right shift
        if self.kind == "pool":
            c, oh, ow = self.out_shape
            k = self.k
            x = s.reshape(m, *self.in_shape)[:, :, :oh * k, :ow * k]
            a = x.reshape(m, c, oh, k, ow, k).sum(axis=(3, 5), dtype=np.float64)
            return _wrap(a, F.CONV_BITS).reshape(m, -1)
        c, h, w = self.in_shape
        x = s.reshape(m, c, h, w).astype(self.dtype, copy=False)
        ph, pw = self.padding
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        win = np.lib.stride_tricks.sliding_window_view(x, (self.kh, self.kw), axis=(2, 3))
        win = win[:, :, ::self.stride[0], ::self.stride[1]]  # (m, C, oh, ow, kh, kw)
        _, oh, ow = self.out_shape
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(m * oh * ow, -1)
        a = (cols @ self.w).astype(np.float64)  # (m*oh*ow, C_out)
        a = a.reshape(m, oh, ow, -1).transpose(0, 3, 1, 2).reshape(m, -1)
        return _wrap(a, F.CONV_BITS)


@dataclass
class SimResult:
    """Output spikes ``(S, T, n_out)`` int8; with recording, per layer ``spikes`` (int8),
    ``u`` and ``v`` (int32) as ``(S, T, N)`` arrays (flattened C order)."""

    output: np.ndarray
    spikes: Optional[list] = None
    u: Optional[list] = None
    v: Optional[list] = None


def check_input(net: IntNetwork, x) -> np.ndarray:
    """``(S, T, *input_shape)`` 0/1 spikes -> ``(S, T, prod(input_shape))`` uint8, or a clear error."""
    x = np.asarray(x)
    n_in = math.prod(net.input_shape)
    if x.ndim < 3 or math.prod(x.shape[2:]) != n_in:
        raise ValueError(f"input must have shape (samples, T, {', '.join(map(str, net.input_shape))}), "
                         f"got {x.shape}")
    if x.dtype.kind not in "biuf" or (x.size and not np.all((x == 0) | (x == 1))):
        raise ValueError("input spikes must be 0/1 (graded spikes are not supported)")
    return x.reshape(x.shape[0], x.shape[1], n_in).astype(np.uint8)


def simulate(net: IntNetwork, x, timing: str = "hardware", record: bool = False,
             batch_size: int = 256, progress: bool = False) -> SimResult:
    """Run ``net`` on input spike trains ``x`` of shape ``(S, T, *input_shape)``.

    Every sample starts from rest (``u = v = 0``, empty synaptic buffers). Returns a ``SimResult``.
    """
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {TIMINGS}, got {timing!r}")
    x = check_input(net, x)
    S, T = x.shape[:2]
    syns = [_Synapse(layer.synapse, net.shapes[i], net.shapes[i + 1], f"layer {i}")
            for i, layer in enumerate(net.layers)]
    consts = [NeuronConstants.of(layer.neurons, net.shapes[i + 1]) for i, layer in enumerate(net.layers)]
    sizes = [math.prod(s) for s in net.shapes[1:]]
    out = np.zeros((S, T, net.output_size), dtype=np.int8)
    rec = {k: [np.zeros((S, T, n), dtype=np.int8 if k == "spikes" else np.int32) for n in sizes]
           for k in ("spikes", "u", "v")} if record else None
    chunks = range(0, S, batch_size)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="simulate", unit="batch")
    for start in chunks:
        stop = min(start + batch_size, S)
        B = stop - start
        s = x[start:stop].transpose(1, 0, 2)  # (T, B, N_in)
        for li, (syn, c) in enumerate(zip(syns, consts)):
            a = syn(s.reshape(T * B, -1)).reshape(T, B, -1)  # (T, B, N) synaptic input per step
            if timing == "hardware":  # delivered one step later; step 0 gets the empty buffer
                a = np.concatenate([np.zeros_like(a[:1]), a[:-1]])
            a *= 2.0 ** F.ACT_SHIFT
            # |u| stays within 24 bits (so int32 sums cannot overflow) unless an input reaches 2**24
            wrap32 = bool(a.size) and float(np.abs(a).max()) >= 2.0 ** F.UV_BITS
            u = np.zeros(a.shape[1:])
            v = np.zeros(a.shape[1:])
            spikes = np.zeros(a.shape, dtype=np.uint8)  # (T, B, N)
            for t in range(T):
                spikes[t] = neuron_step(u, v, a[t], c, wrap32)
                if record:
                    rec["u"][li][start:stop, t] = u
                    rec["v"][li][start:stop, t] = v
            s = spikes
            if record:
                rec["spikes"][li][start:stop] = spikes.transpose(1, 0, 2)
        out[start:stop] = s.transpose(1, 0, 2)
    if record:
        return SimResult(out, rec["spikes"], rec["u"], rec["v"])
    return SimResult(out)
