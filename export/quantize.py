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

Reduced-precision options (``QuantSpec``; their defaults give exactly the rules above)
    num_weight_bits   8..1: mantissas on the grid Lava keeps when it drops ``8 - num_weight_bits
                      (+1 for mixed signs)`` low bits (``formats.quantize_weights``). Dense records
                      carry ``num_weight_bits`` and Lava/the simulator drop those (already zero)
                      bits again; should the integer matrix's sign mode differ from the float one's
                      (e.g. every positive weight rounded to 0, leaving -256), the block applies
                      Lava's clip for it (``formats.dense_effective_weights``, counted as clipped),
                      so the integers are exactly the effective weights. Convolution and pooling
                      weights, which Lava uses as given, are put on the same coarser grid directly.
                      The scale rule is unchanged (largest |W| -> 254), so with few bits the largest
                      positive weights saturate at the grid's top (counted as clipped).
    rounding          'nearest' (half to even) or 'floor', for the weights only; thresholds, biases
                      and decays always round to nearest.
    decay_bits        12..1: the decay factors get ``decay_bits`` fractional bits, i.e. the decrement
                      Lava applies, ``du + 1`` and ``dv``, is a multiple of ``q = 2**(12 - decay_bits)``:
                      ``du = k q - 1`` with ``k = round((1 - decay_syn) 2**decay_bits)`` in
                      ``[1, 2**decay_bits]`` and ``dv = k q`` with ``k = round((1 - decay_mem) 2**decay_bits)``
                      in ``[0, 2**decay_bits - 1]``. The registers stay 12-bit (Lava's); decay 0
                      (STBP's LIF: ``du = 4095``) stays exact.
    vth_bits          17..1: thresholds fit ``vth_bits`` bits, ``vth <= vmax = 2**vth_bits - 1``. The
                      scale rule above runs with ``vmax`` for the register maximum and
                      ``min(target_vth, 2**(vth_bits - 1))`` for the target (so the chosen exponent
                      cannot push the threshold past ``vmax``); should ``round(lam V_th)`` still
                      exceed ``vmax``, ``lam`` is lowered to ``vmax / V_th``. A coarser threshold
                      means a coarser unit for everything, so weights may then use fewer bits.
    shared_exponent   False: every layer has its own ``(lam, e)`` (the rule above). True: ONE
                      ``(lam, e)`` for the whole network, ``layer_scale`` of the largest |W| over
                      all layers and the largest threshold over all layers (``network_scale``).
                      Layers with smaller weights then use fewer mantissa bits, layers with smaller
                      thresholds get fewer threshold steps. (Sharing only the exponent while keeping
                      a per-layer ``lam`` would change nothing but the threshold resolution: layers
                      are connected by 0/1 spikes, so their units are independent.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from spikeport.sim import formats as F
from spikeport.sim import graph as G
from spikeport.sim.network import Neurons
from spikeport.sim.quantspec import QuantSpec  # noqa: F401 - the one options schema, re-exported here


NETX = dict(target_vth=1, bias_exp=6)
"""QuantSpec options that lava-dl netx can hold: no weight exponent (netx stores the synaptic input
itself; ``target_vth=1`` keeps ``weight_exp = 0``) and biases in steps of ``1 << 6``."""


_NEW_OPTIONS = ("decay_bits", "vth_bits", "shared_exponent", "bias_exp")


def spec_dict(spec: QuantSpec) -> dict:
    """``spec`` as a dict for records: the reduced-precision options only when they differ from
    their defaults, so networks exported with default options carry exactly the metadata they did."""
    default = QuantSpec()
    return {f.name: getattr(spec, f.name) for f in fields(spec)
            if f.name not in _NEW_OPTIONS or getattr(spec, f.name) != getattr(default, f.name)}


def vth_format(spec: QuantSpec) -> F.IntFormat:
    """The threshold register as ``spec`` may use it (``vth_bits`` unsigned bits)."""
    return F.VTH if spec.vth_bits == F.VTH.bits else F.IntFormat("vth", spec.vth_bits, False)


def layer_scale(w_max: float, vth_max: float, spec: QuantSpec) -> tuple[float, int]:
    """``(lam, weight_exp)`` for a layer with largest |weight| ``w_max`` and threshold ``vth_max``."""
    mant_max = 2 ** F.WEIGHT_BITS - 2  # 254, the largest even mantissa
    full = spec.vth_bits == F.VTH.bits
    vmax = vth_format(spec).max
    target = spec.target_vth if full else min(spec.target_vth, 2 ** (spec.vth_bits - 1))
    lam0 = mant_max / w_max if w_max > 0 else 1.0
    if vth_max > 0 and lam0 * vth_max > vmax:
        return vmax / vth_max, 0
    e = 0
    if vth_max > 0:
        e = int(min(max(math.ceil(math.log2(target / (lam0 * vth_max))), 0), F.WEIGHT_EXP.max))
    lam = lam0 * 2 ** e
    if not full and vth_max > 0 and np.round(lam * vth_max) > vmax:
        lam = vmax / vth_max
    return lam, e


def network_scale(weights: list, neuron_floats_list: list, spec: QuantSpec) -> tuple[float, int]:
    """The one ``(lam, weight_exp)`` of ``shared_exponent``: ``layer_scale`` of the largest |weight|
    and the largest threshold over all layers."""
    w_max = max((float(np.abs(w).max()) for w in weights if np.asarray(w).size), default=0.0)
    vth_max = max((float(np.max(nf["v_threshold"])) for nf in neuron_floats_list), default=0.0)
    return layer_scale(w_max, vth_max, spec)


def decay_registers(decay_syn, decay_mem, bits: int = F.DECAY_SHIFT) -> tuple[np.ndarray, np.ndarray]:
    """Decay factors -> ``(du, dv)`` with ``bits`` fractional bits (module docstring, ``decay_bits``).

    ``bits = 12`` is exactly ``formats.decay_to_du`` / ``formats.decay_to_dv``.
    """
    du, dv = F.decay_to_du(decay_syn), F.decay_to_dv(decay_mem)  # also checks the range
    if bits == F.DECAY_SHIFT:
        return du, dv
    q, n = 2 ** (F.DECAY_SHIFT - bits), 2 ** bits
    ku = np.round((1.0 - np.asarray(decay_syn, dtype=np.float64)) * n)
    kv = np.round((1.0 - np.asarray(decay_mem, dtype=np.float64)) * n)
    # the decrement Lava applies, du + DS_OFFSET and dv + DM_OFFSET, is k * q with the register in range
    ku = np.clip(ku, -(-F.DS_OFFSET // q), (F.DU.max + F.DS_OFFSET) // q)
    kv = np.clip(kv, -(-F.DM_OFFSET // q), (F.DV.max + F.DM_OFFSET) // q)
    return (ku * q - F.DS_OFFSET).astype(np.int64), (kv * q - F.DM_OFFSET).astype(np.int64)


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
    rec_weight: np.ndarray | None = None       # recurrent mantissas (same scale and exponent)
    fake_rec_weight: np.ndarray | None = None


def quantize_weight(w: np.ndarray, lam: float, e: int, spec: QuantSpec) -> tuple[np.ndarray, dict]:
    """Float weights ``w`` (2-d: dense, else a convolution kernel) -> integer mantissas for the scale
    ``lam`` and exponent ``e``, and a report (clipped count, relative error, largest |w|)."""
    m, wrep = F.quantize_weights(w * lam, e, spec.num_weight_bits, spec.rounding)
    if m.ndim == 2:  # dense: the integers must be Lava's effective weights for their own sign mode
        eff = F.dense_effective_weights(m, spec.num_weight_bits)
        changed = int(np.count_nonzero(eff != m))
        if changed:
            m, wrep["clipped"] = eff, wrep["clipped"] + changed
    fake = m * 2.0 ** e / lam
    return m, {"clipped": wrep["clipped"], "rel_error": F.relative_error(fake, w),
               "max_abs": float(np.abs(w).max()) if w.size else 0.0}


def quantize_neurons(nf: dict, lam: float, spec: QuantSpec) -> tuple[Neurons, dict, dict]:
    """Float neuron parameters ``nf`` (``decay_syn``, ``decay_mem``, ``v_threshold``, ``bias``) ->
    integer registers for the scale ``lam``; returns ``(neurons, fake floats, report)``."""
    vth_f = np.asarray(nf["v_threshold"], dtype=np.float64)
    if np.any(vth_f < 0):
        raise ValueError(f"negative threshold {float(vth_f.min())}: Loihi thresholds are unsigned")
    if spec.vth_bits == F.VTH.bits:
        vth, vth_clip = F.threshold_to_vth(vth_f, lam)
    else:
        vth, vth_clip = vth_format(spec).saturate(np.round(vth_f * lam))
    bias_v = np.round(np.asarray(nf["bias"], dtype=np.float64) * lam * 2 ** F.ACT_SHIFT)  # in units of v
    if spec.bias_exp is None:
        bias_mant, bias_exp, bias_clip = F.split_bias(bias_v)
    else:
        bias_mant, bias_clip = F.BIAS_MANT.saturate(np.round(bias_v / 2.0 ** spec.bias_exp))
        bias_exp = np.full(bias_mant.shape, spec.bias_exp, dtype=np.int64)
    du, dv = decay_registers(nf["decay_syn"], nf["decay_mem"], spec.decay_bits)
    fake = {"decay_syn": F.du_to_decay(du), "decay_mem": F.dv_to_decay(dv), "v_threshold": vth / lam,
            "bias": (bias_mant * 2.0 ** bias_exp) / (lam * 2 ** F.ACT_SHIFT)}
    report = {"v_threshold": {"clipped": vth_clip, "rel_error": F.relative_error(fake["v_threshold"], vth_f)},
              "bias": {"clipped": bias_clip, "rel_error": F.relative_error(fake["bias"], nf["bias"])},
              "decay_syn": {"rel_error": F.relative_error(fake["decay_syn"], nf["decay_syn"])},
              "decay_mem": {"rel_error": F.relative_error(fake["decay_mem"], nf["decay_mem"])}}

    def flat(a):
        return np.asarray(a).reshape(-1)

    neurons = Neurons(du=flat(du), dv=flat(dv), vth=flat(vth), bias_mant=flat(bias_mant), bias_exp=flat(bias_exp))
    return neurons, fake, report


def quantize_block(w: np.ndarray, nf: dict, spec: QuantSpec, scale: tuple | None = None,
                   w_rec: np.ndarray | None = None) -> BlockQuant:
    """Quantize one layer: float weights ``w`` (torch layout; 2-d = dense) and neuron floats ``nf``;
    ``w_rec``, a recurrent layer's own weights, shares the layer's scale (both feed one register).

    ``scale``: a given ``(lam, weight_exp)`` (``shared_exponent``) instead of the layer's own.
    """
    vth_f = nf["v_threshold"]
    if np.any(np.asarray(vth_f) < 0):
        raise ValueError(f"negative threshold {float(np.min(vth_f))}: Loihi thresholds are unsigned")
    if scale is None:
        w_max = max((float(np.abs(a).max()) for a in (w, w_rec) if a is not None and a.size), default=0.0)
        lam, e = layer_scale(w_max, float(np.max(vth_f)), spec)
    else:
        lam, e = float(scale[0]), int(scale[1])
    m, wrep = quantize_weight(w, lam, e, spec)
    neurons, fake, nrep = quantize_neurons(nf, lam, spec)
    report = {"scale": lam, "weight_exp": e, "weights": wrep, **nrep}
    q = BlockQuant(m, e, neurons, lam, m * 2.0 ** e / lam, fake, report)
    if w_rec is not None:
        q.rec_weight, report["recurrent_weights"] = quantize_weight(w_rec, lam, e, spec)
        q.fake_rec_weight = q.rec_weight * 2.0 ** e / lam
    return q



# --- graphs ------------------------------------------------------------------------------------

def _destinations(fg, name: str) -> set:
    """The neuron groups an operator's output reaches through operators only."""
    found, todo = set(), [name]
    while todo:
        cur = todo.pop()
        for succ in [b for a, b in fg.edges if a == cur]:
            node = fg.nodes[succ]
            if G.group_neurons(node) is not None:
                found.add(succ)
            elif type(node) in G.FLOAT_OPERATORS.values():
                todo.append(succ)
    return found


def pool_as_conv(channels: int, k: int) -> np.ndarray:
    """Sum pooling as the convolution it is: a ``k x k`` unit kernel per channel ``(C, C, k, k)``."""
    w = np.zeros((channels, channels, k, k))
    w[np.arange(channels), np.arange(channels)] = 1.0
    return w


def quantize_graph(fg, spec: QuantSpec = QuantSpec(), meta: dict | None = None):
    """Post-training quantization of a float graph (``sim.graph.FloatGraph``) into an ``IntGraph``
    of the same nodes and edges. Returns ``(graph, report)`` (one entry per neuron group).

    Every neuron group gets one scale ``lam`` (``layer_scale`` of the largest |weight| of all the
    operators that feed it, recurrent ones included, and its largest threshold): its inputs add in
    one register, so they share a unit. Each weighted operator takes the scale and exponent of the
    group it feeds (one group only; an operator feeding several is refused). A ``SumPool2d`` that
    feeds a group directly becomes the convolution it is (unit kernel, ``pool_as_conv``); a pool
    followed by further operators stays an exact integer pooling (``IntGraph`` composes the chain).
    With ``shared_exponent`` one ``(lam, e)`` serves the whole network.
    """
    weighted = {}
    for name, node in fg.nodes.items():
        if not isinstance(node, (G.Affine, G.FloatConv2d, G.SumPool2d)):
            continue
        dst = _destinations(fg, name)
        succ = [b for a, b in fg.edges if a == name]
        if isinstance(node, G.SumPool2d) and not all(G.group_neurons(fg.nodes[b]) is not None for b in succ):
            continue  # a pool inside a chain: exact integers, no weights
        if len(dst) != 1:
            raise ValueError(f"node {name!r}: a weighted operator must feed exactly one neuron group (it reaches "
                             f"{sorted(dst) or 'none'}); give each group its own operator")
        if isinstance(node, G.SumPool2d):
            src_shape = fg.shapes[fg.predecessors(name)[0]]
            k = int(node.kernel)
            weighted[name] = (dst.pop(), pool_as_conv(src_shape[0], k), (k, k), (0, 0))
        elif isinstance(node, G.FloatConv2d):
            weighted[name] = (dst.pop(), np.asarray(node.weight, dtype=np.float64), _tuple(node.stride),
                              _tuple(node.padding))
        else:
            weighted[name] = (dst.pop(), np.asarray(node.weight, dtype=np.float64), None, None)
    groups = [n for n in fg.nodes if isinstance(fg.nodes[n], G.FloatNeurons)]
    if any(isinstance(fg.nodes[n], G.Input) and fg.nodes[n].neurons is not None for n in fg.nodes):
        raise ValueError("a float graph's inputs carry no neurons (inputs with neurons are integer records)")
    nfs = {g: {f: _compact(fg.nodes[g], f) for f in G.FloatNeurons.FIELDS} for g in groups}
    wmax = {g: 0.0 for g in groups}
    for dst, w, _, _ in weighted.values():
        if w.size:
            wmax[dst] = max(wmax[dst], float(np.abs(w).max()))
    if spec.shared_exponent:
        shared = layer_scale(max(wmax.values(), default=0.0),
                             max((float(np.max(nf["v_threshold"])) for nf in nfs.values()), default=0.0), spec)
    scales, report, neurons = {}, [], {}
    for g in groups:
        lam, e = shared if spec.shared_exponent else layer_scale(wmax[g], float(np.max(nfs[g]["v_threshold"])), spec)
        scales[g] = (lam, e)
        neurons[g], _, nrep = quantize_neurons(nfs[g], lam, spec)
        report.append({"group": g, "scale": lam, "weight_exp": e, **nrep, "weights": {}})
    rep_of = {r["group"]: r for r in report}
    nodes = {}
    for name, node in fg.nodes.items():
        if isinstance(node, G.FloatNeurons):
            nodes[name] = G.NeuronGroup(node.shape, neurons[name])
        elif name in weighted:
            dst, w, stride, padding = weighted[name]
            lam, e = scales[dst]
            m, wrep = quantize_weight(w, lam, e, spec)
            rep_of[dst]["weights"][name] = wrep
            if stride is None:
                delay = getattr(fg.nodes[name], "delay", None)  # synaptic delays carry over unchanged
                nodes[name] = G.Dense(m, weight_exp=e, num_weight_bits=spec.num_weight_bits, delay=delay)
            else:
                nodes[name] = G.Conv2d(m, stride=stride, padding=padding, weight_exp=e)
        else:
            nodes[name] = node  # Input, Output, Flatten, SumPool2d inside a chain
    info = {"source": "float graph", "quantization": spec_dict(spec), **(fg.meta or {}), **(meta or {})}
    return G.IntGraph(nodes, fg.edges, fg.dt, info), report


def _tuple(t) -> tuple:
    return tuple(int(v) for v in t)


def _compact(node, field: str) -> np.ndarray:
    """A float neuron parameter as the integer record holds it: scalar, per channel ``(C,)`` or
    per neuron (flat), as given."""
    a = np.asarray(getattr(node, field), dtype=np.float64)
    return a.reshape(()) if a.size == 1 else a.reshape(-1)


# --- torch models (post-training quantization of a trained network, QAT): export/qat.py ------------
_QAT = ("neuron_floats", "block_weight", "quantize_network", "FakeQuantizer", "attach_fake_quant",
        "detach_fake_quant")


def __getattr__(name):  # the torch side lives in export/qat.py, imported only when asked for
    if name in _QAT:
        from . import qat

        return getattr(qat, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
