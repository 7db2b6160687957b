"""Loihi fixed-point formats: bit widths, ranges, and every float <-> integer convention, each once.

The reference is Lava 0.10's bit-accurate models (``PyLifModelBitAcc``, ``PyDenseModelBitAcc``,
``PyConvModelFixed``), read from their source and probed by running them:

Neuron registers (lava/proc/lif/models.py)
    ``u``, ``v``   24-bit state held in int32 (``UV_BITS``)
    ``du``, ``dv`` 12-bit unsigned decays; current decay factor ``(4096 - (du + 1)) / 4096``
                   (``DS_OFFSET = 1`` is added to ``du`` only), voltage ``(4096 - dv) / 4096``
    ``vth``        17-bit unsigned mantissa; effective threshold ``vth << 6`` (``VTH_SHIFT``)
    ``bias_mant``  13-bit signed, ``bias_exp`` 3-bit: bias ``bias_mant << bias_exp``
    input ``a``    left-shifted by 6 (``ACT_SHIFT``) before it is added to ``u``
Dense synapses (lava/proc/dense/models.py, lava/utils/weightutils.py)
    weights clipped to ``[-256, 255]`` (mixed signs), ``[0, 255]`` (excitatory) or ``[-255, 0]``
    (inhibitory), then the lowest ``8 - num_weight_bits + mixed`` bits dropped (floor, on the
    magnitude for inhibitory): mixed-sign weights lose their lowest bit, so odd weights shrink.
    Output ``a = sum(W s) << weight_exp`` (arithmetic right shift, i.e. floor, when negative).
Conv synapses (lava/proc/conv/models.py)
    weights used as given (no clip, no truncation), ``weight_exp`` ignored, and the sum wrapped
    modulo ``2**24`` into the signed 24-bit range (``utils.signed_clamp``). Lava computes the
    convolution in float64 (``conv_scipy``) and casts the sum to int32 before the wrap: exact while
    the sum stays within int32; beyond it numpy's cast is undefined (the simulator refuses such
    convolutions).

Float <-> integer conventions (one function each, tested):
    decay factor <-> ``du`` (with the ``+1`` offset) and ``dv``;  ``vth`` and bias scaling by
    ``2**6`` relative to the synaptic input;  bias mantissa/exponent split; weight mantissa and
    power-of-two exponent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# --- register constants (names as in lava/proc/lif/models.py) ---------------------------------
UV_BITS = 24                     # u and v are 24-bit
UV_MAX = 2 ** (UV_BITS - 1)      # 2**23: u wraps above it, v saturates at +-(2**23 - 1)
DECAY_SHIFT = 12                 # decays are 12-bit fractions of 4096
DECAY_UNITY = 2 ** DECAY_SHIFT   # 4096
DS_OFFSET = 1                    # added to du (current decay) only
DM_OFFSET = 0                    # added to dv
ACT_SHIFT = 6                    # synaptic input a is MSB-aligned by << 6
VTH_SHIFT = 6                    # threshold mantissa is MSB-aligned by << 6
CONV_BITS = 24                   # conv output wraps into signed 24 bits
WEIGHT_BITS = 8                  # weight magnitude bits (plus sign for mixed-sign matrices)


@dataclass(frozen=True)
class IntFormat:
    """A signed or unsigned integer register of ``bits`` bits; ``special`` lists values outside
    that range that Lava's models accept and compute with (netx's default neuron, below)."""

    name: str
    bits: int
    signed: bool
    special: tuple = ()

    @property
    def min(self) -> int:
        return -(2 ** (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2 ** self.bits - 1

    def check(self, values, where: str) -> np.ndarray:
        """Return ``values`` as int64 after checking they are integers in range.

        Raises ``ValueError`` naming ``where``, the field, the first bad value and the range.
        """
        arr = np.asarray(values)
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                bad = arr.flat[int(np.argmax(~np.isfinite(arr) | (arr != np.round(arr))))]
                raise ValueError(f"{where}: {self.name} must be integers, got {bad.item()!r}")
        elif arr.dtype.kind not in "iub":
            raise ValueError(f"{where}: {self.name} must be integers, got dtype {arr.dtype}")
        # the range is checked in the values' own dtype, BEFORE the cast: a uint64 beyond int64 (or a
        # float beyond it) would otherwise wrap into range through astype(int64)
        out = (arr < self.min) | (arr > self.max)
        if self.special:
            out &= ~np.isin(arr, self.special)
        if np.any(out):
            bad = arr.flat[int(np.argmax(out))].item()
            extra = f" (or {', '.join(map(str, self.special))})" if self.special else ""
            shown = bad if isinstance(bad, int) else f"{bad:g}"
            raise ValueError(f"{where}: {self.name} = {shown} outside its {self.bits}-bit "
                             f"{'signed' if self.signed else 'unsigned'} range [{self.min}, {self.max}]{extra}")
        return arr.astype(np.int64)

    def saturate(self, values) -> tuple[np.ndarray, int]:
        """Clip to the range; returns the clipped int64 values and how many were clipped."""
        arr = np.asarray(values)
        clipped = np.clip(arr, self.min, self.max)
        return clipped.astype(np.int64), int(np.count_nonzero(clipped != arr))


# netx's default neuron for a dense layer without a ``neuron`` group (lava-dl 0.6.0,
# lava/lib/dl/netx/hdf5.py 349-355: iDecay 0, vDecay 4096, vThMant ``1 << 18 - 1`` = 2**17) gives
# Lava's LIF ``du = iDecay - 1 = -1``, ``dv = 4096`` and ``vth = 2**17``, values outside the 12- and
# 17-bit registers that Lava's fixed_pt LIF computes with as written (probed): ``du = -1`` makes
# the current factor (4096 - (du + 1)) / 4096 = 1 (a current that never decays), ``dv = 4096``
# the voltage factor 0 (v = u + bias each step), and ``vth = 2**17`` a threshold 2**23 that the
# saturated v (at most 2**23 - 1) never exceeds (a neuron that never spikes: a readout of u and v).
NETX_DEFAULT_DU, NETX_DEFAULT_DV, NETX_DEFAULT_VTH = -1, DECAY_UNITY, 2 ** 17
DU = IntFormat("du", 12, False, special=(NETX_DEFAULT_DU,))
DV = IntFormat("dv", 12, False, special=(NETX_DEFAULT_DV,))
VTH = IntFormat("vth", 17, False, special=(NETX_DEFAULT_VTH,))
BIAS_MANT = IntFormat("bias_mant", 13, True)
BIAS_EXP = IntFormat("bias_exp", 3, False)
WEIGHT = IntFormat("weight", WEIGHT_BITS + 1, True)        # [-256, 255] before sign-mode rules
WEIGHT_EXP = IntFormat("weight_exp", 4, True)               # Lava's -8..7 (3 bits + sign)
NUM_WEIGHT_BITS = IntFormat("num_weight_bits", 4, False)    # 1..8 used
# Synaptic delay in steps beyond the one every synapse has: Loihi 2 keeps 6 bits (lava-nc 0.10
# lava/proc/dense/models.py PyDelayDenseModelBitAcc: "a spike can be delayed by 0 to 63 time
# steps", and refuses delays > 63); netx clamps its files' delays to 62 (lava-dl 0.6
# lava/lib/dl/netx/hdf5.py 425-430, max_delay=62 in netx/blocks/process.py).
DELAY = IntFormat("delay", 6, False)

# Sigma-delta (SDNN) neurons, lava-nc 0.10 lava/proc/sdn/models.py (``PySigmaDeltaModelFixed``
# 260-284, ``PyDeltaModelFixed`` 205-231, ``PySigmaModelFixed`` 169-176): ``sigma``, ``act``,
# ``residue`` are numpy int32 arrays (their ``precision=24`` annotation is never enforced), so every
# sum wraps at 32 bits (``SD_STATE_BITS``). The threshold and the bias are scaled by
# ``1 << (spike_exp + state_exp)`` when the process is built (lava/proc/sdn/process.py 99, 179-180)
# and the graded output is ``s >> state_exp``. lava-dl netx builds them with ``spike_exp = 6``
# (``Network(spike_exp=6)``, hdf5.py 72) and ``state_exp = 6`` (hdf5.py 176, 187), and sends their
# payloads with ``num_message_bits = 16`` unless the file says ``messageBits`` (hdf5.py 168-169).
SD_STATE_BITS = 32
SD_VTH = IntFormat("vth", 17, False)          # the delta threshold mantissa (netx's vThMant)
SD_BIAS = IntFormat("bias", 16, True)         # LavaPyType(np.int32, precision=16), models.py 273
SD_SPIKE_EXP = IntFormat("spike_exp", 3, False)   # precision=3, models.py 275
SD_STATE_EXP = IntFormat("state_exp", 3, False)   # precision=3, models.py 276
NETX_SD_SPIKE_EXP, NETX_SD_STATE_EXP, NETX_SD_MESSAGE_BITS = 6, 6, 16


# --- decays ----------------------------------------------------------------------------------
# Every conversion takes a scalar or an array and returns an int64 (or float64) array of the same
# shape; rounding is numpy's (half to even) everywhere, so training-time fake quantization and
# export round identically.

def decay_to_du(decay) -> np.ndarray:
    """Current decay factor (kept per step, in [0, 1]) -> Lava ``du``.

    Lava multiplies ``u`` by ``(4096 - (du + 1)) / 4096``; so ``du = round((1 - decay) * 4096) - 1``,
    clipped to [0, 4095]. ``decay = 0`` (no synaptic memory, STBP's LIF) gives ``du = 4095``.
    The largest representable decay is ``4095/4096`` (``du = 0``).

    >>> [int(decay_to_du(d)) for d in (0.0, 0.5, 1.0)]
    [4095, 2047, 0]
    """
    d = _check_decay(decay, "decay_syn")
    return np.clip(np.round((1.0 - d) * DECAY_UNITY) - DS_OFFSET, DU.min, DU.max).astype(np.int64)


def du_to_decay(du) -> np.ndarray:
    """Lava ``du`` -> current decay factor ``1 - (du + 1)/4096``."""
    return 1.0 - (np.asarray(du, dtype=np.float64) + DS_OFFSET) / DECAY_UNITY


def decay_to_dv(decay) -> np.ndarray:
    """Membrane decay factor (in [0, 1]) -> Lava ``dv = round((1 - decay) * 4096)``, clipped to
    [0, 4095] (a full decay, 4096, is not representable: ``decay = 0`` keeps 1/4096).

    >>> [int(decay_to_dv(d)) for d in (0.2, 1.0)]
    [3277, 0]
    """
    d = _check_decay(decay, "decay_mem")
    return np.clip(np.round((1.0 - d) * DECAY_UNITY) - DM_OFFSET, DV.min, DV.max).astype(np.int64)


def dv_to_decay(dv) -> np.ndarray:
    """Lava ``dv`` -> membrane decay factor ``1 - dv/4096``."""
    return 1.0 - (np.asarray(dv, dtype=np.float64) + DM_OFFSET) / DECAY_UNITY


def _check_finite(values, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has a non-finite value ({a.flat[int(np.argmax(~np.isfinite(a)))]!r})")
    return a


def _check_decay(decay, name: str) -> np.ndarray:
    d = np.asarray(decay, dtype=np.float64)
    if not np.all((d >= 0.0) & (d <= 1.0)):
        bad = d.flat[int(np.argmax(~((d >= 0.0) & (d <= 1.0))))]
        raise ValueError(f"{name} must be a decay factor in [0, 1], got {bad!r}")
    return d


# --- thresholds, biases, weights --------------------------------------------------------------

def threshold_to_vth(v_threshold, scale: float) -> tuple[np.ndarray, int]:
    """Float threshold -> ``vth`` mantissa for a layer whose integer synaptic input is ``scale``
    times the float one; returns the mantissas and how many were saturated.

    Lava compares ``v > vth << 6`` while ``v`` accumulates ``a << 6``, so ``vth = round(scale * V_th)``.
    """
    _check_finite(v_threshold, "v_threshold")
    return VTH.saturate(np.round(np.asarray(v_threshold, dtype=np.float64) * scale))


def split_bias(value, mant: IntFormat = BIAS_MANT, exp: IntFormat = BIAS_EXP) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer-valued bias (in units of ``v``) -> ``(bias_mant, bias_exp, n_saturated)``.

    Per value, the smallest exponent whose rounded mantissa fits; ``bias_mant << bias_exp`` is then
    the nearest representable value. Values beyond ``4095 << 7`` saturate (and are counted).

    >>> m, e, n = split_bias(np.array([100.0, 5000.0, -1e6]))
    >>> m.tolist(), e.tolist(), n
    ([100, 2500, -4096], [0, 1, 7], 1)
    """
    v = _check_finite(value, "bias")
    m_out = np.zeros(v.shape, dtype=np.int64)
    e_out = np.full(v.shape, exp.max, dtype=np.int64)
    done = np.zeros(v.shape, dtype=bool)
    for e in range(exp.min, exp.max + 1):
        m = np.round(v / 2.0 ** e)
        fits = ~done & (m >= mant.min) & (m <= mant.max)
        m_out[fits], e_out[fits] = m[fits], e
        done |= fits
    m_out[~done] = np.where(v[~done] > 0, mant.max, mant.min)
    return m_out, e_out, int(np.count_nonzero(~done))


def sign_mode_of(weights: np.ndarray) -> str:
    """``'excitatory'`` (all >= 0), ``'inhibitory'`` (all <= 0, some < 0) or ``'mixed'``, as
    lava.utils.weightutils.determine_sign_mode."""
    w = np.asarray(weights)
    if w.size == 0 or w.min() >= 0:
        return "excitatory"
    if w.max() <= 0:
        return "inhibitory"
    return "mixed"


def dense_effective_weights(weights: np.ndarray, num_weight_bits: int = 8,
                            sign_mode: str | None = None) -> np.ndarray:
    """The weights Lava's bit-accurate Dense actually uses: clip for the sign mode, then drop the
    low ``8 - num_weight_bits + mixed`` bits (floor; on the magnitude for inhibitory).

    >>> dense_effective_weights(np.array([1, 3, -1])).tolist()
    [0, 2, -2]
    """
    mode = sign_mode or sign_mode_of(weights)
    w = np.asarray(weights).astype(np.int64)
    mixed = mode == "mixed"
    if mode == "inhibitory":
        w = -w
    w = np.clip(w, -(2 ** WEIGHT_BITS) if mixed else 0, 2 ** WEIGHT_BITS - 1)
    drop = WEIGHT_BITS - int(num_weight_bits) + int(mixed)
    w = (w >> drop) << drop
    return -w if mode == "inhibitory" else w


def weight_exponent(max_abs: float, mant_max: int = 2 ** WEIGHT_BITS - 2, exp: IntFormat = WEIGHT_EXP) -> int:
    """Smallest power-of-two exponent ``e`` with ``max_abs / 2**e <= mant_max`` (within Lava's
    weight_exp range), so that mantissas use as many of their bits as possible.

    ``mant_max`` defaults to 254, the largest even mantissa (mixed-sign weights must be even).

    >>> weight_exponent(1.0), weight_exponent(300.0), weight_exponent(0.0)
    (-7, 1, 0)
    """
    if max_abs <= 0:
        return 0
    e = math.ceil(math.log2(max_abs / mant_max))
    return int(min(max(e, exp.min), exp.max))


def quantize_weights(w: np.ndarray, weight_exp: int, num_weight_bits: int = 8,
                     rounding: str = "nearest") -> tuple[np.ndarray, dict]:
    """Float weights (in units of the integer synaptic input) -> integer mantissas for ``weight_exp``.

    ``w / 2**weight_exp`` is rounded (``'nearest'`` or ``'floor'``) onto the grid Lava keeps for the
    matrix's sign mode (even values for mixed signs when ``num_weight_bits = 8``) and saturated to
    the 8-bit range. Returns the mantissas and a report: ``clipped`` (count), ``max_abs_error``
    and ``rel_error`` (relative Frobenius error of the represented weights).
    """
    w = np.asarray(w, dtype=np.float64)
    mode = sign_mode_of(w)
    step = 2 ** (WEIGHT_BITS - int(num_weight_bits) + int(mode == "mixed"))
    scaled = w / 2.0 ** weight_exp / step
    q = np.floor(scaled) if rounding == "floor" else np.round(scaled)
    if rounding not in ("nearest", "floor"):
        raise ValueError(f"rounding must be 'nearest' or 'floor', got {rounding!r}")
    hi = (2 ** WEIGHT_BITS - 1) // step
    lo = -(2 ** WEIGHT_BITS) // step if mode == "mixed" else (-hi if mode == "inhibitory" else 0)
    clipped = int(np.count_nonzero((q < lo) | (q > hi)))
    m = (np.clip(q, lo, hi) * step).astype(np.int64)
    rep = m * 2.0 ** weight_exp
    return m, {"clipped": clipped, "max_abs_error": float(np.max(np.abs(rep - w))) if w.size else 0.0,
               "rel_error": relative_error(rep, w)}


def relative_error(approx, exact) -> float:
    """``||approx - exact|| / ||exact||`` (absolute when ``exact`` is all zero). Plain sums, no BLAS:
    this runs inside training steps, where waking numpy's BLAS threads would compete with torch's."""
    a, b = np.asarray(approx, dtype=np.float64), np.asarray(exact, dtype=np.float64)
    diff = float(np.sqrt(np.sum((a - b) ** 2)))
    norm = float(np.sqrt(np.sum(b * b)))
    return diff / norm if norm > 0 else diff
