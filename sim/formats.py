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
    convolution in float32, exact while every partial sum stays below ``2**24``.

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
    """A signed or unsigned integer register of ``bits`` bits."""

    name: str
    bits: int
    signed: bool

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
                raise ValueError(f"{where}: {self.name} must be integers, got {bad!r}")
        elif arr.dtype.kind not in "iub":
            raise ValueError(f"{where}: {self.name} must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        out = (arr < self.min) | (arr > self.max)
        if np.any(out):
            bad = int(arr.flat[int(np.argmax(out))])
            raise ValueError(f"{where}: {self.name} = {bad} outside its {self.bits}-bit "
                             f"{'signed' if self.signed else 'unsigned'} range [{self.min}, {self.max}]")
        return arr

    def saturate(self, values) -> tuple[np.ndarray, int]:
        """Clip to the range; returns the clipped int64 values and how many were clipped."""
        arr = np.asarray(values)
        clipped = np.clip(arr, self.min, self.max)
        return clipped.astype(np.int64), int(np.count_nonzero(clipped != arr))


DU = IntFormat("du", 12, False)
DV = IntFormat("dv", 12, False)
VTH = IntFormat("vth", 17, False)
BIAS_MANT = IntFormat("bias_mant", 13, True)
BIAS_EXP = IntFormat("bias_exp", 3, False)
WEIGHT = IntFormat("weight", WEIGHT_BITS + 1, True)        # [-256, 255] before sign-mode rules
WEIGHT_EXP = IntFormat("weight_exp", 4, True)               # Lava's -8..7 (3 bits + sign)
NUM_WEIGHT_BITS = IntFormat("num_weight_bits", 4, False)    # 1..8 used


# --- decays ----------------------------------------------------------------------------------

def decay_to_du(decay: float) -> int:
    """Current decay factor (kept per step, in [0, 1]) -> Lava ``du``.

    Lava multiplies ``u`` by ``(4096 - (du + 1)) / 4096``; so ``du = round((1 - decay) * 4096) - 1``,
    clipped to [0, 4095]. ``decay = 0`` (no synaptic memory, STBP's LIF) gives ``du = 4095``.
    The largest representable decay is ``4095/4096`` (``du = 0``).

    >>> decay_to_du(0.0), decay_to_du(0.5), decay_to_du(1.0)
    (4095, 2047, 0)
    """
    _check_decay(decay, "decay_syn")
    return int(min(max(round((1.0 - decay) * DECAY_UNITY) - DS_OFFSET, DU.min), DU.max))


def du_to_decay(du: int) -> float:
    """Lava ``du`` -> current decay factor ``1 - (du + 1)/4096``."""
    return 1.0 - (int(du) + DS_OFFSET) / DECAY_UNITY


def decay_to_dv(decay: float) -> int:
    """Membrane decay factor (in [0, 1]) -> Lava ``dv = round((1 - decay) * 4096)``, clipped to
    [0, 4095] (a full decay, 4096, is not representable: ``decay = 0`` keeps 1/4096).

    >>> decay_to_dv(0.2), decay_to_dv(1.0)
    (3277, 0)
    """
    _check_decay(decay, "decay_mem")
    return int(min(max(round((1.0 - decay) * DECAY_UNITY) - DM_OFFSET, DV.min), DV.max))


def dv_to_decay(dv: int) -> float:
    """Lava ``dv`` -> membrane decay factor ``1 - dv/4096``."""
    return 1.0 - (int(dv) + DM_OFFSET) / DECAY_UNITY


def _check_decay(decay: float, name: str) -> None:
    if not (0.0 <= decay <= 1.0):
        raise ValueError(f"{name} must be a decay factor in [0, 1], got {decay!r}")


# --- thresholds, biases, weights --------------------------------------------------------------

def threshold_to_vth(v_threshold: float, scale: float) -> int:
    """Float threshold -> ``vth`` mantissa, for a layer whose synaptic input is ``scale`` times
    the float one (integer ``a`` = ``scale`` x float input).

    Lava compares ``v > vth << 6`` and ``v`` accumulates ``a << 6``, so ``vth = round(scale * V_th)``.
    """
    return int(round(v_threshold * scale))


def split_bias(value: float, mant: IntFormat = BIAS_MANT, exp: IntFormat = BIAS_EXP) -> tuple[int, int]:
    """Integer bias ``value`` (in units of ``v``) -> ``(bias_mant, bias_exp)`` with the smallest
    exponent such that the mantissa fits; ``bias_mant << bias_exp`` is the nearest representable
    value. Saturates at the largest representable magnitude.

    >>> split_bias(100), split_bias(5000), split_bias(-100000)
    ((100, 0), (2500, 1), (-4096, 7))
    """
    for e in range(exp.min, exp.max + 1):
        m = round(value / 2 ** e)
        if mant.min <= m <= mant.max:
            return int(m), e
    return (mant.max if value > 0 else mant.min), exp.max


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
    norm = float(np.linalg.norm(w))
    return m, {"clipped": clipped, "max_abs_error": float(np.max(np.abs(rep - w))) if w.size else 0.0,
               "rel_error": float(np.linalg.norm(rep - w) / norm) if norm > 0 else 0.0}
