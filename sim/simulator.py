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

One sigma-delta (SDNN) neuron step (``sigma_delta_step``), exactly as lava/proc/sdn/models.py
(``PySigmaDeltaModelFixed`` 260-284 with ``AbstractSigmaDeltaModel.dynamics`` 150-156,
``AbstractDeltaModel.delta_dynamics`` 72-100, ``cum_error`` off as netx builds it), every sum in
int32 (wrapping), ``vth`` and ``bias`` already ``<< (spike_exp + state_exp)``::

    sigma   = sigma + a                            # the synaptic input a as Dense sends it (no << 6)
    act_new = max(sigma + bias, 0)                 # ReLU
    delta   = act_new - act + residue
    s       = delta if |delta| >= vth else 0       # >= (not >)
    residue = delta - s ;  act = act_new
    payload = s >> state_exp                       # arithmetic shift: floor

One resonate-and-fire step (``resonator_step``), exactly as lava/proc/rf/models.py
(``PyRFModelFixed`` 122-145) and lava/proc/rf_iz/models.py (``PyRF_IZModelFixed`` 34-58), in
int64 with ``sv(x) = sign(x) (|x| >> decay_bits)`` (``scale_volt``, rf/models.py 113-115)::

    real' = clip(sv(cos real) - sv(sin imag) + (a_real << state_exp), +-(2**23 - 1))
    imag' = clip(sv(sin real) + sv(cos imag) + (a_imag << state_exp), +-(2**23 - 1))
    RF:    s = real' >= vth and imag' >= 0 and imag < 0       # the phase crosses zero upwards
    RF_IZ: s = imag' >= vth, then real' = 0, imag' = vth - 1

``Delta`` (netx's SDNN Input block, models.py 223-231) takes ``act_new = a << (spike_exp +
state_exp)`` instead of sigma and ReLU; ``Sigma`` (models.py 54-57) sends ``sigma`` itself.

Synapses (``sim.network``): Dense ``a = (W_eff @ s) >> -weight_exp`` (floor) or ``<< weight_exp``;
Conv and sum-pool ``a = wrap24(conv(s, w << weight_exp))`` (a convolution whose sum can leave
int32 is refused: Lava's result there is undefined, ``_check_conv_int32``; with graded payloads,
which Conv takes as they are, the sums that occur are checked, ``_check_graded_conv``).

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

import functools
import math
import os
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from . import formats as F
from . import native
from .network import Dense, SumPool2d

TIMINGS = ("hardware", "ideal")
BACKENDS = ("numpy", "torch")
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


@dataclass(frozen=True)
class ArrayOps:
    """The array functions the integer arithmetic uses, so that it is written once for numpy
    (``NUMPY``) and torch (``sim.backend_torch.TORCH``): elementwise, ``out=`` where in place."""

    multiply: Callable
    trunc: Callable
    floor: Callable
    mod: Callable          # floored modulo (numpy ``mod``, torch ``remainder``)
    clip: Callable
    less_equal: Callable
    logical_not: Callable
    f64: Callable          # the values as float64 (no copy when they already are)


NUMPY = ArrayOps(np.multiply, np.trunc, np.floor, np.mod, np.clip, np.less_equal, np.logical_not,
                 lambda a: a.astype(np.float64, copy=False))


def _wrap(x: np.ndarray, bits: int, ops: ArrayOps = NUMPY) -> np.ndarray:
    """Two's-complement wrap of integer-valued floats into ``bits`` signed bits (a modulo)."""
    half = 2.0 ** (bits - 1)
    return ops.mod(x + half, 2.0 * half) - half


def neuron_step(u: np.ndarray, v: np.ndarray, a64: np.ndarray, c: NeuronConstants, spikes: np.ndarray,
                wrap32: bool = True, wrap24: bool = True, saturate: bool = True, ops: ArrayOps = NUMPY) -> np.ndarray:
    """Advance ``v`` (a float64 array holding integers) in place by one step, write the spikes into
    the bool array ``spikes`` and return the new ``u``: ``u`` itself, updated in place, or -- for a
    neuron without synaptic current (every ``du = 4095``) whose input cannot wrap -- ``a64``.

    ``a64`` is the synaptic input already shifted, ``a << 6``. Lava adds in int32, so ``u + a64``
    and ``v + u + bias`` wrap at 32 bits. The flags let the caller skip operations that it has
    proven cannot change anything for this layer and input (``layer_bounds``): ``wrap32`` (no
    input reaches ``2**24``), ``wrap24`` (``|u|`` never exceeds ``2**23``), ``saturate`` (``|v|``
    never exceeds ``2**23 - 1``). With all flags set the step is the full arithmetic. ``ops``: the
    array library (numpy arrays, or torch tensors with ``sim.backend_torch.TORCH``).
    """
    if c.no_current and not (wrap32 or wrap24):
        u = a64  # u = 0 * u + a64: nothing to compute
    elif c.no_current:
        u[...] = a64
    else:
        ops.multiply(u, c.cu, out=u)
        ops.trunc(u, out=u)
        u += a64
    if wrap32:
        u[...] = _wrap(u, 32, ops)
    if wrap24:
        hi = u > F.UV_MAX
        if hi.any():
            u[hi] -= 2.0 ** F.UV_BITS
        lo = u <= -F.UV_MAX
        if lo.any():
            u[lo] += 2.0 ** F.UV_BITS
    ops.multiply(v, c.cv, out=v)
    ops.trunc(v, out=v)
    v += u
    v += c.bias
    if wrap32:
        v[...] = _wrap(v, 32, ops)
    if saturate:
        ops.clip(v, -(F.UV_MAX - 1), F.UV_MAX - 1, out=v)
    keep = ops.less_equal(v, c.vth)  # no spike; multiplying by it resets the spiking neurons to 0
    ops.multiply(v, keep, out=v)      # (3x faster than a masked copy in numpy)
    ops.logical_not(keep, out=spikes)
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


@dataclass(frozen=True)
class SigmaDeltaConstants:
    """Per-neuron constants of a sigma-delta group (int64, shape (N,)), from its ``SigmaDelta``
    registers as Lava's process builds them (lava/proc/sdn/process.py 179-180: ``vth`` and ``bias``
    times ``1 << (spike_exp + state_exp)``, stored in int32 Vars)."""

    mode: str
    vth: int              # vth << (spike_exp + state_exp)
    bias: np.ndarray      # bias << (spike_exp + state_exp), int32-wrapped as Lava stores it
    in_shift: int         # Delta: a << (spike_exp + state_exp) (models.py 225-227)
    state_exp: int

    @classmethod
    def of(cls, sd, out_shape) -> "SigmaDeltaConstants":
        shift = sd.scale_shift()
        bias = _wrap_int(sd.expand("bias", out_shape) << shift, F.SD_STATE_BITS)
        return cls(sd.mode, int(sd.vth) << shift, bias, shift, int(sd.state_exp))

    def payload_max(self) -> int:
        """The largest payload magnitude the group can send: ``2**31 >> state_exp`` (sigma for Sigma)."""
        return 2 ** (F.SD_STATE_BITS - 1) >> (0 if self.mode == "sigma" else self.state_exp)


@dataclass
class SigmaDeltaState:
    """``sigma``, ``act`` and ``residue`` of a batch of sigma-delta neurons, int64 arrays ``(B, N)``
    holding int32 values (Lava's Vars; all start at 0, process.py 186-189)."""

    sigma: np.ndarray
    act: np.ndarray
    residue: np.ndarray

    @classmethod
    def zeros(cls, batch: int, n: int) -> "SigmaDeltaState":
        return cls(*(np.zeros((batch, n), dtype=np.int64) for _ in range(3)))


def _wrap_int(x: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap of an int64 array into ``bits`` signed bits (numpy int32 overflow)."""
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def sigma_delta_step(state: SigmaDeltaState, a: np.ndarray, c: SigmaDeltaConstants) -> np.ndarray:
    """Advance ``state`` in place by one step on the synaptic input ``a`` (int64 ``(B, N)``, as the
    synapse sends it, not ``<< 6``) and return the graded payload it sends (int64 ``(B, N)``).

    lava/proc/sdn/models.py: ``sigma_dynamics`` 39-52 (``a + sigma``), ``activation_dynamics``
    121-148 (ReLU of ``sigma + bias``), ``delta_dynamics`` 72-100 (threshold ``|delta| >= vth``,
    residue), ``run_spk`` 279-284 (``s >> state_exp``); the Delta encoder's ``run_spk`` 223-231
    (``a << (spike_exp + state_exp)``, ``act = a``) and Sigma's 54-57 (sends ``sigma``). Every sum
    is numpy int32 arithmetic there, so every result wraps at 32 bits here; ``np.abs`` of int32's
    most negative value stays negative in Lava, so that delta never passes a threshold.
    """
    w = F.SD_STATE_BITS
    if c.mode == "sigma":
        state.sigma[...] = _wrap_int(state.sigma + a, w)
        return state.sigma.copy()
    if c.mode == "delta":
        act = _wrap_int(a << c.in_shift, w)
    else:
        state.sigma[...] = _wrap_int(state.sigma + a, w)
        act = np.maximum(_wrap_int(state.sigma + c.bias, w), 0)
    delta = _wrap_int(act - state.act + state.residue, w)
    mag = np.where(delta == -(1 << (w - 1)), delta, np.abs(delta))  # int32 abs of -2**31 is -2**31
    s = np.where(mag >= c.vth, delta, 0)
    state.residue[...] = _wrap_int(delta - s, w)
    state.act[...] = act
    return s >> c.state_exp


RF_STATE_BITS = 24        # real and imag: ri_bitwidth = sin_decay.precision * 2 (lava/proc/rf/models.py 108)
RF_INPUT_BITS = 32        # the received inputs are int32: ``a << state_exp`` wraps there (models.py 128-131)
RF_STATE_MAX = 2 ** (RF_STATE_BITS - 1) - 1   # clip to [-(2**23 - 1), 2**23 - 1] (models.py 109-111)


@dataclass(frozen=True)
class ResonatorConstants:
    """The constants of a resonate-and-fire group as Lava's ``RF`` process builds them from its
    ``Resonator`` registers (lava/proc/rf/process.py 213-217): the threshold ``vth << state_exp``
    (``int(vth * (1 << state_exp))``), the decays as held."""

    mode: str
    sin_decay: int
    cos_decay: int
    vth: int              # vth << state_exp
    state_exp: int        # input shift: a << state_exp (models.py 128-131)
    decay_bits: int       # the decays' fixed point: products >> decay_bits (models.py 113-115)

    @classmethod
    def of(cls, rf, out_shape) -> "ResonatorConstants":
        return cls(rf.mode, int(rf.sin_decay), int(rf.cos_decay), int(rf.vth) << int(rf.state_exp),
                   int(rf.state_exp), int(rf.decay_bits))


@dataclass
class ResonatorState:
    """``real`` and ``imag`` of a batch of resonate-and-fire neurons, int64 arrays ``(B, N)`` holding
    Lava's int32 Vars (both start at 0, lava/proc/rf/process.py 222-223)."""

    real: np.ndarray
    imag: np.ndarray

    @classmethod
    def zeros(cls, batch: int, n: int) -> "ResonatorState":
        return cls(np.zeros((batch, n), dtype=np.int64), np.zeros((batch, n), dtype=np.int64))


def _scale_volt(x: np.ndarray, bits: int) -> np.ndarray:
    """Lava's ``scale_volt`` (lava/proc/rf/models.py 113-115): ``sign(x) * (|x| >> bits)``, a right
    shift of the magnitude (rounds toward zero), in int64."""
    return np.sign(x) * (np.abs(x) >> bits)


def resonator_step(state: ResonatorState, a_real: np.ndarray, a_imag: np.ndarray,
                   c: ResonatorConstants) -> np.ndarray:
    """Advance ``state`` in place by one step on the two synaptic inputs (int64 ``(B, N)``, the
    int32 values the real and the imaginary Dense send, not yet shifted) and return the 0/1 spikes
    (bool ``(B, N)``).

    lava-nc 0.10, ``PyRFModelFixed.run_spk`` (lava/proc/rf/models.py 127-145) and
    ``PyRF_IZModelFixed.run_spk`` (lava/proc/rf_iz/models.py 39-58), with
    ``resonator_dynamics`` (rf/models.py 52-57) and the fixed ``scale_volt`` (113-115)::

        ar, ai    = wrap32(a_real << state_exp), wrap32(a_imag << state_exp)    # int32 left_shift
        real'     = sv(cos real) - sv(sin imag) + ar       # int64 (np.int64(self.real)); sv(x) =
        imag'     = sv(sin real) + sv(cos imag) + ai       #   sign(x) (|x| >> decay_bits)
        real', imag' = clip(., -(2**23 - 1), 2**23 - 1)    # ri_bitwidth 24 (models.py 107-111, 138-141)
        RF:    s = real' >= vth  and  imag' >= 0  and  imag < 0    # the OLD imag: phase crosses 0
        RF_IZ: s = imag' >= vth;  real' = 0, imag' = vth - 1 where s
    """
    ar = _wrap_int(a_real << c.state_exp, RF_INPUT_BITS)  # numpy int32 left_shift: wraps (checked in Lava)
    ai = _wrap_int(a_imag << c.state_exp, RF_INPUT_BITS)
    real, imag, b = state.real, state.imag, c.decay_bits
    new_real = _scale_volt(c.cos_decay * real, b) - _scale_volt(c.sin_decay * imag, b) + ar
    new_imag = _scale_volt(c.sin_decay * real, b) + _scale_volt(c.cos_decay * imag, b) + ai
    np.clip(new_real, -RF_STATE_MAX, RF_STATE_MAX, out=new_real)
    np.clip(new_imag, -RF_STATE_MAX, RF_STATE_MAX, out=new_imag)
    if c.mode == "rf":
        s = (new_real >= c.vth) & (new_imag >= 0) & (imag < 0)
    else:
        s = new_imag >= c.vth
        new_real[s] = 0
        new_imag[s] = c.vth - 1
    state.real[...] = new_real
    state.imag[...] = new_imag
    return s


def constants_of(neurons, out_shape):
    """A group's constants: ``NeuronConstants`` for CUBA registers, ``SigmaDeltaConstants`` for
    sigma-delta ones, ``ResonatorConstants`` for resonate-and-fire ones (each node's registers
    choose their own arithmetic)."""
    from .graph import is_resonator, is_sigma_delta

    if is_sigma_delta(neurons):
        return SigmaDeltaConstants.of(neurons, out_shape)
    if is_resonator(neurons):
        return ResonatorConstants.of(neurons, out_shape)
    return NeuronConstants.of(neurons, out_shape)


# --- synapses over a whole sequence -----------------------------------------------------------

def _exact_dtype(weight: np.ndarray, where: str, scale: float = 1.0):
    bound = float(np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1).max()) * scale if weight.size else 0.0
    if bound < _F32_EXACT:
        return np.float32
    if bound < _F64_EXACT:
        return np.float64
    raise ValueError(f"{where}: synaptic sums can reach {bound:.3g}, beyond exact float64 (2**53)")


def _check_conv_int32(weight: np.ndarray, where: str) -> None:
    """Refuse a convolution whose sum can leave int32 (inputs 0/1: the sum of a channel's positive,
    or negative, weights). Lava's fixed_pt Conv (lava/proc/conv/utils.py ``conv``) sums in float64
    (``conv_scipy``: exact up to 2**53) and casts the sum to the int32 weight dtype
    (``output.astype(weight.dtype)``) before ``signed_clamp(x, 24)`` wraps it: sums up to 2**31 - 1
    wrap to 24 bits exactly as here, but numpy's cast of a float beyond int32 is undefined (x86-64
    gives -2**31, which the wrap turns into 0: measured in Lava, where a sum of 2172518400 arrives
    as 0, not as its 24-bit wrap). Such a network has no defined result to reproduce."""
    w = weight.reshape(weight.shape[0], -1)
    hi = int(np.clip(w, 0, None).sum(axis=1).max()) if w.size else 0
    lo = int(np.clip(w, None, 0).sum(axis=1).min()) if w.size else 0
    if hi > 2 ** 31 - 1 or lo < -(2 ** 31):
        raise ValueError(f"{where}: convolution sums can reach {hi if hi > 2 ** 31 - 1 else lo}, beyond int32; Lava's "
                         "Conv casts its float sum to int32 there, which is undefined (x86-64 gives 0 after the 24-bit "
                         "wrap), so the simulator refuses it (sums within int32 wrap to 24 bits exactly as in Lava)")


def _check_graded_conv(weight: np.ndarray, where: str, in_max: int) -> bool:
    """A convolution of graded payloads up to ``in_max`` in magnitude: refuse it where its sums
    could leave exact float64 (Lava's own float64 sum would then be inexact and depend on scipy's
    order of additions) and return whether a sum can leave int32 (then every call is checked,
    ``_refuse_conv_beyond_int32``). Lava's fixed_pt Conv with ``num_message_bits > 0`` passes the
    int32 payloads on unchanged (lava/proc/conv/models.py 40-43), ``conv_scipy`` sums them times the
    int32 weights in float64 (lava/proc/conv/utils.py 214-216, 252-296), ``output.astype(int32)``
    (utils.py 218) and ``signed_clamp(x, 24)`` (models.py 78-79, utils.py 67-84: its ``x + 2**23``
    may wrap in int32, which the modulo by ``2**24`` does not see) follow. A payload bound is not
    a sum: with graded input only the sums that occur say whether Lava's result is defined."""
    w = weight.reshape(weight.shape[0], -1)
    bound = float(np.abs(w).sum(axis=1).max()) * in_max if w.size else 0.0
    if bound >= _F64_EXACT:
        raise ValueError(f"{where}: convolution sums of graded payloads up to {in_max} can reach {bound:.3g}, beyond "
                         "exact float64 (2**53), where Lava's own float64 convolution is inexact")
    return bound > 2 ** 31 - 1


def _refuse_conv_beyond_int32(a, where: str) -> None:
    """Refuse convolution sums ``a`` (integer-valued float64, numpy or torch) beyond int32: Lava's
    Conv casts its float64 sum to int32 (lava/proc/conv/utils.py 218), undefined there (x86-64
    gives ``-2**31``, which the 24-bit wrap turns into 0; ``_check_conv_int32``)."""
    if not a.shape[0]:
        return
    hi, lo = float(a.max()), float(a.min())
    if hi > 2 ** 31 - 1 or lo < -(2 ** 31):
        bad = int(hi if hi > 2 ** 31 - 1 else lo)
        raise ValueError(f"{where}: a convolution sum of graded payloads reached {bad}, beyond int32, where Lava's "
                         "Conv casts its float sum to int32 (undefined: x86-64 gives 0 after the 24-bit wrap), so the "
                         "simulator refuses it; lower the payloads or the weights")


# --- sparse or dense products ---------------------------------------------------------------
# ``s @ w`` for an ``(M, K)`` spike (or payload) matrix: dense BLAS casts the ``M K`` inputs to
# float and does ``M K N`` multiply-adds; the sparse form (a CSR matrix of the nonzero inputs,
# scipy's ``csr_matvecs``: each active input adds its weight row) scans the ``M K`` entries, builds
# the index per nonzero and does ``nnz N`` additions. Both are exact: every term and partial sum
# is an integer below the dtype's exact bound (``_exact_dtype``), so the order of the additions
# does not matter. ``products="auto"`` picks the cheaper by this model, per call, from the counted
# nonzeros. Constants (seconds per unit) fitted by least squares (relative error) to 15 timed
# products on the 2-core x86-64 VM, one thread, float32, load average ~7 (M = 5120; K x N = 784 x
# 800, 800 x 10, 800 x 200; activity 1-40%), where the model picked the faster form in all 15;
# the sparse section of ``bench/sim_vs_lava.py`` times and fits the same products again. With
# N = 800 the sparse form wins below ~17% activity; with N = 10 almost never. Only the cost
# depends on the choice, never the result. BLAS spreads the multiply-adds over its threads and the
# sparse product runs on one, so the multiply-add cost is divided by ``blas_threads()``: on the
# same VM quiet, with numpy's two OpenBLAS threads, the sparse section fitted 0.0082 ns per
# multiply-add (half the one-thread figure) and the other constants as below; without the
# division, auto picked sparse at 12% activity, where dense was 1.4x faster (2026-12-01).
PRODUCTS = ("auto", "dense", "sparse")
_DENSE_ENTRY_S = 0.31e-9     # per input entry: the cast to float
_DENSE_MADD_S = 0.0153e-9    # per multiply-add of float32 BLAS, one thread
_SPARSE_SCAN_S = 0.33e-9     # per input entry: the nonzero scan
_SPARSE_NNZ_S = 4.4e-9       # per nonzero: column index, value, CSR row overhead
_SPARSE_ADD_S = 0.082e-9     # per added weight (nonzero x output)


def _scipy_sparse():
    try:
        import scipy.sparse
    except ImportError:  # optional: without scipy every product is dense
        return None
    return scipy.sparse


@functools.lru_cache(maxsize=1)
def blas_threads() -> int:
    """Threads numpy's BLAS uses for a product, as its environment sets them (``OPENBLAS_NUM_THREADS``,
    ``MKL_NUM_THREADS``, ``OMP_NUM_THREADS``; at most the CPUs), else the CPUs this process may run on."""
    try:
        cpus = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cpus = max(1, os.cpu_count() or 1)
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        try:
            n = int(os.environ.get(var, "").split(",")[0])
        except ValueError:
            continue
        if n > 0:
            return min(n, cpus)
    return cpus


def use_sparse(m: int, k: int, n: int, nnz: int, cast: bool = True) -> bool:
    """Whether the sparse product of an ``(m, k)`` input with ``nnz`` nonzeros by a ``(k, n)``
    weight is predicted cheaper than the dense one (the cost model above); ``cast``: the dense
    product must first cast the input to the weight's dtype (not when the native neuron steps
    wrote the spikes as float32)."""
    sparse = m * k * _SPARSE_SCAN_S + nnz * (_SPARSE_NNZ_S + n * _SPARSE_ADD_S)
    return sparse < m * k * (_DENSE_ENTRY_S * cast + n * _DENSE_MADD_S / blas_threads())


def sparse_product(s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``s @ w`` for an ``(M, K)`` integer matrix ``s`` (mostly zeros) and a float ``(K, N)``
    weight, through a CSR matrix of ``s``'s nonzeros (values cast to ``w``'s dtype): exact under
    the same bound as the dense product. Needs scipy."""
    sparse = _scipy_sparse()
    if sparse is None:
        raise ValueError("products='sparse' needs scipy (pip install scipy), which is not installed")
    m, k = s.shape
    flat = np.ascontiguousarray(s).reshape(-1)
    idx = np.flatnonzero(flat != 0)  # of a bool mask: numpy's fast path (7x faster than of uint8)
    itype = np.int32 if max(idx.size, k) < 2 ** 31 else np.int64
    indptr = np.searchsorted(idx, np.arange(0, m * k + 1, k))  # (m + 1,) row starts
    cols = (idx - np.repeat(np.arange(0, m * k, k), np.diff(indptr))).astype(itype)  # idx % k, 3x faster
    a = sparse.csr_array((flat[idx].astype(w.dtype), cols, indptr.astype(itype)), shape=(m, k))
    return np.asarray(a @ w)


def _nonzeros(s: np.ndarray) -> int:
    """Nonzero entries of ``s``, for the cost model: float32 spikes counted through their bits
    (3x faster than numpy's float count; a -0.0 would count as one, which changes a cost only)."""
    return int(np.count_nonzero(s.view(np.uint32) if s.dtype == np.float32 and s.flags.c_contiguous else s))


def _product(s: np.ndarray, w: np.ndarray, products: str) -> np.ndarray:
    """``s @ w`` (``s`` ``(M, K)`` 0/1 or graded integers), dense or sparse (``PRODUCTS``)."""
    if products == "sparse" or (products == "auto" and s.shape[0] and
                                use_sparse(*s.shape, w.shape[1], _nonzeros(s), s.dtype != w.dtype) and
                                _scipy_sparse() is not None):
        return sparse_product(s, w)
    return s.astype(w.dtype, copy=False) @ w


def set_products(syns, products: str) -> None:
    """Set how the synapses ``syns`` (``_Synapse`` objects, or objects holding them in ``parts``
    as ``(key, _Synapse)`` pairs) compute their products: one of ``PRODUCTS``."""
    if products not in PRODUCTS:
        raise ValueError(f"products must be one of {PRODUCTS}, got {products!r}")
    for syn in syns:
        for part in ([p for _, p in syn.parts] if hasattr(syn, "parts") else [syn]):
            part.products = products


class _Synapse:
    """A projection's synaptic operator prepared for batched evaluation: ``(M, *in) -> (M, N)``,
    returning ``a << 6`` (the neuron's input, already MSB-aligned).

    ``in_max`` is the largest input magnitude (1 for spikes, larger for graded payloads). Lava's
    Dense sums in int32 (``weights.dot(s)``) and shifts in int32: where the largest possible sum
    can reach ``2**31`` (graded payloads), the sum is wrapped to 32 bits before ``<< 6``.

    A Conv with graded input (``_check_graded_conv``) computes what Lava's fixed_pt Conv computes
    with ``num_message_bits > 0`` (lava-nc 0.10 lava/proc/conv/models.py 40-51, 78-79;
    lava/proc/conv/utils.py 163-218, 67-84): the int32 payloads as they are (not cast to 0/1, 40-43),
    convolved with the int32 weights in float64 (``conv_scipy``: exact while every partial sum stays
    below ``2**53``), the float sum cast to int32 (utils.py 218), then wrapped into 24 bits
    (``signed_clamp``, models.py 78-79), the same wrap as for spikes. The simulator sums in float64
    (exact under the same bound) and refuses a run in which a sum leaves int32, where Lava's cast is
    undefined. Sum pooling has no Lava process (netx does not implement ``pool``,
    and lava-nc has no pooling process): graded input into it is refused.
    """

    def __init__(self, syn, in_shape, out_shape, where, in_max: int = 1):
        self.in_shape, self.out_shape = in_shape, out_shape
        self.where = where
        self.wrap32 = False
        self.check32 = False  # graded conv: sums may leave int32, checked per call (``finish``)
        self.products = "auto"  # dense or sparse products (``PRODUCTS``, ``set_products``)
        if in_max > 1 and isinstance(syn, SumPool2d):
            raise ValueError(f"{where}: graded (non 0/1) input into a sum pooling operator is not supported (Lava has "
                             "no pooling process and netx no pool layer); feed graded input through a Dense or Conv")
        if isinstance(syn, SumPool2d):
            self.kind, self.k = "pool", int(syn.kernel)
            return
        self.kind = syn.kind
        w = syn.effective_weight()
        if isinstance(syn, Dense):
            self.exp = int(syn.weight_exp)
            rows = float(np.abs(w).sum(axis=1).max()) * in_max if w.size else 0.0
            self.wrap32 = rows * 2.0 ** max(self.exp, 0) >= 2.0 ** 31
            # A non-negative exponent and the << 6 are exact multiplications: fold them into the
            # weights (the sum then comes out MSB-aligned). A negative exponent floors the sum.
            self.scale = 2.0 ** (self.exp + F.ACT_SHIFT) if self.exp >= 0 and not self.wrap32 else 1.0
            self.dtype = _exact_dtype(w, where, self.scale * in_max)
            self.w = np.ascontiguousarray((w.T * self.scale).astype(self.dtype))  # (in, out)
        else:  # Conv2d, weight folded with its exponent; the wrap to 24 bits comes before << 6
            if in_max > 1:
                self.check32 = _check_graded_conv(w, where, in_max)
            else:
                _check_conv_int32(w, where)
            self.dtype = _exact_dtype(w, where, in_max)
            self.kh, self.kw = w.shape[2:]
            self.stride, self.padding = tuple(syn.stride), tuple(syn.padding)
            self.w = np.ascontiguousarray(w.reshape(w.shape[0], -1).T.astype(self.dtype))  # (C*kh*kw, out)

    def __call__(self, s: np.ndarray) -> np.ndarray:
        m = s.shape[0]
        if self.kind == "dense":
            return self.finish(_product(s.reshape(m, -1), self.w, self.products))
        if self.kind == "pool":
            c, oh, ow = self.out_shape
            k = self.k
            x = s.reshape(m, *self.in_shape)[:, :, :oh * k, :ow * k]
            return self.finish(x.reshape(m, c, oh, k, ow, k).sum(axis=(3, 5), dtype=np.float64).reshape(m, -1))
        c, h, w = self.in_shape
        x = s.reshape(m, c, h, w).astype(self.dtype, copy=False)
        ph, pw = self.padding
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        win = np.lib.stride_tricks.sliding_window_view(x, (self.kh, self.kw), axis=(2, 3))
        win = win[:, :, ::self.stride[0], ::self.stride[1]]  # (m, C, oh, ow, kh, kw)
        _, oh, ow = self.out_shape
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(m * oh * ow, -1)
        a = _product(cols, self.w, self.products)  # (m*oh*ow, C_out)
        return self.finish(a.reshape(m, oh, ow, -1).transpose(0, 3, 1, 2).reshape(m, -1))

    def finish(self, a, ops: ArrayOps = NUMPY):
        """The operator's integer sums ``(M, N)`` (``self.dtype``, or float64 for pooling) ->
        ``a << 6``: Dense shifts by ``weight_exp`` (int32 wrap where sums can reach ``2**31``);
        Conv and sum pooling wrap into 24 bits (Lava's Conv, ``signed_clamp``) before the << 6."""
        act = 2.0 ** F.ACT_SHIFT
        if self.kind != "dense":
            a = ops.f64(a)
            if self.check32:
                _refuse_conv_beyond_int32(a, self.where)
            return _wrap(a, F.CONV_BITS, ops) * act
        if self.wrap32:  # int32 sum, int32 shift (Lava's Dense), then the neuron's << 6
            a = _wrap(ops.f64(a), 32, ops)
            a = _wrap(a * 2.0 ** self.exp, 32, ops) if self.exp >= 0 else ops.floor(a / 2.0 ** -self.exp)
            return a * act
        if self.exp >= 0:  # exponent and << 6 already folded into the weights
            return a
        return ops.floor(ops.f64(a) / 2.0 ** -self.exp) * act  # arithmetic right shift

    def bound(self, in_max: float = 1.0) -> float:
        """Largest ``|a << 6|`` this operator can deliver (for ``layer_bounds`` of recurrent groups)."""
        act = 2.0 ** F.ACT_SHIFT
        if self.kind == "pool":
            return min(self.k * self.k * in_max, 2.0 ** (F.CONV_BITS - 1)) * act
        rows = float(np.abs(self.w.astype(np.float64)).sum(axis=0).max()) * in_max if self.w.size else 0.0
        if self.kind == "dense":
            if self.wrap32:
                return 2.0 ** 31 * act
            return rows if self.exp >= 0 else rows / 2.0 ** -self.exp * act + act
        return min(rows, 2.0 ** (F.CONV_BITS - 1)) * act


class _DelayedSynapse:
    """A ``Dense`` projection with per-synapse delays, as Lava's ``DelayDense``
    (lava-nc 0.10 lava/proc/dense/models.py ``PyDelayDenseModelBitAcc.run_spk``): the synapses
    of each delay ``k`` are summed and shifted by ``weight_exp`` on their own, then added into the
    int32 buffer ``a_buff`` slot that is sent ``k`` steps after a plain ``Dense`` would send it.
    One ``_Synapse`` per delay value (``Dense.delays``)."""

    def __init__(self, syn, in_shape, out_shape, where, in_max: int = 1):
        mode = syn.sign_mode or F.sign_mode_of(np.asarray(syn.weight))
        self.parts = [(k, _Synapse(Dense(w, syn.weight_exp, syn.num_weight_bits, mode), in_shape, out_shape,
                                   where, in_max)) for k, w in sorted(syn.delays().items())]
        if any(part.wrap32 for _, part in self.parts) or self.bound(in_max) >= 2.0 ** (31 + F.ACT_SHIFT):
            raise ValueError(f"{where}: delayed synaptic sums could reach 2**31 (int32 wrap in Lava's DelayDense "
                             "buffer); lower the weights or the graded input magnitudes")
        self.n_out = math.prod(out_shape)

    def sequence(self, s: np.ndarray, T: int, B: int) -> np.ndarray:
        """``s`` ``(T, B, *in)`` -> ``(T, B, N)``: at ``t`` what arrives one step later from the
        sends of ``t - k`` (the plain projection's timing, shifted by each synapse's delay)."""
        total = np.zeros((T, B, self.n_out))
        flat = s.reshape(T * B, -1)
        for k, part in self.parts:
            if k < T:
                total[k:] += part(flat[:(T - k) * B]).reshape(T - k, B, -1)
        return total

    def step(self, sent: np.ndarray, t: int) -> np.ndarray:
        """What arrives at step ``t`` from a recurrent source whose sends ``sent`` ``(T, B, N)``
        are known up to ``t - 1``."""
        total = 0.0
        for k, part in self.parts:
            if t - 1 - k >= 0:
                total = total + part(sent[t - 1 - k].view(np.uint8))
        return total

    def bound(self, in_max: float = 1.0) -> float:
        return sum(part.bound(in_max) for _, part in self.parts)


def _synapse(syn, in_shape, out_shape, where, in_max: int = 1):
    if isinstance(syn, Dense) and syn.delay is not None:
        return _DelayedSynapse(syn, in_shape, out_shape, where, in_max)
    return _Synapse(syn, in_shape, out_shape, where, in_max)


@dataclass
class SimResult:
    """Output spikes ``(S, T, n_out)`` int8; with recording, per layer ``spikes`` (int8),
    ``u`` and ``v`` (int32) as ``(S, T, N)`` arrays (flattened C order)."""

    output: np.ndarray
    spikes: Optional[list] = None
    u: Optional[list] = None
    v: Optional[list] = None
    info: Optional[dict] = None  # what a target reports (e.g. Lava's timing)


@dataclass
class GraphResult:
    """What a graph run returns: ``outputs`` (output name -> ``(S, T, N)`` int8 spikes, or the
    input's values for an output that reads an input) and, with recording, ``spikes``, ``u`` and
    ``v`` of every neuron group (group name -> ``(S, T, N)``, int8 / int32, flattened C order)."""

    outputs: dict
    spikes: Optional[dict] = None
    u: Optional[dict] = None
    v: Optional[dict] = None
    info: Optional[dict] = None  # what a target reports (e.g. Lava's timing)

    @property
    def output(self) -> np.ndarray:
        """The first output's spikes."""
        return next(iter(self.outputs.values()))


def check_input(net, x) -> np.ndarray:
    """``(S, T, *input_shape)`` 0/1 spikes -> ``(S, T, prod(input_shape))`` uint8, or a clear error."""
    return check_spikes(x, net.input_shape)


def check_spikes(x, input_shape: tuple) -> np.ndarray:
    """``check_input`` for a bare input shape (used by every runner of an integer network)."""
    x = np.asarray(x)
    n_in = math.prod(input_shape)
    if x.ndim < 3 or math.prod(x.shape[2:]) != n_in:
        raise ValueError(f"input must have shape (samples, T, {', '.join(map(str, input_shape))}), "
                         f"got {x.shape}")
    if x.dtype.kind not in "biuf" or (x.size and not _zeros_and_ones(x)):
        raise ValueError("input spikes must be 0/1 (graded spikes are not supported)")
    return x.reshape(x.shape[0], x.shape[1], n_in).astype(np.uint8, copy=False)


def _zeros_and_ones(x: np.ndarray) -> bool:
    """Every value of the non-empty numeric ``x`` is 0 or 1 (one pass for integers, none for bool)."""
    if x.dtype.kind == "b":
        return True
    if x.dtype.kind in "iu":
        return bool(x.max() <= 1) and (x.dtype.kind == "u" or bool(x.min() >= 0))
    return bool(np.all((x == 0) | (x == 1)))


GRADED = F.IntFormat("graded spike payload", F.UV_BITS, True)  # Loihi 2 graded spikes: up to 24 bits


def check_payload(x, input_shape: tuple, where: str = "input") -> np.ndarray:
    """``(S, T, *input_shape)`` 0/1 spikes or integer graded payloads -> ``(S, T, N)``: uint8 for
    spikes, int64 for payloads (signed 24-bit, Loihi 2's graded spikes), or a clear error."""
    x = np.asarray(x)
    n_in = math.prod(input_shape)
    if x.ndim < 2 or math.prod(x.shape[2:]) != n_in or (x.ndim == 2 and n_in != 1):
        raise ValueError(f"{where} must have shape (samples, T, {', '.join(map(str, input_shape))}), got {x.shape}")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{where}: dtype {x.dtype} is not numeric")
    x = x.reshape(x.shape[0], x.shape[1], n_in)
    if x.dtype == np.bool_:  # spikes by type: no scan of the values needed
        return x.view(np.uint8)
    if not x.size or _zeros_and_ones(x):
        return x.astype(np.uint8)
    return GRADED.check(x, where)


@dataclass(frozen=True)
class Protocol:
    """How a run is driven (the same for the simulator and every target).

    ``steps``           time steps per sample (from the input, or given with ``input_bias`` alone)
    ``input_bias``      ``(S, N)`` int64 bias mantissas of the input neuron group, one row per sample
                        (netx's Input block driven through its bias, as lava-dl drives PilotNet)
    ``reset_interval``  None: every sample starts from rest (u, v and synaptic buffers zeroed).
                        N: the samples run back to back as ONE stream; u and v of group ``g`` are
                        zeroed before the step whose time ``tau`` (from 1) has
                        ``tau % N == (reset_offset + 1 + depth(g)) % N`` -- lava-dl netx's
                        ``Network(reset_interval=N, reset_offset=K)`` (lava/lib/dl/netx/hdf5.py,
                        ``_create``: ``reset_offset = self.reset_offset + 1``, then ``+= 1`` per
                        layer; LIFReset, lava/proc/lif/models.py ``PyLifResetModelBitAcc.run_spk``:
                        the reset comes after receiving input, before the dynamics). Synaptic
                        buffers are not reset: what a layer sent last carries into the next sample.
    """

    steps: int
    input_bias: Optional[np.ndarray] = None
    reset_interval: Optional[int] = None
    reset_offset: int = 0

    def phase(self, depth: int) -> int:
        return (self.reset_offset + 1 + depth) % self.reset_interval


def prepare_inputs(graph, x=None, input_bias=None, steps=None, reset_interval=None, reset_offset=0):
    """Check a run's inputs against ``graph`` -> ``(xs, protocol, samples)``.

    ``x``: one array (for a graph with one input) or a dict input name -> array, each
    ``(S, T, *shape)`` 0/1 spikes or graded integers; may be omitted when ``input_bias`` drives the
    input neuron group, then ``steps`` gives ``T``. ``input_bias``: ``(S, *shape)`` integer bias
    mantissas of the input with neurons. Returns ``xs`` (name -> ``(S, T, N)``), the ``Protocol``
    and ``S``; every problem is a ``ValueError`` naming the argument.
    """
    names = graph.inputs()
    if x is None:
        xs = {}
    elif isinstance(x, dict):
        unknown = set(x) - set(names)
        if unknown:
            raise ValueError(f"input for unknown node(s) {sorted(unknown)}; the graph's inputs are {names}")
        xs = dict(x)
    elif len(names) == 1:
        xs = {names[0]: x}
    else:
        raise ValueError(f"the graph has {len(names)} inputs ({names}): give x as a dict name -> array")
    xs = {n: check_payload(v, graph.shapes[n], f"input {n!r}") for n, v in xs.items()}
    counts = {v.shape[0] for v in xs.values()}
    lengths = {v.shape[1] for v in xs.values()}
    bias_inputs = [n for n in names if graph.neurons(n) is not None]
    bias = None
    if input_bias is not None:
        if len(bias_inputs) != 1:
            raise ValueError(f"--input-bias drives the input neuron group, but the graph has {len(bias_inputs)} "
                             f"inputs with neurons ({bias_inputs})")
        from .graph import is_sigma_delta

        if is_sigma_delta(graph.neurons(bias_inputs[0])):
            raise ValueError(f"--input-bias: the input group {bias_inputs[0]!r} is a sigma-delta (Delta) encoder, "
                             "which has no bias (lava/proc/sdn/process.py Delta); give its input as x")
        shape = graph.shapes[bias_inputs[0]]
        b = np.asarray(input_bias)
        if b.ndim < 1 or math.prod(b.shape[1:]) != math.prod(shape):
            raise ValueError(f"input bias must have shape (samples, {', '.join(map(str, shape))}), got {b.shape}")
        bias = F.BIAS_MANT.check(b.reshape(b.shape[0], -1), "input bias")
        counts.add(bias.shape[0])
    if len(counts) > 1:
        raise ValueError(f"inputs disagree on the number of samples: {sorted(counts)}")
    if steps is not None:
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        lengths.add(int(steps))
    if len(lengths) > 1:
        raise ValueError(f"inputs disagree on the number of time steps: {sorted(lengths)}")
    if not lengths:
        raise ValueError("no input: give input spikes, or --input-bias with --steps")
    missing = [n for n in names if n not in xs and graph.neurons(n) is None]
    if missing:
        raise ValueError(f"no input for {missing}: these inputs have no neurons, so they need spikes")
    S, T = (counts.pop() if counts else 0), lengths.pop()
    if reset_interval is not None and int(reset_interval) < 1:
        raise ValueError(f"reset interval must be >= 1, got {reset_interval}")
    if reset_interval is None and reset_offset:
        raise ValueError("a reset offset needs a reset interval")
    proto = Protocol(T, bias, None if reset_interval is None else int(reset_interval), int(reset_offset))
    return xs, proto, S


def simulate(net, x=None, timing: str = "hardware", record: bool = False, batch_size: int = 64,
             progress: bool = False, input_bias=None, steps=None, reset_interval=None, reset_offset: int = 0,
             backend: str = "numpy", device=None, products: str = "auto"):
    """Run ``net`` (an ``IntNetwork`` chain or an ``IntGraph``) on input ``x`` ``(S, T, *input_shape)``.

    A chain returns a ``SimResult`` (per-layer lists); a graph a ``GraphResult`` (dicts by node
    name). See ``simulate_graph`` for the arguments.
    """
    from .graph import IntGraph

    if isinstance(net, IntGraph):
        return simulate_graph(net, x, timing, record, batch_size, progress, input_bias, steps, reset_interval,
                              reset_offset, backend, device, products)
    if x is not None:  # chains take 0/1 spikes (the graph form accepts graded payloads); checked once
        x = check_input(net, x).view(np.bool_)
    res = simulate_graph(IntGraph.from_chain(net), x, timing, record, batch_size, progress, input_bias, steps,
                         reset_interval, reset_offset, backend, device, products)
    if not record:
        return SimResult(res.output)
    names = [f"layer{i}" for i in range(len(net.layers))]
    return SimResult(res.output, [res.spikes[n] for n in names], [res.u[n] for n in names], [res.v[n] for n in names])


def simulate_graph(graph, x=None, timing: str = "hardware", record: bool = False, batch_size: int = 64,
                   progress: bool = False, input_bias=None, steps=None, reset_interval=None,
                   reset_offset: int = 0, backend: str = "numpy", device=None, products: str = "auto") -> GraphResult:
    """Run an ``IntGraph`` bit-exactly as Lava ``fixed_pt`` does.

    Parameters
    ----------
    x : array or dict
        ``(S, T, *shape)`` per input: 0/1 spikes or integer graded payloads (signed 24-bit).
    timing : 'hardware' | 'ideal'
        ``hardware`` (Lava's): every projection delivers one step late. ``ideal``: feed-forward
        projections deliver at once (aligned with a float model); recurrent ones (inside a strongly
        connected component) keep their one step, without which a loop would be instantaneous.
    record : bool
        Also return spikes, u and v of every neuron group.
    batch_size : int
        Samples simulated together (ignored in stream mode, which is one sequence).
    input_bias, steps, reset_interval, reset_offset
        The deployment protocol (``Protocol``).
    backend : 'numpy' | 'torch'
        ``torch`` (``sim.backend_torch``) runs the same arithmetic on torch tensors on ``device``
        (e.g. ``'cuda'``; default CUDA when available, else CPU); results are equal bit for bit.
    products : 'auto' | 'dense' | 'sparse'
        numpy backend: synaptic products as dense BLAS or over the active inputs only (CSR);
        ``auto`` picks per product from the measured activity (``use_sparse``). Exact either way.

    Feed-forward components are simulated a whole sequence at a time (one product per projection,
    only the neurons loop over time); recurrent components step through time together.
    """
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {TIMINGS}, got {timing!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if products not in PRODUCTS:
        raise ValueError(f"products must be one of {PRODUCTS}, got {products!r}")
    xs, proto, S = prepare_inputs(graph, x, input_bias, steps, reset_interval, reset_offset)
    T = proto.steps
    groups = graph.groups()
    sizes = {n: graph.size(n) for n in graph.nodes if n in graph.shapes}
    out_src = graph.outputs()
    consts = {n: constants_of(graph.neurons(n), graph.shapes[n]) for n in groups}
    graded = {n for n in groups if isinstance(consts[n], SigmaDeltaConstants)}  # int32 payloads, not 0/1
    if graded and backend != "numpy":
        raise ValueError(f"the {backend} backend does not run sigma-delta (SDNN) groups ({sorted(graded)}); "
                         "use backend='numpy'")
    if backend != "numpy":
        from .graph import refuse_unless_lif

        refuse_unless_lif(graph, f"the {backend} backend")

    def spike_dtype(n):
        return np.int32 if n in graded else np.int8

    rec = {k: {n: np.zeros((S, T, sizes[n]), dtype=spike_dtype(n) if k == "spikes" else np.int32) for n in groups}
           for k in ("spikes", "u", "v")} if record else None
    outputs = {o: np.zeros((S, T, sizes[src]), dtype=spike_dtype(src) if src in groups else xs[src].dtype)
               for o, src in out_src.items()}
    if S == 0 or T == 0:
        return GraphResult(outputs, *((rec["spikes"], rec["u"], rec["v"]) if record else ()))
    # payloads reach synapses from inputs without neurons and from sigma-delta groups (a CUBA group,
    # and a CUBA input group, sends 0/1 spikes)
    in_max = {n: int(np.abs(v).max()) if v.size and v.dtype != np.uint8 else 1  # uint8: 0/1 spikes (check_payload)
              for n, v in xs.items() if graph.neurons(n) is None}
    in_max.update({n: consts[n].payload_max() for n in graded})
    syns = {}
    for p in graph.projections():
        syns[id(p)] = _synapse(p.op, graph.shapes[p.src], graph.shapes[p.dst], f"node {p.name!r}",
                               max(in_max.get(p.src, 1), 1))
    depth = graph.depths()
    stream = proto.reset_interval is not None
    chunks = [(0, S)] if stream else [(s, min(s + batch_size, S)) for s in range(0, S, batch_size)]
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="simulate", unit="batch")
    set_products(syns.values(), products)
    if backend == "torch":
        from .backend_torch import TorchGraphRun, device_of

        run = TorchGraphRun(graph, syns, consts, depth, timing, proto, record, device_of(device))
    else:
        run = _GraphRun(graph, syns, consts, depth, timing, proto, record)
    for start, stop in chunks:
        B = stop - start
        if stream:  # one sequence of S*T steps, batch 1
            xb = {n: v.reshape(1, S * T, -1).transpose(1, 0, 2) for n, v in xs.items()}
            bias = None if proto.input_bias is None else np.repeat(proto.input_bias, T, axis=0)[:, None, :]
            res = run(xb, S * T, 1, bias)
            for o, src in out_src.items():
                outputs[o][:] = res["spikes"][src].reshape(S, T, -1)
            if record:
                for k in rec:
                    for n in groups:
                        rec[k][n][:] = res[k][n].reshape(S, T, -1)
            continue
        xb = {n: v[start:stop].transpose(1, 0, 2) for n, v in xs.items()}  # (T, B, N)
        bias = None if proto.input_bias is None else proto.input_bias[start:stop]
        res = run(xb, T, B, bias)
        for o, src in out_src.items():
            outputs[o][start:stop] = res["spikes"][src].transpose(1, 0, 2)
        if record:
            for k in rec:
                for n in groups:
                    rec[k][n][start:stop] = res[k][n].transpose(1, 0, 2)
    return GraphResult(outputs, *((rec["spikes"], rec["u"], rec["v"]) if record else ()))


class _GraphRun:
    """One batch of a graph run: ``(T, B, N)`` inputs -> ``(T, B, N)`` spikes (and u, v) per group."""

    def __init__(self, graph, syns, consts, depth, timing, proto, record):
        self.g, self.syns, self.consts, self.depth = graph, syns, consts, depth
        self.timing, self.proto, self.record = timing, proto, record
        self.comps = graph.components()
        self.into = {}
        for p in graph.projections():
            self.into.setdefault(p.dst, []).append(p)
        readers = {}
        for p in graph.projections():
            readers[p.src] = readers.get(p.src, 0) + 1
        self.readers = readers
        self.kept = set(graph.outputs().values())
        # groups whose spikes only float32 products read (dense or conv): the native steps write them
        # as float32 0/1, which those products take without a cast (uint8 otherwise)
        self.f32_spikes = {n: bool(readers.get(n)) for n in graph.nodes}
        for p in graph.projections():
            syn = syns[id(p)]
            parts = [part for _, part in syn.parts] if isinstance(syn, _DelayedSynapse) else [syn]
            if not all(part.kind != "pool" and part.dtype == np.float32 for part in parts):
                self.f32_spikes[p.src] = False

    def __call__(self, xb: dict, T: int, B: int, bias) -> dict:
        spikes, us, vs = {}, {}, {}
        left = dict(self.readers)
        for comp in self.comps:
            for n in comp:
                if n in xb and self.g.neurons(n) is None:
                    spikes[n] = xb[n]
            live = [n for n in comp if self.g.neurons(n) is not None]
            if live:
                self._component(live, xb, spikes, us, vs, T, B, bias)
            for n in comp:  # free what no later component reads
                for p in self.into.get(n, []):
                    left[p.src] -= 1
                    if left[p.src] == 0 and p.src not in self.kept and not self.record:
                        spikes.pop(p.src, None)
        return {"spikes": spikes, "u": us, "v": vs}

    def _external(self, n, comp, spikes, T, B, direct, imag: bool = False):
        """Input of group ``n`` from outside its component, ``(T, B, N)`` ``a << 6`` as computed at
        each step (not yet delayed), and whether it arrives one step late. ``imag``: the
        projections into a resonate-and-fire group's imaginary input instead of the others."""
        total = None
        for p in self.into.get(n, []):
            if p.src in comp or p.imag != imag:
                continue
            syn = self.syns[id(p)]
            if isinstance(syn, _DelayedSynapse):
                a = syn.sequence(spikes[p.src], T, B)
            else:
                a = syn(spikes[p.src].reshape(T * B, -1)).reshape(T, B, -1)
            total = a if total is None else total + a
        if direct is not None:  # an input group's own input: straight into a_in, no synapse, no delay
            return direct.astype(np.float64) * 2.0 ** F.ACT_SHIFT, False
        if total is None:
            total = np.zeros((T, B, self.g.size(n)))
        return total, self.timing == "hardware"

    def _constants(self, n, bias) -> NeuronConstants:
        """The group's constants; an input group driven by a per-sample bias gets it here:
        ``bias_mant`` rows ``(B, N)``, or ``(T, 1, N)`` step by step in stream mode."""
        c = self.consts[n]
        if bias is None or n not in self.g.inputs():
            return c
        exp = self.g.neurons(n).expand("bias_exp", self.g.shapes[n]).astype(np.float64)
        return NeuronConstants(c.cu, c.cv, bias.astype(np.float64) * 2.0 ** exp, c.vth, c.no_current)

    def _component(self, comp, xb, spikes, us, vs, T, B, bias):
        internal = [p for n in comp for p in self.into.get(n, []) if p.src in comp]
        if any(isinstance(self.consts[n], SigmaDeltaConstants) for n in comp):
            if internal:
                raise ValueError(f"sigma-delta (SDNN) groups in a recurrent loop ({comp}) are not supported by the "
                                 "simulator (netx builds SDNN blocks feed-forward)")
            return self._sigma_delta(comp[0], xb, spikes, us, vs, T, B)
        if any(isinstance(self.consts[n], ResonatorConstants) for n in comp):
            if internal:
                raise ValueError(f"resonate-and-fire groups in a recurrent loop ({comp}) are not supported by the "
                                 "simulator (netx builds RF blocks feed-forward)")
            return self._resonator(comp[0], spikes, us, vs, T, B)
        ext = {n: self._external(n, comp, spikes, T, B, xb.get(n)) for n in comp}
        consts = {n: self._constants(n, bias) for n in comp}
        flags = {}
        for n in comp:
            a_max = float(np.abs(ext[n][0]).max()) if ext[n][0].size else 0.0
            a_max += sum(self.syns[id(p)].bound() for p in internal if p.dst == n)
            c = consts[n]
            bias_max = np.abs(c.bias).reshape(-1, c.cu.size).max(axis=0)
            flags[n] = layer_bounds(a_max, NeuronConstants(c.cu, c.cv, bias_max, c.vth, c.no_current))
        reset = self.proto.reset_interval
        phase = {n: self.proto.phase(self.depth[n]) for n in comp} if reset is not None else {}
        if not internal and native.available():  # one feed-forward group: all T steps in C
            (n,) = comp
            size = self.g.size(n)
            out = np.zeros((T, B, size), dtype=np.float32 if self.f32_spikes[n] else np.uint8)
            if self.record:
                us[n] = np.zeros((T, B, size), dtype=np.int32)
                vs[n] = np.zeros((T, B, size), dtype=np.int32)
            native.steps(ext[n][0], ext[n][1], np.zeros((B, size)), np.zeros((B, size)), consts[n], out, flags[n],
                         reset, phase.get(n, 0), us.get(n), vs.get(n), threads=blas_threads())
            spikes[n] = out
            return
        u = {n: np.zeros((B, self.g.size(n))) for n in comp}
        v = {n: np.zeros((B, self.g.size(n))) for n in comp}
        out = {n: np.zeros((T, B, self.g.size(n)), dtype=bool) for n in comp}
        if self.record:
            for n in comp:
                us[n] = np.zeros((T, B, self.g.size(n)), dtype=np.int32)
                vs[n] = np.zeros((T, B, self.g.size(n)), dtype=np.int32)
        idle = {n: np.zeros((B, self.g.size(n))) for n in comp}
        fast, threads = native.available(), blas_threads()
        for t in range(T):
            for n in comp:
                a, late = ext[n]
                at = (a[t - 1] if t else idle[n]) if late else a[t]
                if internal and t:  # what the component's groups sent at t - 1 (always one step late)
                    at = at.astype(np.float64)  # a copy; float64: a float32 input plus recurrent input can pass 2**24
                    for p in internal:
                        if p.dst != n:
                            continue
                        syn = self.syns[id(p)]
                        if isinstance(syn, _DelayedSynapse):
                            at += syn.step(out[p.src], t)
                        else:
                            at += syn(out[p.src][t - 1].view(np.uint8))
                if reset is not None and (t + 1) % reset == phase[n]:
                    u[n][...] = 0
                    v[n][...] = 0
                c = consts[n]
                if c.bias.ndim == 3:
                    c = NeuronConstants(c.cu, c.cv, c.bias[t], c.vth, c.no_current)
                if fast:  # one step in C: state in place, spikes (and u, v) straight into their rows
                    native.steps(np.ascontiguousarray(at)[None], False, u[n], v[n], c,
                                 out[n].view(np.uint8)[t:t + 1], flags[n], rec_u=us[n][t:t + 1] if self.record
                                 else None, rec_v=vs[n][t:t + 1] if self.record else None, threads=threads)
                    continue
                ut = neuron_step(u[n], v[n], at, c, out[n][t], *flags[n])
                if self.record:
                    us[n][t] = ut
                    vs[n][t] = v[n]
        for n in comp:
            spikes[n] = out[n].view(np.uint8)

    def _sigma_delta(self, n, xb, spikes, us, vs, T, B):
        """A feed-forward sigma-delta group, stepped by ``sigma_delta_step``. Its payloads go out as
        int32; recorded ``u`` is its ``sigma`` and ``v`` its ``act`` (Lava's Vars of those names).
        netx ignores a reset interval for SDNN blocks (hdf5.py 165-167: "Reset is not supported with
        Sigma Delta neurons. It will be ignored."): so does this group."""
        a64, late = self._external(n, [n], spikes, T, B, xb.get(n))
        a = (a64 / 2.0 ** F.ACT_SHIFT).astype(np.int64)  # exact: the synapses deliver integers << 6
        c, size = self.consts[n], self.g.size(n)
        state = SigmaDeltaState.zeros(B, size)
        out = np.zeros((T, B, size), dtype=np.int32)
        if self.record:
            us[n] = np.zeros((T, B, size), dtype=np.int32)
            vs[n] = np.zeros((T, B, size), dtype=np.int32)
        idle = np.zeros((B, size), dtype=np.int64)
        for t in range(T):
            at = (a[t - 1] if t else idle) if late else a[t]
            out[t] = sigma_delta_step(state, at, c)
            if self.record:
                us[n][t] = state.sigma
                vs[n][t] = state.act
        spikes[n] = out

    def _resonator(self, n, spikes, us, vs, T, B):
        """A feed-forward resonate-and-fire group, stepped by ``resonator_step`` on its real and
        imaginary inputs (each one step late, as Lava's two Dense processes send them). Recorded
        ``u`` is its ``real`` and ``v`` its ``imag``. netx gives RF blocks no reset (hdf5.py 190-205
        passes no ``reset_interval`` to ``RF``/``RF_IZ``): a reset interval leaves this group alone."""
        inputs = []
        for imag in (False, True):
            a64, late = self._external(n, [n], spikes, T, B, None, imag=imag)
            inputs.append(((a64 / 2.0 ** F.ACT_SHIFT).astype(np.int64), late))  # exact: integers << 6
        c, size = self.consts[n], self.g.size(n)
        state = ResonatorState.zeros(B, size)
        out = np.zeros((T, B, size), dtype=bool)
        if self.record:
            us[n] = np.zeros((T, B, size), dtype=np.int32)
            vs[n] = np.zeros((T, B, size), dtype=np.int32)
        idle = np.zeros((B, size), dtype=np.int64)
        for t in range(T):
            ar, ai = ((a[t - 1] if t else idle) if late else a[t] for a, late in inputs)
            out[t] = resonator_step(state, ar, ai, c)
            if self.record:
                us[n][t] = state.real
                vs[n][t] = state.imag
        spikes[n] = out.view(np.uint8)
