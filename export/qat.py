"""Quantization of torch models: post-training (``quantize_network``) and quantization-aware
training (``attach_fake_quant``). Both round through ``export.quantize.quantize_block``, the one
place where values are rounded (see that module's docstring for the rules).

Skip connections (``train.network``: ``N+j``, ``<n>C<k>+j``) make a neuron group with several
incoming edges (the main synapse, the skips, a recurrent loop), each its own ``Dense`` process on
Loihi/Lava, or ``Conv`` process for a skip into a convolution layer (a 1x1 convolution).
Their synaptic inputs add in ONE current register, so they must share the group's scale ``lam``
(one integer unit per group): ``lam`` is ``layer_scale`` of the largest |weight| over all of the
group's edges and its threshold (``quantize_group``). The weight exponent, in contrast, belongs
to each Dense process: Lava's bit-accurate Dense shifts its own weighted sum by its own
``weight_exp`` before sending it (``lava/proc/dense/models.py`` lines 75-106, parameter in
``lava/proc/dense/process.py`` line 26), and ``sim.graph`` keeps it per node. So every edge of a
merged group takes the smallest exponent ``e_k`` in ``[0, e]`` at which ``lam * max|W_k|`` fits
the largest even mantissa (``edge_exponent``): the edge with the largest weights gets the group's
``e``, an edge with weights ``2**n`` times smaller keeps up to ``n`` more mantissa bits (a
convolution's exponent is folded into its weights, ``sim.network.Conv2d``: exact). The main
synapse and a recurrent loop share one exponent (``quantize_block``). With ``shared_exponent``
every edge uses the network's one ``(lam, e)``, as that option promises. Groups without skips are
quantized exactly as before (``quantize_block`` alone).
"""
from __future__ import annotations

import numpy as np
import torch

from spikeport.sim.graph import IntGraph
from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer
from spikeport.train.layers import Conv2d as TorchConv2d
from spikeport.train.layers import ConvSkip as TorchConvSkip
from spikeport.train.layers import Linear as TorchLinear
from spikeport.train.layers import Pool2d
from spikeport.train.network import SpikingNetwork
from spikeport.train.neurons import LIF

from spikeport.sim import formats as F

from .quantize import QuantSpec, layer_scale, network_scale, quantize_block, quantize_weight, spec_dict


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


def block_weight(syn, in_shape: tuple) -> np.ndarray:
    """A synaptic layer's float weight in torch layout (pooling as its equivalent convolution)."""
    if isinstance(syn, Pool2d):
        return _np(syn.equivalent_weight(in_shape[0]))
    return _np(syn.weight)


def rec_weight(neuron) -> np.ndarray | None:
    """A recurrent neuron layer's own weights ``(N, N)`` as numpy, else None."""
    return _np(neuron.w_rec) if getattr(neuron, "recurrent", False) else None


def skip_weights(model) -> list:
    """Per block of ``model``, the float weights of the skips feeding it (``train.network``)."""
    skips = getattr(model, "skips", ())
    return [[_np(s.weight) for s in skips if s.target == i] for i in range(len(model.blocks()))]


def skip_name(source: int, target: int) -> str:
    """The ``IntGraph`` node of the skip from spec layer ``source`` (0: the input) into block ``target``."""
    return f"layer{target}_skip_" + ("input" if source == 0 else f"layer{source - 1}")


def edge_exponent(lam: float, e: int, w_max: float) -> int:
    """The smallest exponent in ``[0, e]`` at which weights up to ``w_max`` in the unit ``lam`` fit
    the largest even 8-bit mantissa (254): an edge's own ``weight_exp`` (module docstring)."""
    mant_max = 2 ** F.WEIGHT_BITS - 2
    for k in range(e + 1):
        if lam * w_max <= mant_max * 2.0 ** k * (1 + 1e-12):
            return k
    return e


def quantize_group(w: np.ndarray, nf: dict, spec: QuantSpec, scale: tuple | None = None,
                   w_rec: np.ndarray | None = None, skips: list = ()):
    """``quantize_block`` for a group that also receives ``skips`` (float weights: 2-d dense, or
    4-d ``(C, C_j, 1, 1)`` convolution kernels): returns
    the block's ``BlockQuant`` and, per skip, ``(mantissas, weight_exp, fake weight, report)``,
    all in the group's one scale (module docstring). Without skips: ``quantize_block`` itself."""
    if not skips:
        return quantize_block(w, nf, spec, scale=scale, w_rec=w_rec), []

    def amax(a):
        return float(np.abs(a).max()) if a is not None and a.size else 0.0

    main = max(amax(w), amax(w_rec))
    if scale is None:
        lam, e = layer_scale(max([main] + [amax(a) for a in skips]), float(np.max(nf["v_threshold"])), spec)
        e_main, e_skips = edge_exponent(lam, e, main), [edge_exponent(lam, e, amax(a)) for a in skips]
    else:
        lam, e = float(scale[0]), int(scale[1])
        e_main, e_skips = e, [e] * len(skips)
    q = quantize_block(w, nf, spec, scale=(lam, e_main), w_rec=w_rec)
    out = []
    for a, ek in zip(skips, e_skips):
        m, rep = quantize_weight(a, lam, ek, spec)
        out.append((m, ek, m * 2.0 ** ek / lam, {**rep, "weight_exp": ek}))
    q.report["group_weight_exp"] = e
    return q, out


def quantize_network(model: SpikingNetwork, spec: QuantSpec = QuantSpec(), dt: float = 1.0,
                     meta: dict | None = None):
    """Post-training quantization of a trained float network; returns the record and a per-layer
    report. The record is an ``IntNetwork`` chain, or an ``IntGraph`` when layers are recurrent
    (the chain's graph plus, for layer ``i``, a ``Dense`` node ``layer{i}_rec`` from the group
    ``layer{i}`` onto itself, quantized with the layer's own scale) or have skips (a ``Dense``
    node ``skip_name(j, i)`` from group ``layer{j-1}`` (or ``input``) into ``layer{i}``, or a 1x1
    ``Conv2d`` of the skip's stride for a skip into a convolution layer, in the group's scale with
    its own exponent: ``quantize_group``; its report under ``skips``)."""
    layers, reports, recs, skip_nodes = [], [], {}, {}
    blocks = model.blocks()
    ws = [block_weight(syn, in_shape) for syn, _, in_shape, _ in blocks]
    nfs = [neuron_floats(neuron) for _, neuron, _, _ in blocks]
    sws = skip_weights(model)
    mods = [model.skips_into(i) if sws[i] else [] for i in range(len(blocks))]
    scale = network_scale(ws + [r for r in (rec_weight(b[1]) for b in blocks) if r is not None]
                          + [a for per in sws for a in per], nfs, spec) if spec.shared_exponent else None
    for i, ((syn, neuron, in_shape, _), w, nf) in enumerate(zip(blocks, ws, nfs)):
        q, sq = quantize_group(w, nf, spec, scale=scale, w_rec=rec_weight(neuron), skips=sws[i])
        for mod, (m, ek, _, rep) in zip(mods[i], sq):
            src, name = mod.source, skip_name(mod.source, i)
            op = (Conv2d(m, stride=tuple(mod.stride), padding=(0, 0), weight_exp=ek) if isinstance(mod, TorchConvSkip)
                  else Dense(m, weight_exp=ek, num_weight_bits=spec.num_weight_bits))
            skip_nodes[name] = ("input" if src == 0 else f"layer{src - 1}", i, op)
            q.report.setdefault("skips", {})[name] = rep
        if q.rec_weight is not None:
            recs[i] = Dense(q.rec_weight, weight_exp=q.weight_exp, num_weight_bits=spec.num_weight_bits)
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
    info = {"source": "spikeport", "network": model.spec, "quantization": spec_dict(spec), **(meta or {})}
    net = IntNetwork(model.input_shape, tuple(layers), dt=dt, meta=info)
    if not recs and not skip_nodes:
        return net, reports
    graph = IntGraph.from_chain(net)
    nodes, edges = dict(graph.nodes), list(graph.edges)
    for i, dense in recs.items():
        nodes[f"layer{i}_rec"] = dense
        edges += [(f"layer{i}", f"layer{i}_rec"), (f"layer{i}_rec", f"layer{i}")]
    for name, (src, i, op) in skip_nodes.items():
        nodes[name] = op
        edges += [(src, name), (name, f"layer{i}")]
    return IntGraph(nodes, edges, dt, info), reports


# --- quantization-aware training ---------------------------------------------------------------

def _ste(x: torch.Tensor, q: np.ndarray) -> torch.Tensor:
    """``q`` in the forward pass, identity gradient to ``x`` (straight-through)."""
    qt = torch.as_tensor(q, dtype=x.dtype, device=x.device).reshape(x.shape)
    return x + (qt - x).detach()


class FakeQuantizer:
    """The ``fake_quant`` hook of ``train.network.SpikingNetwork`` (see ``attach_fake_quant``).

    ``blocks``: the network's ``(synapse, neuron)`` pairs, needed by ``shared_exponent`` (the scale
    depends on every layer's current values, recomputed at every call).

    Pooling has no weight parameter to replace: when its quantized taps differ from the float ones
    by a factor ``c`` (fewer weight bits, shared exponent), the neuron gets threshold and bias
    divided by ``c`` instead, which spikes exactly as input scaled by ``c`` would.
    """

    def __init__(self, spec: QuantSpec, in_shapes: list, blocks: list | None = None, skips: list | None = None):
        self.spec = spec
        self.in_shapes = in_shapes  # input shape of each block (pooling needs its channel count)
        self.blocks = blocks
        self.skips = skips  # per block, the skip modules feeding it (train.layers.Skip)

    def _shared_scale(self) -> tuple[float, int]:
        if self.blocks is None:
            raise ValueError("shared_exponent fake quantization needs the network's blocks "
                             "(use attach_fake_quant)")
        ws = [block_weight(syn, shape) if isinstance(syn, Pool2d) else _np(syn.weight)
              for (syn, _), shape in zip(self.blocks, self.in_shapes)]
        ws += [r for r in (rec_weight(n) for _, n in self.blocks) if r is not None]
        ws += [_np(s.weight) for per in (self.skips or []) for s in per]
        return network_scale(ws, [neuron_floats(n) for _, n in self.blocks], self.spec)

    def _quantize(self, index: int, syn, neuron, w_np):
        scale = self._shared_scale() if self.spec.shared_exponent else None
        skips = [_np(s.weight) for s in self.skips[index]] if self.skips else []
        return quantize_group(w_np, neuron_floats(neuron), self.spec, scale=scale, w_rec=rec_weight(neuron),
                              skips=skips)

    def skip_weights(self, index: int) -> list:
        """The fake-quantized weights of the skips into block ``index`` (straight-through), in the
        scale of that block (``quantize_group``)."""
        if self.blocks is None or self.skips is None:
            raise ValueError("fake quantization of skips needs the network's blocks and skips (use attach_fake_quant)")
        syn, neuron = self.blocks[index]
        _, sq = self._quantize(index, syn, neuron, _np(syn.weight))
        return [_ste(s.weight, fake) for s, (_, _, fake, _) in zip(self.skips[index], sq)]

    def __call__(self, index: int, syn, neuron):
        w = syn.weight if not isinstance(syn, Pool2d) else None
        w_np = block_weight(syn, self.in_shapes[index]) if w is None else _np(w)
        q, _ = self._quantize(index, syn, neuron, w_np)
        fake = q.fake
        if w is None:
            c = _pool_factor(w_np, q.fake_weight)
            if c != 1.0:
                fake = {**fake, "v_threshold": fake["v_threshold"] / c, "bias": fake["bias"] / c}
        p = neuron.params()
        if isinstance(neuron, LIF):
            fp = type(p)(_ste(p.decay, fake["decay_mem"]), _ste(p.v_threshold, fake["v_threshold"]),
                         _ste(p.bias, fake["bias"]))
        else:
            fp = type(p)(_ste(p.decay_syn, fake["decay_syn"]), _ste(p.decay_mem, fake["decay_mem"]),
                         _ste(p.v_threshold, fake["v_threshold"]), _ste(p.bias, fake["bias"]))
        fake_rec = None if q.rec_weight is None else _ste(neuron.w_rec, q.fake_rec_weight)
        return (None if w is None else _ste(w, q.fake_weight)), fp, fake_rec


def _pool_factor(w: np.ndarray, fake_w: np.ndarray) -> float:
    """The factor ``c`` with ``fake_w = c * w`` for a pooling kernel (one tap value on the channel
    diagonal); 1.0 when they agree to rounding error, so default quantization changes nothing."""
    nz = w != 0
    ratios = fake_w[nz] / w[nz]
    if ratios.size == 0 or np.all(np.abs(ratios - 1.0) <= 1e-9):
        return 1.0
    c = float(ratios.flat[0])
    if not np.allclose(ratios, c, rtol=1e-12, atol=0) or np.any(fake_w[~nz] != 0):
        raise ValueError("pooling kernel quantized to unequal taps; cannot fake-quantize it")
    if c == 0.0:
        raise ValueError("pooling taps quantize to 0 (the layer would receive no input); QAT cannot "
                         "model it: use more weight bits or per-layer exponents")
    return c


def attach_fake_quant(model: SpikingNetwork, spec: QuantSpec = QuantSpec()) -> SpikingNetwork:
    """Quantization-aware training: the forward pass uses the values export will produce."""
    blocks = model.blocks()
    skips = [model.skips_into(i) for i in range(len(blocks))] if getattr(model, "skips", None) else None
    model.fake_quant = FakeQuantizer(spec, [b[2] for b in blocks], [(b[0], b[1]) for b in blocks], skips)
    return model


def detach_fake_quant(model: SpikingNetwork) -> SpikingNetwork:
    model.fake_quant = None
    return model
