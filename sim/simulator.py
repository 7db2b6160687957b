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
from .network import Dense, IntNetwork, SumPool2d

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


def neuron_step(u: np.ndarray, v: np.ndarray, a64: np.ndarray, c: NeuronConstants, spikes: np.ndarray,
                wrap32: bool = True, wrap24: bool = True, saturate: bool = True) -> np.ndarray:
    """Advance ``v`` (a float64 array holding integers) in place by one step, write the spikes into
    the bool array ``spikes`` and return the new ``u``: ``u`` itself, updated in place, or -- for a
    neuron without synaptic current (every ``du = 4095``) whose input cannot wrap -- ``a64``.

    ``a64`` is the synaptic input already shifted, ``a << 6``. Lava adds in int32, so ``u + a64``
    and ``v + u + bias`` wrap at 32 bits. The flags let the caller skip operations that it has
    proven cannot change anything for this layer and input (``layer_bounds``): ``wrap32`` (no
    input reaches ``2**24``), ``wrap24`` (``|u|`` never exceeds ``2**23``), ``saturate`` (``|v|``
    never exceeds ``2**23 - 1``). With all flags set the step is the full arithmetic.
    """
    if c.no_current and not (wrap32 or wrap24):
        u = a64  # u = 0 * u + a64: nothing to compute
    elif c.no_current:
        np.copyto(u, a64)
    else:
        np.multiply(u, c.cu, out=u)
        np.trunc(u, out=u)
        u += a64
    if wrap32:
        u[...] = _wrap(u, 32)
    if wrap24:
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
    if saturate:
        np.clip(v, -(F.UV_MAX - 1), F.UV_MAX - 1, out=v)
    keep = np.less_equal(v, c.vth)  # no spike; multiplying by it resets the spiking neurons to 0
    np.multiply(v, keep, out=v)      # (3x faster than a masked copy in numpy)
    np.logical_not(keep, out=spikes)
    return u


def layer_bounds(a64_max: float, c: NeuronConstants) -> tuple[bool, bool, bool]:
    """Which guards of ``neuron_step`` a layer needs, given the largest ``|a << 6|`` it receives.

    ``|u| <= A / (1 - max cu)`` (a geometric series: ``u`` decays toward zero and gains at most A per
    step) and ``|v| <= (max|u| + max|bias|) / (1 - max cv)``; truncation toward zero only shrinks
    magnitudes, and a reset only sets ``v`` to 0. Each guard is needed only if its bound can exceed
    its range (infinite when a decay factor is 1).
    """
    wrap32 = a64_max >= 2.0 ** F.UV_BITS
    cu_max = float(c.cu.max()) if c.cu.size else 0.0
    cv_max = float(c.cv.max()) if c.cv.size else 0.0
    u_max = a64_max / (1.0 - cu_max) if cu_max < 1.0 else np.inf
    wrap24 = u_max >= F.UV_MAX  # u = -2**23 wraps too (Lava: u <= -2**23 -> u + 2**24)
    bias_max = float(np.abs(c.bias).max()) if c.bias.size else 0.0
    v_max = (min(u_max, 2.0 ** 31) + bias_max) / (1.0 - cv_max) if cv_max < 1.0 else np.inf
    saturate = wrap24 or v_max > F.UV_MAX - 1
    return wrap32, wrap24, saturate


# --- synapses over a whole sequence -----------------------------------------------------------

def _exact_dtype(weight: np.ndarray, where: str, scale: float = 1.0):
    bound = float(np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1).max()) * scale if weight.size else 0.0
    if bound < _F32_EXACT:
        return np.float32
    if bound < _F64_EXACT:
        return np.float64
    raise ValueError(f"{where}: synaptic sums can reach {bound:.3g}, beyond exact float64 (2**53)")


class _Synapse:
    """A layer's synaptic operator prepared for batched evaluation: ``(M, *in) 0/1 -> (M, N)``,
    returning ``a << 6`` (the neuron's input, already MSB-aligned)."""

    def __init__(self, syn, in_shape, out_shape, where):
        self.in_shape, self.out_shape = in_shape, out_shape
        if isinstance(syn, SumPool2d):
            self.kind, self.k = "pool", int(syn.kernel)
            return
        self.kind = syn.kind
        w = syn.effective_weight()
        if isinstance(syn, Dense):
            self.exp = int(syn.weight_exp)
            # A non-negative exponent and the << 6 are exact multiplications: fold them into the
            # weights (the sum then comes out MSB-aligned). A negative exponent floors the sum.
            self.scale = 2.0 ** (self.exp + F.ACT_SHIFT) if self.exp >= 0 else 1.0
            self.dtype = _exact_dtype(w, where, self.scale)
            self.w = np.ascontiguousarray((w.T * self.scale).astype(self.dtype))  # (in, out)
        else:  # Conv2d, weight folded with its exponent; the wrap to 24 bits comes before << 6
            self.dtype = _exact_dtype(w, where)
            self.kh, self.kw = w.shape[2:]
            self.stride, self.padding = tuple(syn.stride), tuple(syn.padding)
            self.w = np.ascontiguousarray(w.reshape(w.shape[0], -1).T.astype(self.dtype))  # (C*kh*kw, out)

    def __call__(self, s: np.ndarray) -> np.ndarray:
        m = s.shape[0]
        act = 2.0 ** F.ACT_SHIFT
        if self.kind == "dense":
            a = s.reshape(m, -1).astype(self.dtype, copy=False) @ self.w
            if self.exp >= 0:
                return a
            return np.floor(a.astype(np.float64) / 2.0 ** -self.exp) * act  # arithmetic right shift
        if self.kind == "pool":
            c, oh, ow = self.out_shape
            k = self.k
            x = s.reshape(m, *self.in_shape)[:, :, :oh * k, :ow * k]
            a = x.reshape(m, c, oh, k, ow, k).sum(axis=(3, 5), dtype=np.float64)
            return _wrap(a, F.CONV_BITS).reshape(m, -1) * act
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
        return _wrap(a, F.CONV_BITS) * act


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
    return check_spikes(x, net.input_shape)


def check_spikes(x, input_shape: tuple) -> np.ndarray:
    """``check_input`` for a bare input shape (used by every runner of an integer network)."""
    x = np.asarray(x)
    n_in = math.prod(input_shape)
    if x.ndim < 3 or math.prod(x.shape[2:]) != n_in:
        raise ValueError(f"input must have shape (samples, T, {', '.join(map(str, input_shape))}), "
                         f"got {x.shape}")
    if x.dtype.kind not in "biuf" or (x.size and not np.all((x == 0) | (x == 1))):
        raise ValueError("input spikes must be 0/1 (graded spikes are not supported)")
    return x.reshape(x.shape[0], x.shape[1], n_in).astype(np.uint8)


def simulate(net: IntNetwork, x, timing: str = "hardware", record: bool = False,
             batch_size: int = 64, progress: bool = False) -> SimResult:
    """Run ``net`` on input spike trains ``x`` of shape ``(S, T, *input_shape)``.

    Every sample starts from rest (``u = v = 0``, empty synaptic buffers). Returns a ``SimResult``.
    ``batch_size`` samples are simulated together; 64 keeps a layer's state in the CPU's cache.
    """
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {TIMINGS}, got {timing!r}")
    x = check_input(net, x)
    S, T = x.shape[:2]
    if S == 0 or T == 0:
        empty = [np.zeros((S, T, int(np.prod(sh))), dtype=np.int8) for sh in net.shapes[1:]]
        if record:
            return SimResult(empty[-1], empty, [e.astype(np.int32) for e in empty], [e.astype(np.int32) for e in empty])
        return SimResult(empty[-1])
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
            a64 = syn(s.reshape(T * B, -1)).reshape(T, B, -1)  # (T, B, N) neuron input a << 6 per step
            flags = layer_bounds(float(np.abs(a64).max()) if a64.size else 0.0, c)
            n = a64.shape[-1]
            u = np.zeros((B, n))
            v = np.zeros((B, n))
            idle = np.zeros((B, n), dtype=a64.dtype)  # hardware timing: step 0 gets the empty buffer
            spikes = np.zeros((T, B, n), dtype=bool)
            for t in range(T):
                at = a64[t] if timing == "ideal" else (a64[t - 1] if t else idle)
                ut = neuron_step(u, v, at, c, spikes[t], *flags)
                if record:
                    rec["u"][li][start:stop, t] = ut
                    rec["v"][li][start:stop, t] = v
            s = spikes.view(np.uint8)
            if record:
                rec["spikes"][li][start:stop] = spikes.transpose(1, 0, 2)
        out[start:stop] = s.transpose(1, 0, 2)
    if record:
        return SimResult(out, rec["spikes"], rec["u"], rec["v"])
    return SimResult(out)
