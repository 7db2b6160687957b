"""The quantization options: one schema for post-training export, quantization-aware training and
the configuration's ``[quant]`` section (``train.config.QuantConfig`` extends it with the training
switches). Its rules are ``export/quantize.py``'s (module docstring there).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import formats as F


@dataclass(frozen=True)
class QuantSpec:
    """Quantization options (see the module docstring for the exact rules).

    num_weight_bits : 1..8, weight mantissa precision (Lava's ``num_weight_bits``)
    rounding : 'nearest' or 'floor' for weights
    target_vth : smallest threshold mantissa wanted (resolution of threshold and bias)
    decay_bits : 1..12, fractional bits of the decay factors (12: Lava's full ``du``/``dv``)
    vth_bits : 1..17, bits the threshold mantissa may use (17: Lava's full ``vth``)
    shared_exponent : one scale and weight exponent for all layers instead of one per layer
    bias_exp : None (the smallest exponent per neuron) or a fixed ``bias_exp`` for every neuron
               (lava-dl netx always uses 6)
    """

    num_weight_bits: int = 8
    rounding: str = "nearest"
    target_vth: int = 1024
    decay_bits: int = F.DECAY_SHIFT
    vth_bits: int = F.VTH.bits
    shared_exponent: bool = False
    bias_exp: int | None = None

    def __post_init__(self):
        if not 1 <= self.num_weight_bits <= 8:
            raise ValueError(f"num_weight_bits must be in [1, 8], got {self.num_weight_bits}")
        if self.rounding not in ("nearest", "floor"):
            raise ValueError(f"rounding must be 'nearest' or 'floor', got {self.rounding!r}")
        if not 1 <= self.target_vth <= F.VTH.max:
            raise ValueError(f"target_vth must be in [1, {F.VTH.max}], got {self.target_vth}")
        if isinstance(self.decay_bits, bool) or not 1 <= self.decay_bits <= F.DECAY_SHIFT:
            raise ValueError(f"decay_bits must be in [1, {F.DECAY_SHIFT}], got {self.decay_bits}")
        if isinstance(self.vth_bits, bool) or not 1 <= self.vth_bits <= F.VTH.bits:
            raise ValueError(f"vth_bits must be in [1, {F.VTH.bits}], got {self.vth_bits}")
        if not isinstance(self.shared_exponent, bool):
            raise ValueError(f"shared_exponent must be True or False, got {self.shared_exponent!r}")
        if self.bias_exp is not None and not F.BIAS_EXP.min <= self.bias_exp <= F.BIAS_EXP.max:
            raise ValueError(f"bias_exp must be None or in [{F.BIAS_EXP.min}, {F.BIAS_EXP.max}], got {self.bias_exp}")
