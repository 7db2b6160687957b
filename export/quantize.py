"""Float spiking network -> integer network in Loihi's formats: post-training and quantization-aware.

Per layer (a synapse and its neurons), one scale ``lam`` maps float synaptic input to the integer
one: ``a = lam * x``. Inputs between layers are 0/1 spikes, so each layer has its own scale.
Given the float weights ``W``, threshold ``V_th``, bias ``b`` and decays:

    weights    W * lam = m * 2**e          m: 8-bit mantissas (even for mixed signs), e: weight_exp
    threshold  vth  = round(lam * V_th)     since Lava compares v > vth << 6 and v accumulates a << 6
    bias       bias = round(64 * lam * b) = bias_mant << bias_exp
    decays     du = decay_to_du(decay_syn) (STBP LIF: decay_syn = 0 -> 4095), dv = decay_to_dv(decay_mem)

``lam = 254 * 2**e / max|W|``: the largest weight gets the largest even mantissa, and the exponent
``e >= 0`` is the smallest that gives the threshold at least ``target_vth`` steps of resolution.
If even ``e = 0`` would overflow the 17-bit threshold, ``lam`` is lowered to fit it (weights then
use fewer bits). Pooling is quantized as the convolution it is (``train.layers.Pool2d.equivalent_weight``).

``quantize_block`` is the single place where values are rounded: post-training export
(``quantize_network``) and quantization-aware training (``attach_fake_quant``, which feeds the
forward pass with ``integer / scale`` values and passes gradients straight through) both call it,
so a QAT-trained model exports with no further rounding.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from sim import formats as F
from sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons
from train.layers import Conv2d as TorchConv2d
from train.layers import Linear as TorchLinear
from train.layers import Pool2d
from train.network import SpikingNetwork
from train.neurons import LIF


@dataclass(frozen=True)
class QuantSpec:
    """Quantization options.

    num_weight_bits : 1..8, weight mantissa precision (Lava's ``num_weight_bits``)
    rounding : 'nearest' or 'floor' for weights
    target_vth : smallest threshold mantissa wanted (resolution of threshold and bias)
    """

    num_weight_bits: int = 8
    rounding: str = "nearest"
    target_vth: int = 1024

    def __post_init__(self):
        if not 1 <= self.num_weight_bits <= 8:
            raise ValueError(f"num_weight_bits must be in [1, 8], got {self.num_weight_bits}")
        if self.rounding not in ("nearest", "floor"):
            raise ValueError(f"rounding must be 'nearest' or 'floor', got {self.rounding!r}")
        if not 1 <= self.target_vth <= F.VTH.max:
            raise ValueError(f"target_vth must be in [1, {F.VTH.max}], got {self.target_vth}")


def layer_scale(w_max: float, vth_max: float, spec: QuantSpec) -> tuple[float, int]:
    """``(lam, weight_exp)`` for a layer with largest |weight| ``w_max`` and threshold ``vth_max``."""
    mant_max = 2 ** F.WEIGHT_BITS - 2  # 254, the largest even mantissa
    lam0 = mant_max / w_max if w_max > 0 else 1.0
    if vth_max > 0 and lam0 * vth_max > F.VTH.max:
        return F.VTH.max / vth_max, 0
    e = 0
    if vth_max > 0:
        e = int(min(max(math.ceil(math.log2(spec.target_vth / (lam0 * vth_max))), 0), F.WEIGHT_EXP.max))
    return lam0 * 2 ** e, e


@dataclass
class BlockQuant:
    """Integer values of one layer and the float values they stand for."""

    weight: np.ndarray       # integer mantissas (torch layout)
    weight_exp: int
    neurons: Neurons
    scale: float
    fake_weight: np.ndarray  # m * 2**e / lam
    fake: dict               # float decay_syn, decay_mem, v_threshold, bias the integers represent
    report: dict


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float64)


def neuron_floats(neuron) -> dict:
    """Float neuron parameters as numpy arrays (``decay_syn = 0`` for the STBP LIF)."""
    p = neuron.params()
    if isinstance(neuron, LIF):
        return {"decay_syn": np.zeros(()), "decay_mem": _np(p.decay), "v_threshold": _np(p.v_threshold),
                "bias": _np(p.bias)}
    return {"decay_syn": _np(p.decay_syn), "decay_mem": _np(p.decay_mem), "v_threshold": _np(p.v_threshold),
            "bias": _np(p.bias)}


def quantize_block(w: np.ndarray, nf: dict, spec: QuantSpec) -> BlockQuant:
    """Quantize one layer: float weights ``w`` (torch layout) and neuron floats ``nf``."""
    vth_f = nf["v_threshold"]
    if np.any(vth_f < 0):
        raise ValueError(f"negative threshold {float(vth_f.min())}: Loihi thresholds are unsigned")
    lam, e = layer_scale(float(np.abs(w).max()) if w.size else 0.0, float(vth_f.max()), spec)
    m, wrep = F.quantize_weights(w * lam, e, spec.num_weight_bits, spec.rounding)
    vth, vth_clip = F.threshold_to_vth(vth_f, lam)
    bias_mant, bias_exp, bias_clip = F.split_bias(np.round(nf["bias"] * lam * 2 ** F.ACT_SHIFT))
    du, dv = F.decay_to_du(nf["decay_syn"]), F.decay_to_dv(nf["decay_mem"])
    fake_w = m * 2.0 ** e / lam
    fake = {"decay_syn": F.du_to_decay(du), "decay_mem": F.dv_to_decay(dv), "v_threshold": vth / lam,
            "bias": (bias_mant * 2.0 ** bias_exp) / (lam * 2 ** F.ACT_SHIFT)}
    report = {"scale": lam, "weight_exp": e,
              "weights": {"clipped": wrep["clipped"], "rel_error": F.relative_error(fake_w, w), "max_abs": float(np.abs(w).max())},
              "v_threshold": {"clipped": vth_clip, "rel_error": F.relative_error(fake["v_threshold"], vth_f)},
              "bias": {"clipped": bias_clip, "rel_error": F.relative_error(fake["bias"], nf["bias"])},
              "decay_syn": {"rel_error": F.relative_error(fake["decay_syn"], nf["decay_syn"])},
              "decay_mem": {"rel_error": F.relative_error(fake["decay_mem"], nf["decay_mem"])}}

    def flat(a):
        return np.asarray(a).reshape(-1)

    neurons = Neurons(du=flat(du), dv=flat(dv), vth=flat(vth), bias_mant=flat(bias_mant), bias_exp=flat(bias_exp))
    return BlockQuant(m, e, neurons, lam, fake_w, fake, report)


def block_weight(syn, in_shape: tuple) -> np.ndarray:
    """A synaptic layer's float weight in torch layout (pooling as its equivalent convolution)."""
    if isinstance(syn, Pool2d):
        return _np(syn.equivalent_weight(in_shape[0]))
    return _np(syn.weight)


def quantize_network(model: SpikingNetwork, spec: QuantSpec = QuantSpec(), dt: float = 1.0,
                     meta: dict | None = None) -> tuple[IntNetwork, list]:
    """Post-training quantization of a trained float network; returns the record and a per-layer report."""
    layers, reports = [], []
    for i, (syn, neuron, in_shape, _) in enumerate(model.blocks()):
        q = quantize_block(block_weight(syn, in_shape), neuron_floats(neuron), spec)
        if isinstance(syn, TorchLinear):
            rec = Dense(q.weight, weight_exp=q.weight_exp, num_weight_bits=spec.num_weight_bits)
            kind = "dense"
        elif isinstance(syn, TorchConv2d):
            rec = Conv2d(q.weight, stride=tuple(syn.stride), padding=tuple(syn.padding), weight_exp=q.weight_exp)
            kind = "conv"
        else:
            k = syn.kernel_size
            rec = Conv2d(q.weight, stride=(k, k), padding=(0, 0), weight_exp=q.weight_exp)
            kind = f"{syn.mode}pool"
        layers.append(Layer(rec, q.neurons, name=f"{kind}{i}"))
        reports.append({"layer": i, "kind": kind, **q.report})
    info = {"source": "spikeport", "network": model.spec, "quantization": asdict(spec), **(meta or {})}
    return IntNetwork(model.input_shape, tuple(layers), dt=dt, meta=info), reports


# --- quantization-aware training ---------------------------------------------------------------

def _ste(x: torch.Tensor, q: np.ndarray) -> torch.Tensor:
    """``q`` in the forward pass, identity gradient to ``x`` (straight-through)."""
    qt = torch.as_tensor(q, dtype=x.dtype, device=x.device).reshape(x.shape)
    return x + (qt - x).detach()


class FakeQuantizer:
    """The ``fake_quant`` hook of ``train.network.SpikingNetwork`` (see ``attach_fake_quant``)."""

    def __init__(self, spec: QuantSpec, in_shapes: list):
        self.spec = spec
        self.in_shapes = in_shapes  # input shape of each block (pooling needs its channel count)

    def __call__(self, index: int, syn, neuron):
        w = syn.weight if not isinstance(syn, Pool2d) else None
        w_np = block_weight(syn, self.in_shapes[index]) if w is None else _np(w)
        q = quantize_block(w_np, neuron_floats(neuron), self.spec)
        p = neuron.params()
        if isinstance(neuron, LIF):
            fp = type(p)(_ste(p.decay, q.fake["decay_mem"]), _ste(p.v_threshold, q.fake["v_threshold"]),
                         _ste(p.bias, q.fake["bias"]))
        else:
            fp = type(p)(_ste(p.decay_syn, q.fake["decay_syn"]), _ste(p.decay_mem, q.fake["decay_mem"]),
                         _ste(p.v_threshold, q.fake["v_threshold"]), _ste(p.bias, q.fake["bias"]))
        return (None if w is None else _ste(w, q.fake_weight)), fp


def attach_fake_quant(model: SpikingNetwork, spec: QuantSpec = QuantSpec()) -> SpikingNetwork:
    """Quantization-aware training: the forward pass uses the values export will produce."""
    model.fake_quant = FakeQuantizer(spec, [b[2] for b in model.blocks()])
    return model


def detach_fake_quant(model: SpikingNetwork) -> SpikingNetwork:
    model.fake_quant = None
    return model
