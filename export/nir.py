"""NIR (Neuromorphic Intermediate Representation) export and import.

Continuous time <-> steps of ``dt`` (forward Euler, the discretisation snnTorch and Norse simulate):

    LIF      tau dv/dt = (v_leak - v) + r I          ->  v[t] = (1 - dt/tau) v + (dt/tau) v_leak + (r dt/tau) I
    CubaLIF  tau_syn dI/dt = -I + w_in S             ->  i[t] = (1 - dt/tau_syn) i + (w_in dt/tau_syn) S
             tau_mem dv/dt = (v_leak - v) + r I      ->  v[t] = (1 - dt/tau_mem) v + (dt/tau_mem) v_leak + (r dt/tau_mem) i
    IF       dv/dt = r I                             ->  v[t] = v + r I      (read only)

so a spikeport neuron with decays ``alpha`` (current) and ``beta`` (membrane) and bias ``b`` is written
as ``tau_syn = dt/(1 - alpha)``, ``w_in = tau_syn/dt``, ``tau = tau_mem = dt/(1 - beta)``,
``r = tau/dt`` and ``v_leak = b/(1 - beta)`` (``tau_decay_euler`` and ``decay_tau_euler`` are the
one home of this conversion). Spikes are ``v > v_threshold``, reset to ``v_reset = 0``.

Our files also carry the exact integer network: every synapse and neuron node has the metadata key
``"spikeport"`` (``META_KEY``), a JSON string with that node's integer fields (weights as base64
int16), and the graph has ``"spikeport.dt"`` (seconds per step). Reading such a file recovers the
integer record exactly. Files from other tools (no such key) are read as float networks with
``dt`` from the file or the caller and quantized by the same post-training quantizer; gains
(``r dt/tau``, ``w_in dt/tau_syn``) are folded into the synaptic weights. What cannot be
represented on Loihi is refused with an error naming the node.
"""
from __future__ import annotations

import base64
import json
import math

import numpy as np
import torch

from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons, SumPool2d
from spikeport.train.layers import Conv2d as TConv2d
from spikeport.train.layers import Flatten as TFlatten
from spikeport.train.layers import Linear as TLinear
from spikeport.train.layers import Pool2d
from spikeport.train.network import SpikingNetwork
from spikeport.train.neurons import CUBA, LIF
from spikeport.train.surrogates import Surrogate

from .quantize import QuantSpec, block_weight, neuron_floats, quantize_network

META_KEY = "spikeport"
DT_KEY = "spikeport.dt"
FORMAT = "spikeport.nir/1"


def tau_decay_euler(decay, dt: float) -> np.ndarray:
    """Per-step decay -> NIR time constant, ``tau = dt / (1 - decay)`` (``decay = 1``: infinite)."""
    d = np.asarray(decay, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(d >= 1.0, np.inf, dt / (1.0 - d))


def decay_tau_euler(tau, dt: float, where: str) -> np.ndarray:
    """NIR time constant -> per-step decay ``1 - dt/tau``; needs ``tau >= dt``."""
    t = np.asarray(tau, dtype=np.float64)
    if np.any(t < dt) or np.any(~(t > 0)):
        bad = float(np.min(t))
        raise ValueError(f"{where}: time constant {bad:g} is shorter than the time step dt = {dt:g}; "
                         "forward Euler needs tau >= dt (pass a smaller --dt; files from Norse <= 1.1 store "
                         "dt * tau: read them with convention 'norse-1.1')")
    return 1.0 - dt / t


# --- integer metadata -------------------------------------------------------------------------

def _pack(a) -> dict:
    a = np.asarray(a).astype(np.int64)
    if a.size and (a.min() < -2 ** 15 or a.max() >= 2 ** 15):
        return {"shape": list(a.shape), "list": a.ravel().tolist()}
    return {"shape": list(a.shape), "b64": base64.b64encode(a.astype("<i2").tobytes()).decode()}


def _unpack(d: dict) -> np.ndarray:
    if "list" in d:
        return np.asarray(d["list"], dtype=np.int64).reshape(d["shape"])
    return np.frombuffer(base64.b64decode(d["b64"]), dtype="<i2").astype(np.int64).reshape(d["shape"])


def _synapse_meta(syn) -> str:
    d = {"format": FORMAT, "kind": syn.kind}
    if syn.kind == "dense":
        d.update(weight=_pack(syn.weight), weight_exp=int(syn.weight_exp), num_weight_bits=int(syn.num_weight_bits),
                 sign_mode=syn.sign_mode)
    elif syn.kind == "conv":
        d.update(weight=_pack(syn.weight), weight_exp=int(syn.weight_exp), stride=list(map(int, syn.stride)),
                 padding=list(map(int, syn.padding)))
    else:
        d.update(kernel=int(syn.kernel))
    return json.dumps(d)


def _neuron_meta(n: Neurons) -> str:
    return json.dumps({"format": FORMAT, **{f: _pack(getattr(n, f)) for f in Neurons.FIELDS}})


def _synapse_from_meta(d: dict):
    if d["kind"] == "dense":
        return Dense(_unpack(d["weight"]), d["weight_exp"], d["num_weight_bits"], d["sign_mode"])
    if d["kind"] == "conv":
        return Conv2d(_unpack(d["weight"]), tuple(d["stride"]), tuple(d["padding"]), d["weight_exp"])
    if d["kind"] == "sumpool":
        return SumPool2d(d["kernel"])
    raise ValueError(f"unknown spikeport synapse kind {d['kind']!r}")


# --- export -------------------------------------------------------------------------------------

def _full(a, shape) -> np.ndarray:
    return np.broadcast_to(np.asarray(a, dtype=np.float64), shape).astype(np.float32).copy()


def to_nir(model: SpikingNetwork, net: IntNetwork, dt: float):
    """A NIR graph of the float ``model`` (its fake-quantized values if QAT is attached) carrying
    the integer network ``net`` (as produced by ``export.quantize.quantize_network``)."""
    import nir

    if not dt > 0:
        raise ValueError(f"dt must be > 0 seconds, got {dt!r}")
    blocks = model.blocks()
    if len(blocks) != len(net.layers):
        raise ValueError("the integer network does not belong to this model (layer counts differ)")
    nodes = {"input": nir.Input(input_type={"input": np.array(model.input_shape)})}
    edges, prev = [], "input"
    prev_shape = tuple(model.input_shape)

    def add(name, node):
        nonlocal prev
        nodes[name] = node
        edges.append((prev, name))
        prev = name

    for i, ((syn, neuron, in_shape, out_shape), layer) in enumerate(zip(blocks, net.layers)):
        w, p = (None, None) if model.fake_quant is None else model.fake_quant(i, syn, neuron)
        weight = block_weight(syn, in_shape) if w is None else w.detach().double().numpy()
        if p is None:
            nf = neuron_floats(neuron)
        else:
            nf = {k: np.asarray(v.detach().double().numpy() if isinstance(v, torch.Tensor) else v, dtype=np.float64)
                  for k, v in zip(("decay_syn", "decay_mem", "v_threshold", "bias") if isinstance(neuron, CUBA)
                                  else ("decay_mem", "v_threshold", "bias"), p)}
            nf.setdefault("decay_syn", np.zeros(()))
        smeta = {META_KEY: _synapse_meta(layer.synapse)}
        if isinstance(syn, TLinear):
            if len(prev_shape) > 1:
                add(f"flatten{i}", nir.Flatten(input_type={"input": np.array(prev_shape)}, start_dim=0, end_dim=-1))
            add(f"fc{i}", nir.Linear(weight=weight.astype(np.float32), metadata=smeta))
        elif isinstance(syn, TConv2d):
            add(f"conv{i}", nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=weight.astype(np.float32),
                                       stride=tuple(syn.stride), padding=tuple(syn.padding), dilation=(1, 1),
                                       groups=1, bias=np.zeros(weight.shape[0], dtype=np.float32), metadata=smeta))
        else:
            k = syn.kernel_size
            cls = nir.AvgPool2d if syn.mode == "avg" else nir.SumPool2d
            add(f"pool{i}", cls(kernel_size=np.array([k, k]), stride=np.array([k, k]), padding=np.array([0, 0]),
                                metadata=smeta))
        beta = nf["decay_mem"]
        if np.any(nf["bias"] != 0) and np.any(beta >= 1.0):
            raise ValueError(f"layer {i}: a bias with no membrane leak (decay 1) has no NIR v_leak form")
        with np.errstate(divide="ignore", invalid="ignore"):
            v_leak = np.where(beta < 1.0, nf["bias"] / (1.0 - beta), 0.0)
        tau = tau_decay_euler(beta, dt)
        common = dict(r=_full(tau / dt, out_shape), v_leak=_full(v_leak, out_shape),
                      v_threshold=_full(nf["v_threshold"], out_shape), v_reset=_full(0.0, out_shape),
                      metadata={META_KEY: _neuron_meta(layer.neurons)})
        if isinstance(neuron, CUBA):
            tau_syn = tau_decay_euler(nf["decay_syn"], dt)
            add(f"cuba{i}", nir.CubaLIF(tau_syn=_full(tau_syn, out_shape), tau_mem=_full(tau, out_shape),
                                        w_in=_full(tau_syn / dt, out_shape), **common))
        else:
            add(f"lif{i}", nir.LIF(tau=_full(tau, out_shape), **common))
        prev_shape = tuple(out_shape)
    nodes["output"] = nir.Output(output_type={"output": np.array(model.shapes[-1])})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={DT_KEY: float(dt), "spikeport.format": FORMAT})


def write_nir(path, model: SpikingNetwork, net: IntNetwork, dt: float) -> None:
    import nir

    nir.write(str(path), to_nir(model, net, dt))


# --- import -------------------------------------------------------------------------------------

_SYNAPSES = ("Affine", "Linear", "Conv2d", "SumPool2d", "AvgPool2d")
_NEURONS = ("LIF", "CubaLIF", "IF")


def read_graph(path):
    """``nir.read`` with a fallback for files whose type check fails (Norse writes such files)."""
    import nir

    try:
        return nir.read(str(path))
    except FileNotFoundError:
        raise ValueError(f"NIR file {path} does not exist") from None
    except OSError as err:
        raise ValueError(f"{path} is not a NIR (HDF5) file: {err}") from None
    except Exception:  # noqa: BLE001 - nir raises plain exceptions from its type checker
        try:
            return nir.read(str(path), type_check=False)
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"cannot read NIR file {path}: {err}") from None


CONVENTIONS = ("nir", "norse-1.1")


def apply_convention(graph, convention: str, dt: float):
    """Undo a known exporter's deviation from NIR's equations, in place.

    ``'nir'``: the file follows NIR. ``'norse-1.1'``: ``norse.torch.to_nir`` up to 1.1.0 writes
    ``tau`` as ``dt * tau`` (norse issue #411), and its ``LIFCell`` adds the whole input to the
    current (``i += input``), which is NIR's ``w_in = tau_syn / dt``.
    """
    if convention == "nir":
        return graph
    if convention != "norse-1.1":
        raise ValueError(f"unknown NIR convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
    for node in graph.nodes.values():
        kind = type(node).__name__
        if kind == "LIF":
            node.tau = _arr(node.tau) / dt
        elif kind == "CubaLIF":
            node.tau_mem = _arr(node.tau_mem) / dt
            node.tau_syn = _arr(node.tau_syn) / dt
            node.w_in = node.tau_syn / dt
    return graph


def chain(graph) -> list:
    """Node names from Input to Output of a feed-forward chain; refuses branches and cycles."""
    names = [n for n, node in graph.nodes.items() if type(node).__name__ == "Input"]
    if len(names) != 1:
        raise ValueError(f"NIR graph must have exactly one Input node, found {len(names)}")
    succ = {}
    pred_count = {}
    for a, b in graph.edges:
        if a not in graph.nodes or b not in graph.nodes:
            raise ValueError(f"NIR edge ({a!r}, {b!r}) names a node that does not exist")
        succ.setdefault(a, []).append(b)
        pred_count[b] = pred_count.get(b, 0) + 1
    order, seen, cur = [], set(), names[0]
    while True:
        if cur in seen:
            raise ValueError(f"NIR graph has a cycle through node {cur!r}: only feed-forward chains are supported")
        seen.add(cur)
        order.append(cur)
        nxt = succ.get(cur, [])
        if type(graph.nodes[cur]).__name__ == "Output":
            break
        if len(nxt) != 1:
            raise ValueError(f"NIR node {cur!r} has {len(nxt)} successors: only feed-forward chains are supported")
        if pred_count.get(nxt[0], 0) != 1:
            raise ValueError(f"NIR node {nxt[0]!r} has {pred_count[nxt[0]]} inputs (recurrent or merging "
                             "connections are not supported)")
        cur = nxt[0]
    unused = set(graph.nodes) - seen
    if unused:
        raise ValueError(f"NIR nodes not on the Input-to-Output chain: {', '.join(sorted(unused))}")
    return order


def _arr(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _meta(node) -> dict | None:
    raw = (getattr(node, "metadata", None) or {}).get(META_KEY)
    if raw is None:
        return None
    if isinstance(raw, (bytes, np.bytes_)):
        raw = raw.decode()
    return json.loads(str(raw))


def _input_shape(node) -> tuple:
    t = node.input_type
    shape = tuple(int(v) for v in np.asarray(t["input"] if isinstance(t, dict) else t).ravel())
    return shape


def _drop_batch(shape: tuple) -> tuple:
    """Drop a leading batch dimension of size 1 (Norse writes input types with one):
    ``(1, N) -> (N,)``, ``(1, C, H, W) -> (C, H, W)``."""
    shape = tuple(shape)
    while shape and shape[0] in (1, -1) and (len(shape) > 3 or len(shape) == 2):
        shape = shape[1:]
    return shape


def _pool_kernel(node, name) -> int:
    k = np.atleast_1d(np.asarray(node.kernel_size)).astype(int)
    s = np.atleast_1d(np.asarray(node.stride)).astype(int)
    pad = np.atleast_1d(np.asarray(node.padding)).astype(int)
    if len(set(k.tolist())) != 1 or not np.array_equal(np.broadcast_to(s, k.shape), k) or np.any(pad != 0):
        raise ValueError(f"NIR node {name!r}: only square, non-overlapping pooling without padding is supported "
                         f"(kernel {k.tolist()}, stride {s.tolist()}, padding {pad.tolist()})")
    return int(k[0])


def nir_to_model(graph, dt: float, surrogate: Surrogate = Surrogate()) -> tuple[SpikingNetwork, list]:
    """A float ``SpikingNetwork`` equivalent to a NIR chain; returns it and a list of notes on
    approximations (e.g. a synaptic bias feeding a current-based neuron)."""
    order = chain(graph)
    nodes = [graph.nodes[n] for n in order]
    shape = _drop_batch(_input_shape(nodes[0]))
    layers, shapes, notes = [], [shape], []
    i = 1
    while i < len(nodes) - 1:
        name, node = order[i], nodes[i]
        kind = type(node).__name__
        if kind == "Flatten":
            if len(shape) > 1:
                layers.append(TFlatten())
                shape = (math.prod(shape),)
                shapes.append(shape)
            i += 1
            continue
        if kind not in _SYNAPSES:
            raise ValueError(f"NIR node {name!r} of type {kind} is not supported here "
                             f"(expected one of {', '.join(_SYNAPSES + ('Flatten',))})")
        if i + 1 >= len(nodes) - 1 or type(nodes[i + 1]).__name__ not in _NEURONS:
            raise ValueError(f"NIR node {name!r} ({kind}) must be followed by a neuron node "
                             f"({', '.join(_NEURONS)}); found {type(nodes[i + 1]).__name__}")
        if kind in ("Affine", "Linear") and len(shape) > 1:  # implicit flatten before a dense layer
            layers.append(TFlatten())
            shape = (math.prod(shape),)
            shapes.append(shape)
        syn, out_shape, w_bias = _synapse(node, name, kind, shape)
        nname, nnode = order[i + 1], nodes[i + 1]
        neuron, gain, note = _neuron(nnode, nname, out_shape, dt, w_bias, surrogate)
        if note:
            notes.append(note)
        if not np.allclose(gain, 1.0):
            _fold_gain(syn, gain, nname, out_shape)
        layers += [syn, neuron]
        shape = out_shape
        shapes.append(shape)
        i += 2
    if not layers:
        raise ValueError("NIR graph has no synapse/neuron layers")
    return SpikingNetwork("nir", shapes[0], layers, shapes), notes


def _synapse(node, name, kind, shape):
    """(torch layer with weights, output shape, synaptic bias per output or None)."""
    if kind in ("Affine", "Linear"):
        w = _arr(node.weight)
        if w.ndim != 2 or w.shape[1] != math.prod(shape):
            raise ValueError(f"NIR node {name!r}: weight {w.shape} does not fit input of shape {shape}")
        lin = TLinear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
        bias = _arr(node.bias) if kind == "Affine" else None
        if bias is not None:
            bias = np.broadcast_to(bias, (w.shape[0],)).copy()
        return lin, (w.shape[0],), bias
    if len(shape) != 3:
        raise ValueError(f"NIR node {name!r} ({kind}) needs a (C, H, W) input, got {shape}")
    if kind == "Conv2d":
        w = _arr(node.weight)
        if w.ndim != 4 or w.shape[1] != shape[0]:
            raise ValueError(f"NIR node {name!r}: conv weight {w.shape} does not fit input {shape}")
        if int(node.groups) != 1 or np.any(np.atleast_1d(node.dilation) != 1):
            raise ValueError(f"NIR node {name!r}: grouped or dilated convolutions are not supported")
        stride = tuple(int(v) for v in np.broadcast_to(np.atleast_1d(node.stride), (2,)))
        if isinstance(node.padding, str):
            if node.padding != "valid" and not (node.padding == "same" and w.shape[2] % 2 and w.shape[3] % 2):
                raise ValueError(f"NIR node {name!r}: padding {node.padding!r} is not supported for kernel {w.shape[2:]}")
            pad = (0, 0) if node.padding == "valid" else (w.shape[2] // 2, w.shape[3] // 2)
        else:
            pad = tuple(int(v) for v in np.broadcast_to(np.atleast_1d(node.padding), (2,)))
        conv = TConv2d(shape[0], w.shape[0], tuple(w.shape[2:]), stride=stride, padding=pad)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(w))
        oh = (shape[1] + 2 * pad[0] - w.shape[2]) // stride[0] + 1
        ow = (shape[2] + 2 * pad[1] - w.shape[3]) // stride[1] + 1
        bias = _arr(node.bias) if getattr(node, "bias", None) is not None else None
        per_channel = None if bias is None else np.broadcast_to(bias, (w.shape[0],))[:, None, None] * np.ones((1, oh, ow))
        return conv, (w.shape[0], oh, ow), per_channel
    k = _pool_kernel(node, name)
    pool = Pool2d(k, "avg" if kind == "AvgPool2d" else "sum")
    return pool, (shape[0], shape[1] // k, shape[2] // k), None


def _per_neuron(value, out_shape, name, field) -> np.ndarray:
    """A neuron parameter broadcast to every neuron: scalars (Norse's 0-d), per neuron (any layout of
    the right size), or per channel ``(C,)`` for feature maps."""
    a = _arr(value)
    if a.size == 1:
        return np.full(out_shape, float(a.ravel()[0]))
    if a.size == math.prod(out_shape):
        return a.reshape(out_shape)
    if len(out_shape) == 3 and a.size == out_shape[0]:
        return np.broadcast_to(a.reshape(-1, 1, 1), out_shape).astype(np.float64)
    raise ValueError(f"NIR node {name!r}: {field} of shape {a.shape} does not match the layer's "
                     f"{out_shape} neurons")


def _compact(a: np.ndarray, out_shape) -> np.ndarray:
    """Shared value -> scalar; constant per channel -> (C, 1, 1); otherwise per neuron."""
    if np.all(a == a.flat[0]):
        return np.asarray(a.flat[0])
    if len(out_shape) == 3 and np.all(a == a[:, :1, :1]):
        return a[:, :1, :1].copy()
    return a


def _neuron(node, name, out_shape, dt, syn_bias, surrogate):
    """(neuron module, input gain to fold into the synapse, approximation note or None)."""
    kind = type(node).__name__
    f = lambda field: _per_neuron(getattr(node, field), out_shape, name, field)  # noqa: E731
    v_reset = f("v_reset") if getattr(node, "v_reset", None) is not None else np.zeros(out_shape)
    if np.any(v_reset != 0):
        raise ValueError(f"NIR node {name!r}: v_reset = {float(v_reset.flat[np.argmax(v_reset != 0)]):g}; "
                         "Loihi resets the membrane to 0 only")
    v_th = f("v_threshold")
    note = None
    if kind == "IF":
        decay_syn, beta, gain, bias_v = None, np.ones(out_shape), f("r"), np.zeros(out_shape)
    elif kind == "LIF":
        tau = f("tau")
        beta = decay_tau_euler(tau, dt, f"NIR node {name!r}")
        gain = f("r") * dt / tau
        bias_v = dt / tau * f("v_leak")
        decay_syn = None
    else:  # CubaLIF
        tau_syn, tau_mem = f("tau_syn"), f("tau_mem")
        decay_syn = decay_tau_euler(tau_syn, dt, f"NIR node {name!r}")
        beta = decay_tau_euler(tau_mem, dt, f"NIR node {name!r}")
        gain = f("w_in") * dt / tau_syn * f("r") * dt / tau_mem
        bias_v = dt / tau_mem * f("v_leak")
    if syn_bias is not None and np.any(syn_bias != 0):
        b = gain * np.broadcast_to(syn_bias, out_shape)
        if decay_syn is None:
            bias_v = bias_v + b  # a synaptic bias is a membrane bias when there is no synaptic current
        else:
            bias_v = bias_v + b / (1.0 - decay_syn)
            note = (f"NIR node {name!r}: the synaptic bias feeds a current-based neuron; Loihi's bias acts on the "
                    "membrane, so it was mapped to its steady-state value b/(1 - decay_syn) (exact after the "
                    "current settles)")
    kw = dict(v_threshold=1.0, surrogate=surrogate, per_neuron=True)
    if decay_syn is None:
        mod = LIF(out_shape, **kw)
        values = {"decay_mem": beta}
    else:
        mod = CUBA(out_shape, **kw)
        values = {"decay_syn": decay_syn, "decay_mem": beta}
    values.update(v_threshold=v_th, bias=bias_v)
    for key, val in values.items():
        getattr(mod, key).data = torch.as_tensor(_compact(np.asarray(val, dtype=np.float64), out_shape),
                                                 dtype=torch.float32)
    return mod, gain, note


def _fold_gain(syn, gain: np.ndarray, name: str, out_shape) -> None:
    """Scale the synaptic weights by a per-output gain (``r dt/tau`` etc.)."""
    g = _compact(gain, out_shape)
    if isinstance(syn, TLinear):
        with torch.no_grad():
            syn.weight.mul_(torch.tensor(np.broadcast_to(g, out_shape), dtype=torch.float32)[:, None])
        return
    if np.ndim(g) == 3 and g.shape[1:] != (1, 1):
        raise ValueError(f"NIR node {name!r}: an input gain that differs within a channel cannot be folded into "
                         "a convolution")
    if isinstance(syn, Pool2d):
        raise ValueError(f"NIR node {name!r}: an input gain of {np.ravel(g)[0]:g} after pooling is not supported")
    with torch.no_grad():
        syn.weight.mul_(torch.as_tensor(np.broadcast_to(np.asarray(g).reshape(-1), (out_shape[0],)),
                                        dtype=torch.float32)[:, None, None, None])


def read_nir(path, dt: float | None = None, spec: QuantSpec = QuantSpec(),
             convention: str = "nir") -> tuple[IntNetwork, dict]:
    """Integer network from a NIR file: exact from our metadata, else quantized from the float graph
    (after ``apply_convention`` for files from exporters that deviate from NIR).

    Returns ``(net, info)`` with ``info['source']`` ('spikeport metadata' or 'float parameters'),
    ``info['dt']`` and, for float graphs, the quantization report and notes.
    """
    graph = read_graph(path)
    file_dt = (graph.metadata or {}).get(DT_KEY)
    use_dt = float(dt if dt is not None else file_dt) if (dt is not None or file_dt is not None) else None
    order = chain(graph)
    metas = [(_meta(graph.nodes[n]), type(graph.nodes[n]).__name__) for n in order]
    syn_metas = [m for m, kind in metas if kind in _SYNAPSES]
    neu_metas = [m for m, kind in metas if kind in _NEURONS]
    if syn_metas and all(m is not None for m in syn_metas + neu_metas):
        layers = [Layer(_synapse_from_meta(s), Neurons(**{f: _unpack(n[f]) for f in Neurons.FIELDS}),
                        name=f"layer{k}") for k, (s, n) in enumerate(zip(syn_metas, neu_metas))]
        raw_in = _drop_batch(_input_shape(graph.nodes[order[0]]))
        net = IntNetwork(raw_in, tuple(layers), dt=use_dt or 1.0, meta={"source": str(path)})
        return net, {"source": "spikeport metadata", "dt": use_dt}
    if use_dt is None:
        raise ValueError(f"{path} does not say its time step: pass --dt (seconds per step)")
    model, notes = nir_to_model(apply_convention(graph, convention, use_dt), use_dt)
    net, report = quantize_network(model, spec, dt=use_dt, meta={"source": str(path)})
    return net, {"source": "float parameters", "dt": use_dt, "quantization": report, "notes": notes,
                 "model": model}
