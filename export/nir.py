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
import dataclasses
import json
import math

import numpy as np

from spikeport.sim import graph as G
from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons, SumPool2d

from .quantize import pool_as_conv

META_KEY = "spikeport"
DT_KEY = "spikeport.dt"
FORMAT = "spikeport.nir/1"        # chains (training runs): synapse and neuron metadata per layer
FORMAT_GRAPH = "spikeport.nir/2"  # any IntGraph: every node's integer record (sim.graph.node_to_dict)


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
    """Inverse of ``_pack``. A record from a file is checked before anything is allocated: a shape
    of sizes >= 0 within the memory budget, then exactly that many values, each an integer in
    int64's range (``list``: no float is truncated, no 2**64 wraps) or a base64 block of int16
    (``b64``); anything else is a ``ValueError`` (``_check_graph`` names the node and field)."""
    from spikeport.sim.npzfile import MEMORY_BUDGET_BYTES

    if not isinstance(d, dict) or not isinstance(d.get("shape"), list) or not all(
            type(v) is int and v >= 0 for v in d["shape"]):
        raise ValueError(f"packed array without a shape of sizes >= 0 ({str(d)[:60]})")
    n = math.prod(d["shape"])
    if n * 8 > MEMORY_BUDGET_BYTES:
        raise ValueError(f"packed array of shape {d['shape']}: beyond the memory budget (MEMORY_BUDGET_BYTES)")
    if "list" in d:
        values = d["list"]
        if not isinstance(values, list) or len(values) != n:
            raise ValueError(f"packed array of shape {d['shape']} needs {n} values")
        bad = [v for v in values if type(v) is not int or not -2 ** 63 <= v < 2 ** 63][:1]
        if bad:
            raise ValueError(f"packed array holds {bad[0]!r}; int64 integers expected")
        return np.asarray(values, dtype=np.int64).reshape(d["shape"])
    raw = d.get("b64")
    if not isinstance(raw, str) or len(raw) > 4 * (2 * n + 2) // 3 + 4:
        raise ValueError(f"packed array of shape {d['shape']} has no base64 block of its size")
    try:
        data = base64.b64decode(raw, validate=True)
    except ValueError:  # binascii.Error
        raise ValueError("packed array: damaged base64") from None
    if len(data) != 2 * n:
        raise ValueError(f"packed array of shape {d['shape']} holds {len(data) // 2} int16 values")
    return np.frombuffer(data, dtype="<i2").astype(np.int64).reshape(d["shape"])


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


def to_nir(model, net, dt: float):
    """A NIR graph of the float ``model`` (a trained ``SpikingNetwork``; its fake-quantized values if
    QAT is attached) carrying the integer network ``net`` (``export.qat.quantize_network``'s: a
    chain, or a graph when layers are recurrent). A recurrent layer ``i`` writes its own weights as
    an Affine node ``rec{i}`` in a loop ``lif{i} -> rec{i} -> lif{i}`` (snnTorch's RLeaky shape).
    A model with skip connections (merges) is written as its integer graph (``graph_to_nir``:
    every node with its exact record, float values in each group's integer unit)."""
    import nir
    import torch

    from spikeport.train.layers import Conv2d as TConv2d
    from spikeport.train.layers import Linear as TLinear
    from spikeport.train.neurons import CUBA

    from .qat import block_weight, neuron_floats

    if not dt > 0:
        raise ValueError(f"dt must be > 0 seconds, got {dt!r}")
    if getattr(model, "skips", None):
        return graph_to_nir(net, dt)
    blocks = model.blocks()
    if isinstance(net, G.IntGraph):  # a run with recurrent layers: quantize_network's node names
        layers = [Layer(net.nodes[f"layer{i}_synapse"], net.neurons(f"layer{i}")) for i in range(len(blocks))]
        recs = {i: net.nodes[f"layer{i}_rec"] for i in range(len(blocks)) if f"layer{i}_rec" in net.nodes}
    else:
        layers, recs = list(net.layers), {}
    if len(blocks) != len(layers):
        raise ValueError("the integer network does not belong to this model (layer counts differ)")
    nodes = {"input": nir.Input(input_type={"input": np.array(model.input_shape)})}
    edges, prev = [], "input"
    prev_shape = tuple(model.input_shape)

    def add(name, node):
        nonlocal prev
        nodes[name] = node
        edges.append((prev, name))
        prev = name

    for i, ((syn, neuron, in_shape, out_shape), layer) in enumerate(zip(blocks, layers)):
        w, p, w_rec = (None, None, None) if model.fake_quant is None else model.fake_quant(i, syn, neuron)
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
        if i in recs:
            rw = (w_rec if w_rec is not None else neuron.w_rec).detach().double().numpy()
            meta = json.loads(_synapse_meta(recs[i]))
            nodes[f"rec{i}"] = nir.Affine(weight=rw.astype(np.float32), bias=np.zeros(rw.shape[0], dtype=np.float32),
                                          metadata={META_KEY: json.dumps({**meta, "recurrent": True})})
            edges += [(prev, f"rec{i}"), (f"rec{i}", prev)]
        prev_shape = tuple(out_shape)
    nodes["output"] = nir.Output(output_type={"output": np.array(model.shapes[-1])})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={DT_KEY: float(dt), "spikeport.format": FORMAT})


def write_nir(path, model, net: IntNetwork, dt: float, flavor: str = "nir", compression: str | None = "gzip") -> list:
    """Write ``to_nir``'s graph, in the form ``flavor`` (``flavor_graph``) reads; returns its notes.
    ``compression`` is ``nir.write``'s (None: smaller for tiny networks)."""
    graph, notes = flavor_graph(to_nir(model, net, dt), flavor)
    _write_flavor(path, graph, flavor, compression)
    return notes


def graph_to_nir(graph: "G.IntGraph", dt: float):
    """A NIR graph of any ``IntGraph``, every node carrying its exact integer record.

    The float parameters are the ones the integers stand for, in units where each group's scale is
    1: weights ``W_eff 2**weight_exp``, thresholds ``vth``, biases ``bias_mant 2**bias_exp / 64``,
    decays from ``du``/``dv``; continuous-time by forward Euler with ``dt``. Groups with a synaptic
    current are ``CubaLIF``, others ``LIF``. NIR has no input neurons and no bias without a leak:
    such values live only in the metadata (``notes`` in the graph's metadata say so).
    """
    import nir

    if not dt > 0:
        raise ValueError(f"dt must be > 0 seconds, got {dt!r}")
    G.refuse_unless_lif(G.as_graph(graph), "NIR export")  # NIR has no sigma-delta or resonate-and-fire primitive
    nodes, notes, edges = {}, [], [list(e) for e in graph.edges]
    for name, node in graph.nodes.items():
        meta = {META_KEY: _node_meta(node, name)}
        shape = graph.shapes.get(name)
        if isinstance(node, G.Input):
            nodes[name] = nir.Input(input_type={"input": np.array(node.shape)}, metadata=meta)
            if node.neurons is not None:
                notes.append(f"{name}: input neurons (bias-driven input) exist only in the spikeport metadata")
        elif isinstance(node, G.Output):
            nodes[name] = nir.Output(output_type={"output": np.array(shape)}, metadata=meta)
        elif isinstance(node, G.Flatten):
            in_shape = graph.shapes[graph.predecessors(name)[0]]
            nodes[name] = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1, metadata=meta)
        elif isinstance(node, Dense):
            w = node.effective_weight() * 2.0 ** int(node.weight_exp)
            nodes[name] = nir.Linear(weight=w.astype(np.float32), metadata=meta)
            (src,) = graph.predecessors(name)
            in_shape = graph.shapes[src]
            if len(in_shape) > 1:  # the graph reads a map flat; NIR says so with a Flatten node (its own record)
                flat = _free_name(f"{name}.flatten", graph.nodes)
                nodes[flat] = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1,
                                          metadata={META_KEY: _node_meta(G.Flatten(), flat)})
                edges = [e for e in edges if e != [src, name]] + [[src, flat], [flat, name]]
                src = flat
            if node.delay is not None and np.any(node.delay):
                edges = _delays_to_nir(nodes, edges, graph, name, node, src, dt, notes)
        elif isinstance(node, Conv2d):
            w = node.effective_weight().astype(np.float32)
            in_shape = graph.shapes[graph.predecessors(name)[0]]
            nodes[name] = nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=w, stride=tuple(node.stride),
                                     padding=tuple(node.padding), dilation=(1, 1), groups=1,
                                     bias=np.zeros(w.shape[0], dtype=np.float32), metadata=meta)
        elif isinstance(node, SumPool2d):
            k = int(node.kernel)
            nodes[name] = nir.SumPool2d(kernel_size=np.array([k, k]), stride=np.array([k, k]),
                                        padding=np.array([0, 0]), metadata=meta)
        else:  # NeuronGroup
            nodes[name] = _group_to_nir(node, name, dt, meta, notes)
    return nir.NIRGraph(nodes=nodes, edges=edges,
                        metadata={DT_KEY: float(dt), "spikeport.format": FORMAT_GRAPH, "spikeport.notes": notes})


def _derived_meta(of: str) -> dict:
    """The record of a node the NIR writer adds for ``of`` (a Delay, a Linear per delay value): the
    reader drops it and rebuilds ``of`` from its own record."""
    return {META_KEY: json.dumps({"format": FORMAT_GRAPH, "node": {"kind": "derived", "of": of}, "arrays": {}})}


def _delays_to_nir(nodes, edges, graph, name, node, src, dt, notes):
    """A ``Dense`` with per-synapse delays as NIR says it: one ``Linear`` per delay value ``k`` (the
    first under the node's own name, with its exact record), each followed by ``Delay(k dt)`` per
    output when ``k > 0``, all merging into the node's successors (their sums add)."""
    import nir

    parts = node.delays()
    succ = [b for a, b in edges if a == name]
    edges = [e for e in edges if e[0] != name]
    scale = 2.0 ** int(node.weight_exp)
    for i, k in enumerate(sorted(parts)):
        lin = name if i == 0 else _free_name(f"{name}.d{k}", {**graph.nodes, **nodes})
        meta = nodes[name].metadata if i == 0 else _derived_meta(name)
        nodes[lin] = nir.Linear(weight=(parts[k] * scale).astype(np.float32), metadata=meta)
        if i:
            edges.append([src, lin])
        last = lin
        if k:
            last = _free_name(f"{name}.delay{k}", {**graph.nodes, **nodes})
            nodes[last] = nir.Delay(delay=np.full(parts[k].shape[0], k * dt, dtype=np.float64),
                                    metadata=_derived_meta(name))
            edges.append([lin, last])
        edges += [[last, b] for b in succ]
    notes.append(f"{name}: per-synapse delays written as {len(parts)} Linear node(s) with Delay nodes "
                 "(one per delay value)")
    return edges


def write_nir_graph(path, graph: "G.IntGraph", dt: float | None = None, flavor: str = "nir",
                    compression: str | None = "gzip") -> list:
    """Write any ``IntGraph`` as NIR (``graph_to_nir``, then ``flavor_graph``); ``dt`` defaults to
    the graph's own. Returns the notes (what the file cannot say)."""
    nir_graph = graph_to_nir(graph, graph.dt if dt is None else dt)
    notes = list(nir_graph.metadata.get("spikeport.notes", []))
    nir_graph, flavor_notes = flavor_graph(nir_graph, flavor)
    _write_flavor(path, nir_graph, flavor, compression)
    return notes + flavor_notes


def _write_flavor(path, graph, flavor: str, compression: str | None = "gzip") -> None:
    """``nir.write``; for sinabs, whose 3.1 pins nir <= 1.0.4, in the form nir 1.0.4 reads: its LIF,
    CubaLIF and IF have no ``v_reset`` field (reset to 0 is what they mean; nir >= 1.0.5 reads a
    missing ``v_reset`` as 0), so the datasets are dropped (``flavor_graph`` already left Input
    and Output without metadata and wrote no Linear, which 1.0.4 gives no metadata field)."""
    import h5py
    import nir

    nir.write(str(path), graph, compression=compression)
    if flavor != "sinabs":
        return
    with h5py.File(str(path), "r+") as f:
        for name, node in f["node"]["nodes"].items():
            if node["type"][()] in (b"LIF", b"CubaLIF", b"IF") and "v_reset" in node:
                del node["v_reset"]


# --- flavours: our graphs in the forms other libraries' NIR importers read ---------------------------

FLAVORS = ("nir", "snntorch", "sinabs", "norse")
RECORD_KEY = "spikeport.record."  # graph metadata: a node's record where its nir 1.0.4 class has no metadata
_NO_METADATA_104 = ("Input", "Output", "Linear", "Conv2d", "AvgPool2d", "Scale")
# the step each importer assumes: snnTorch 1.0's import_nir hard-codes dt = 1e-4; Norse 1.1's from_nir
# defaults to dt = 1e-3; sinabs 3.1 reads tau in steps (alpha = exp(-1/tau))
FLAVOR_DT = {"snntorch": 1e-4, "norse": 1e-3, "sinabs": 1.0}


def flavor_graph(graph, flavor: str):
    """``graph`` (written by ``to_nir`` or ``graph_to_nir``) in the form a library's NIR importer
    runs as our float model; returns ``(graph, notes)``. The integer records in the metadata are
    kept, so ``read_nir`` still recovers the integer network exactly.

    Every neuron node is rewritten from its per-step parameters (decays ``alpha`` (current),
    ``beta`` (membrane), membrane bias ``b``, threshold ``theta``; our files have unit input gain):

    ``'snntorch'`` (``snntorch.import_nir.import_from_nir``; no ``v_leak``, one threshold per layer,
    ``dt = 1e-4`` hard-coded): ``tau = 1e-4 / (1 - beta)``, ``r = tau / dt``, ``v_leak = 0``; ``b`` as
    the bias of the Affine (or Conv2d, per channel) feeding the neurons; thresholds that differ
    within a layer are normalised to 1 by scaling the neurons' input rows and bias by ``1/theta``
    (exact: ``v / theta`` crosses 1 where ``v`` crosses ``theta``).
    ``'sinabs'`` (``sinabs.nir.from_nir``; tau in steps, ``r`` ignored, ``v_leak`` must be 0):
    ``tau = -1 / ln(beta)`` so sinabs' ``exp(-1/tau)`` is ``beta``; ``b`` as the Affine/Conv2d bias;
    no CubaLIF (refused).
    ``'norse'`` (``norse.torch.from_nir`` with its default ``dt = 1e-3``; ``r`` of LIF ignored, and
    its membranes start at ``v_leak``, not 0): ``tau = 1e-3 / (1 - beta)``, ``r = 1``, ``v_leak = 0``,
    input rows and ``b`` (as the Affine/Conv2d bias) scaled by ``tau / dt``.

    A pool that feeds neurons is written as the convolution it is (unit kernels), which can carry
    the bias and the scaling. Lost, and said in the notes: a membrane bias of CUBA neurons travels
    as a synaptic-current bias ``b (1 - alpha)`` (its steady state; snnTorch and Norse have no
    membrane bias for them, Norse's synapse would also take ``v_leak``), and sinabs runs its layers
    with several spikes per step and reset by subtraction unless the user sets ``SingleSpike`` and
    ``MembraneReset`` on the loaded layers.
    """
    if flavor not in FLAVORS:
        raise ValueError(f"unknown NIR flavor {flavor!r}; expected one of {', '.join(FLAVORS)}")
    if flavor == "nir":
        return graph, []
    import nir

    dt = (graph.metadata or {}).get(DT_KEY)
    if dt is None:
        raise ValueError(f"the graph has no {DT_KEY!r}: flavors rewrite graphs that to_nir or graph_to_nir wrote")
    nodes, edges = dict(graph.nodes), [tuple(e) for e in graph.edges]
    notes = [f"{flavor}: written for dt = {FLAVOR_DT[flavor]:g}"
             + (" s (the step its importer assumes)" if flavor != "sinabs" else " step (tau in steps)")]
    maps = set()
    if flavor in ("snntorch", "norse") and any(type(n).__name__ == "Flatten" for n in nodes.values()):
        nodes, edges, maps = _dense_as_conv(nodes, edges)
        notes.append(f"{flavor}: Flatten -> Linear written as the convolution it is (a kernel over the whole map; "
                     "1x1 after it), as its NIR import flattens the batch dimension too (torch Flatten(start_dim=0)); "
                     "those layers' outputs have shape (n, 1, 1)")
    cuba_bias, per_channel = [], False
    for name, node in list(nodes.items()):
        kind = type(node).__name__
        if kind == "Input" and flavor == "sinabs":
            record = _meta(node)
            if record is not None and (record.get("node") or {}).get("neurons") is not None:
                raise ValueError(f"NIR node {name!r}: input neurons (a bias-driven input) have no sinabs form")
        if kind not in ("LIF", "CubaLIF"):
            continue
        p = _neuron_steps(node, name, dt)
        if name in maps:  # a dense layer written as a convolution: its neurons are an (n, 1, 1) map
            p = {k: v.reshape(-1, 1, 1) for k, v in p.items()}
        shape = p["beta"].shape
        preds = [a for a, b in edges if b == name]
        main = [a for a in preds if (name, a) not in edges]  # the op whose source is not this node
        if len(main) != 1:
            raise ValueError(f"NIR node {name!r}: {len(main)} feed-forward inputs; flavors handle one (plus "
                             "recurrent loops)")
        if flavor == "sinabs" and len(preds) > 1:
            raise ValueError(f"NIR node {name!r}: a recurrent connection (from {[a for a in preds if a not in main][0]!r})"
                             "; sinabs runs each layer over all steps in one call ((batch x time) input), so it "
                             "cannot run recurrence")
        if kind == "CubaLIF" and flavor == "sinabs":
            raise ValueError(f"NIR node {name!r} (CubaLIF): sinabs 3.1 reads no CubaLIF; export LIF layers for sinabs")
        scale, bias, theta = np.ones(shape), p["bias"], p["v_threshold"]
        if flavor == "snntorch" and not np.all(theta == theta.flat[0]):
            scale, theta = 1.0 / theta, np.ones(shape)
            notes.append(f"{name}: thresholds differ per neuron; normalised to 1 (input rows and bias x 1/v_threshold, "
                         "exact) as snnTorch reads one threshold per layer")
        if flavor == "norse" and kind == "LIF":
            if np.any(p["beta"] >= 1.0):
                raise ValueError(f"NIR node {name!r}: a LIF without leak (decay 1) has no Norse form (its LIF "
                                 "weighs the input by dt/tau)")
            scale = scale / (1.0 - p["beta"])
        if kind == "CubaLIF" and np.any(bias != 0):
            bias = bias * (1.0 - p["alpha"])
            cuba_bias.append(name)
        fdt = FLAVOR_DT[flavor]
        v_leak = np.zeros(shape)  # Norse starts its membranes at v_leak: the bias goes to the Affine for it too
        for src in preds:
            nodes[src] = _scaled_input(nodes[src], src, scale, bias * scale if src == main[0] else None, shape)
        common = dict(v_threshold=_full(theta, shape), v_leak=_full(v_leak, shape), v_reset=_full(0.0, shape),
                      metadata=node.metadata)
        with np.errstate(divide="ignore"):
            if flavor == "sinabs":
                tau = np.where(p["beta"] >= 1.0, np.inf, -1.0 / np.log(p["beta"]))
                if len(shape) == 3:  # sinabs' LIF import tests any(v_leak) != 0: an error for (C, H, W) arrays
                    tau, theta = _per_channel(tau, name, "tau"), _per_channel(theta, name, "v_threshold")
                    shape, per_channel = tau.shape, True
                    common.update(v_threshold=theta, v_leak=np.zeros(shape, np.float32),
                                  v_reset=np.zeros(shape, np.float32))
                nodes[name] = nir.LIF(tau=_full(tau, shape), r=_full(1.0, shape), **common)
                continue
            tau = tau_decay_euler(p["beta"], fdt)
        r = np.ones(shape) if flavor == "norse" and kind == "LIF" else tau / fdt
        if kind == "LIF":
            nodes[name] = nir.LIF(tau=_full(tau, shape), r=_full(r, shape), **common)
        else:
            tau_syn = tau_decay_euler(p["alpha"], fdt)
            nodes[name] = nir.CubaLIF(tau_syn=_full(tau_syn, shape), tau_mem=_full(tau, shape),
                                      w_in=_full(tau_syn / fdt, shape), r=_full(r, shape), **common)
    if cuba_bias:
        notes.append(f"{', '.join(cuba_bias)}: the membrane bias b of CUBA neurons is written as a synaptic-current "
                     f"bias b (1 - alpha), its steady state ({flavor} has no membrane bias for them): the first steps "
                     "after a reset of the state differ")
    if per_channel:
        notes.append("sinabs: LIF layers of feature maps are written with (C, 1, 1) parameters (sinabs' import tests "
                     "any(v_leak), an error for (C, H, W) arrays); nir >= 1.0.5 flags their type: read with "
                     "nir.read(path, type_check=False)")
    if flavor == "sinabs":
        notes.append("sinabs: from_nir builds LIF layers that emit several spikes per step and reset by subtraction "
                     "(MultiSpike, MembraneSubtract); set spike_fn=sinabs.activation.SingleSpike and "
                     "reset_fn=sinabs.activation.MembraneReset() on them for one spike per step and reset to zero")
    meta = {**(graph.metadata or {}), "spikeport.flavor": flavor,
            "spikeport.notes": list((graph.metadata or {}).get("spikeport.notes", [])) + notes}
    if flavor == "sinabs":  # nir 1.0.4 (sinabs' pin) has no metadata on these: their records go to the graph's
        for name, node in nodes.items():
            if type(node).__name__ in _NO_METADATA_104 and (node.metadata or {}).get(META_KEY) is not None:
                meta[RECORD_KEY + name] = node.metadata[META_KEY]
                node.metadata = {}
    return nir.NIRGraph(nodes=nodes, edges=[list(e) for e in edges], metadata=meta, type_check=not per_channel), notes


def _dense_as_conv(nodes, edges):
    """Flatten -> Linear/Affine as one Conv2d whose kernel covers the (C, H, W) map, and every
    Linear/Affine after it (fed by an ``(n, 1, 1)`` map) as a 1x1 Conv2d; the neuron nodes and
    Outputs they feed become ``(n, 1, 1)`` maps. Exact (the same sums). Returns the new nodes and
    edges and the names of the neuron nodes that became maps."""
    import nir

    nodes, edges = dict(nodes), list(edges)
    maps, order = set(), _topological_order(nodes, edges)
    for name in order:
        node, kind = nodes[name], type(nodes[name]).__name__
        preds = [a for a, b in edges if b == name]
        if kind == "Flatten":
            shape = tuple(int(v) for v in np.asarray(node.input_type["input"]).ravel())
            if len(shape) != 3:
                continue
            (src,) = preds
            succs = [b for a, b in edges if a == name]
            if any(type(nodes[b]).__name__ not in ("Linear", "Affine") for b in succs):
                raise ValueError(f"NIR node {name!r} (Flatten) must feed Linear or Affine nodes here")
            for b in succs:
                w = _arr(nodes[b].weight)
                nodes[b] = _affine_as_conv(nodes[b], w.reshape(w.shape[0], *shape), shape[1:])
                maps.add(b)
            edges = [e for e in edges if name not in e] + [(src, b) for b in succs]
            del nodes[name]
        elif kind in ("Linear", "Affine") and preds and all(a in maps for a in preds):
            w = _arr(node.weight)
            nodes[name] = _affine_as_conv(node, w.reshape(*w.shape, 1, 1), (1, 1))
            maps.add(name)
        elif kind in ("LIF", "CubaLIF") and preds and any(a in maps for a in preds):
            maps.add(name)
        elif kind == "Output" and preds[0] in maps:
            n = int(np.prod(np.asarray(node.output_type["output"])))
            nodes[name] = nir.Output(output_type={"output": np.array([n, 1, 1])}, metadata=node.metadata)
    return nodes, edges, {n for n in maps if type(nodes[n]).__name__ in ("LIF", "CubaLIF")}


def _affine_as_conv(op, weight, hw):
    import nir

    bias = _arr(op.bias) if type(op).__name__ == "Affine" else np.zeros(weight.shape[0])
    return nir.Conv2d(input_shape=tuple(int(v) for v in hw), weight=weight.astype(np.float32), stride=(1, 1),
                      padding=(0, 0), dilation=(1, 1), groups=1, bias=bias.astype(np.float32), metadata=op.metadata)


def _topological_order(nodes, edges) -> list:
    """Nodes in an order where every node follows its feed-forward predecessors (edges that close
    a cycle are ignored), starting from the Inputs."""
    succ = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
    order, state = [], {}

    def visit(n):
        state[n] = 1
        for m in succ.get(n, []):
            if m not in state:
                visit(m)
        order.append(n)

    for n, node in nodes.items():
        if type(node).__name__ == "Input":
            visit(n)
    return order[::-1] + [n for n in nodes if n not in state]


def _per_channel(a, name, field) -> np.ndarray:
    """``(C, H, W)`` values constant per channel as ``(C, 1, 1)`` float32 (a ValueError otherwise)."""
    a = np.asarray(a, dtype=np.float64)
    if not np.all(a == a[:, :1, :1]):
        raise ValueError(f"NIR node {name!r}: {field} differs within a channel; sinabs 3.1 reads LIF layers of "
                         "feature maps only with one value per channel")
    return a[:, :1, :1].astype(np.float32)


def _neuron_steps(node, name, dt) -> dict:
    """Per-step parameters of a neuron node that ``to_nir``/``graph_to_nir`` wrote (unit input gain:
    ``r = tau / dt``, ``w_in = tau_syn / dt``), as arrays of the node's shape."""
    kind = type(node).__name__
    tau = _arr(node.tau if kind == "LIF" else node.tau_mem)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(np.isinf(tau), 1.0, _arr(node.r) * dt / tau)
        if kind == "CubaLIF":
            gain = gain * _arr(node.w_in) * dt / _arr(node.tau_syn)
    if not np.allclose(gain, 1.0, rtol=1e-5):
        raise ValueError(f"NIR node {name!r}: input gain {float(np.ravel(gain)[0]):g} (r dt/tau); flavors rewrite "
                         "the graphs that to_nir or graph_to_nir wrote (unit gain)")
    beta = np.where(np.isinf(tau), 1.0, 1.0 - dt / tau)
    p = {"beta": beta, "bias": _arr(node.v_leak) * (1.0 - beta), "v_threshold": _arr(node.v_threshold)}
    if kind == "CubaLIF":
        tau_syn = _arr(node.tau_syn)
        p["alpha"] = np.where(np.isinf(tau_syn), 1.0, 1.0 - dt / tau_syn)
    return {k: np.broadcast_to(v, beta.shape).astype(np.float64) for k, v in p.items()}


def _scaled_input(op, name, scale, bias, out_shape):
    """The NIR operator ``op`` feeding neurons of ``out_shape`` with its output rows times ``scale``
    and, where ``bias`` is given, a bias: Linear -> Affine, Conv2d per channel, a pool as its
    convolution (unit kernels). A Flatten or anything else is refused by name."""
    import nir

    kind = type(op).__name__
    n = math.prod(out_shape)
    s, b = scale.reshape(-1), (np.zeros(n) if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1))
    if kind in ("Linear", "Affine"):
        w = _arr(op.weight) * s[:, None]
        old = _arr(op.bias) * s if kind == "Affine" else np.zeros(n)
        return nir.Affine(weight=w.astype(np.float32), bias=(old + b).astype(np.float32), metadata=op.metadata)
    if kind in ("SumPool2d", "AvgPool2d"):
        k = _pool_kernel(op, name)
        c = int(np.asarray(op.input_type["input"]).ravel()[0])
        w = pool_as_conv(c, k) / (k * k if kind == "AvgPool2d" else 1)
        hw = tuple(int(v) for v in np.asarray(op.input_type["input"]).ravel()[1:])
        op = nir.Conv2d(input_shape=hw, weight=w, stride=(k, k), padding=(0, 0), dilation=(1, 1), groups=1,
                        bias=np.zeros(c), metadata=op.metadata)
        kind = "Conv2d"
    if kind != "Conv2d" or len(out_shape) != 3:
        raise ValueError(f"NIR node {name!r} ({kind}) feeds neurons; flavors rewrite Linear, Affine, Conv2d and pooling")
    c = out_shape[0]
    per = np.stack([s.reshape(c, -1), b.reshape(c, -1)])
    if not np.all(per == per[:, :, :1]):
        raise ValueError(f"NIR node {name!r} (Conv2d): the neurons it feeds need a scale or bias that differs within "
                         "a channel, which a convolution cannot carry")
    s, b = per[0, :, 0], per[1, :, 0]
    w = _arr(op.weight) * s[:, None, None, None]
    old = _arr(op.bias) * s if getattr(op, "bias", None) is not None else np.zeros(c)
    return nir.Conv2d(input_shape=op.input_shape, weight=w.astype(np.float32), stride=op.stride, padding=op.padding,
                      dilation=op.dilation, groups=op.groups, bias=(old + b).astype(np.float32), metadata=op.metadata)


def _node_meta(node, name: str) -> str:
    arrays = {}
    entry = G.node_to_dict(node, arrays, name)
    return json.dumps({"format": FORMAT_GRAPH, "node": entry, "arrays": {k: _pack(v) for k, v in arrays.items()}})


def _group_to_nir(node, name, dt, meta, notes):
    import nir

    from spikeport.sim import formats as F

    shape, n = node.shape, node.neurons
    e = {f: n.expand(f, shape).reshape(shape).astype(np.float64) for f in Neurons.FIELDS}
    decay_syn = F.du_to_decay(e["du"])
    beta = F.dv_to_decay(e["dv"])
    bias = e["bias_mant"] * 2.0 ** e["bias_exp"] / 2 ** F.ACT_SHIFT
    if np.any((bias != 0) & (beta >= 1.0)):
        notes.append(f"{name}: a bias without membrane leak has no NIR v_leak form; it exists only in the metadata")
    with np.errstate(divide="ignore", invalid="ignore"):
        v_leak = np.where(beta < 1.0, bias / (1.0 - beta), 0.0)
    tau = tau_decay_euler(beta, dt)
    common = dict(r=_full(tau / dt, shape), v_leak=_full(v_leak, shape), v_threshold=_full(e["vth"], shape),
                  v_reset=_full(0.0, shape), metadata=meta)
    if np.any(decay_syn > 0):
        tau_syn = tau_decay_euler(decay_syn, dt)
        return nir.CubaLIF(tau_syn=_full(tau_syn, shape), tau_mem=_full(tau, shape), w_in=_full(tau_syn / dt, shape),
                           **common)
    return nir.LIF(tau=_full(tau, shape), **common)


# --- import ---------------------------------------------------------------------------------------

_NEURONS = ("LIF", "CubaLIF", "IF")

def read_graph(path):
    """What ``nir.read`` returns, read safely: the HDF5 file is parsed in another process, bounded
    in time (``SPIKEPORT_READ_TIMEOUT``), memory and structure (``export.hdf5file``: a damaged file
    can hang libhdf5), and the NIR graph is built here from the plain arrays, as ``nir.read`` builds
    it (``nir.dict2NIRNode``), with a fallback for files whose type check fails (Norse writes such
    files). Then every number in it is checked (``_check_graph``). Every problem is a one-line
    ``ValueError`` naming the file (and the node and field)."""
    import nir

    from .hdf5file import Group, HDF5Error, read_hdf5

    try:
        root = read_hdf5(path)
    except HDF5Error as err:
        if err.kind == "missing":
            raise ValueError(f"NIR file {path} does not exist") from None
        if err.kind == "open":
            raise ValueError(f"{path} is not a NIR (HDF5) file: {err.reason}") from None
        raise ValueError(f"cannot read NIR file {path}: {err.reason}") from None
    if not isinstance(root.get("node"), Group):
        raise ValueError(f"{path} is not a NIR file (no 'node' group)")
    graph = None
    for type_check in (True, False):  # nir.read's dict, fresh each time (nir's from_dict edits it)
        data = _nir_dict(root["node"], path)
        if "type_check" in data:
            raise ValueError(f"{path}: the graph has a 'type_check' entry, which nir.read refuses")
        try:
            graph = nir.dict2NIRNode({**data, "type_check": type_check})
            break
        except Exception as err:  # noqa: BLE001 - nir raises plain exceptions (assert, KeyError, ...)
            error = err
    if graph is None:
        raise ValueError(f"cannot read NIR file {path}: {type(error).__name__}: {' '.join(str(error).split())}")
    if not isinstance(graph, nir.NIRGraph):
        raise ValueError(f"{path}: the file's top node is a {type(graph).__name__}, not a NIR graph")
    graph = _restore_records(graph)
    _check_graph(graph, path)
    return graph


def _nir_dict(group, path, where: str = "/node") -> dict:
    """``nir.serialization.hdf2dict`` on the plain tree: groups as dicts, datasets as ``ds[()]``
    with bytes decoded to str. Unsigned integers beyond int64 are refused here, before nir's node
    constructors cast them (``w_in = ones_like(v_leak) * w_in`` would make 2**64 - 1 a float)."""
    from .hdf5file import Group

    out = {}
    for key, item in group.items():
        if isinstance(item, Group):
            out[key] = _nir_dict(item, path, f"{where}/{key}")
            continue
        value = item[()]
        a = np.asarray(value) if isinstance(value, (np.ndarray, np.generic)) else None
        if a is not None and a.dtype.kind == "u" and a.size and a.max() > 2 ** 63 - 1:
            raise ValueError(f"{path}: {where}/{key} = {int(a.max())} is beyond int64")
        try:
            out[key] = value.decode("utf8") if isinstance(value, bytes) else value
        except UnicodeDecodeError:
            raise ValueError(f"{path}: {where}/{key} is not UTF-8 text") from None
    return out


# --- checking every number of a NIR graph read from a file ---------------------------------------

MAX_MAGNITUDE = 1e30  # no network parameter is this large; products of a few such values stay finite
_TIME_CONSTANTS = {"tau": "tau", "tau_mem": "tau_mem", "tau_syn": "tau_syn"}
# +inf in these fields means no leak (NIR: tau dv/dt = ...; our writer gives non-leaky neurons tau = inf
# and r = tau / dt, w_in = tau_syn / dt): admitted where the paired time constant is +inf too
_INF_PAIRED = {"r": ("tau", "tau_mem"), "w_in": ("tau_syn",)}


def _check_graph(graph, path, prefix: str = "") -> None:
    """Refuse, naming the node and field, any number of a NIR graph (nested graphs included) that
    is NaN, -inf, +inf outside a time constant (``_INF_PAIRED``), beyond ``MAX_MAGNITUDE`` or an
    integer beyond int64; shapes (``input_type``, ``output_type``) that are not sizes or that
    exceed ``sim.graph.MAX_GROUP_NEURONS``; strides, dilations, groups and kernels < 1, paddings
    < 0 or beyond the kernel; and spikeport records (metadata ``spikeport``) that are not what
    our writers write (``_check_record``)."""
    at = f"{path}: " + (f"graph {prefix[:-1]!r}" if prefix else "graph")
    _check_metadata(graph.metadata, at, graph_level=True)
    if not prefix:
        try:  # every edge names a node (of a nested graph too, as sub.node)
            flatten_graph(graph)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    for name, node in graph.nodes.items():
        where = f"{path}: node {prefix + str(name)!r}"
        kind = type(node).__name__
        if kind == "NIRGraph":
            _check_graph(node, path, f"{prefix}{name}.")
            continue
        for f in dataclasses.fields(node):
            value = getattr(node, f.name, None)
            if f.name == "metadata":
                _check_metadata(value, where)
                if isinstance(value, dict) and META_KEY in value:
                    _check_record(value[META_KEY], where, kind)
            elif f.name in ("input_type", "output_type"):
                for port, shape in (value or {}).items():
                    _check_shape(shape, where, f"{f.name}[{port!r}]")
            elif value is not None and not isinstance(value, str):
                a = _numbers(value, where, f.name)
                if f.name in _INF_PAIRED:
                    pair = [getattr(node, t) for t in _INF_PAIRED[f.name] if getattr(node, t, None) is not None]
                    tau = _numbers(pair[0], where, _INF_PAIRED[f.name][0]) if pair else np.zeros(())
                    try:
                        unpaired = np.isposinf(a) & ~np.isposinf(np.broadcast_to(tau, a.shape))
                    except ValueError:
                        unpaired = np.isposinf(a)
                    if np.any(unpaired):
                        raise ValueError(f"{where}: {f.name} contains inf where its time constant is finite")
                elif f.name not in _TIME_CONSTANTS and np.any(np.isposinf(a)):
                    raise ValueError(f"{where}: {f.name} contains inf (must be finite)")
                if f.name in ("stride", "dilation", "groups", "kernel_size") and np.any(a < 1):
                    raise ValueError(f"{where}: {f.name} = {a.tolist()} must be >= 1")
                if f.name == "padding":
                    kernel = getattr(node, "kernel_size", None)
                    if kernel is None and getattr(node, "weight", None) is not None:
                        kernel = np.shape(node.weight)[2:]
                    if np.any(a < 0) or (kernel is not None and np.size(kernel) and a.size in (1, np.size(kernel))
                                         and np.any(a > np.asarray(kernel, dtype=np.float64))):
                        raise ValueError(f"{where}: padding {a.tolist()} must be >= 0 and at most the kernel "
                                         f"{np.asarray(kernel).tolist() if kernel is not None else ''}")


def _numbers(value, where: str, field: str) -> np.ndarray:
    """``value`` as float64 after checking it holds numbers: no NaN or -inf, nothing beyond
    ``MAX_MAGNITUDE`` but +inf (judged by the caller), no integer beyond int64 (checked in its own
    dtype, before any cast)."""
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{where}: {field} must be numbers, got {a.dtype}")
    if a.dtype.kind in "iu" and a.size and (a.max() > 2 ** 63 - 1):
        raise ValueError(f"{where}: {field} = {int(a.max())} beyond int64")
    f = a.astype(np.float64)
    if np.any(np.isnan(f)) or np.any(np.isneginf(f)):
        raise ValueError(f"{where}: {field} contains {'nan' if np.any(np.isnan(f)) else '-inf'} (must be finite)")
    big = np.isfinite(f) & (np.abs(f) > MAX_MAGNITUDE)
    if np.any(big):
        raise ValueError(f"{where}: {field} = {float(f[big].flat[0]):g} beyond {MAX_MAGNITUDE:g} (MAX_MAGNITUDE)")
    return f


def _check_shape(shape, where: str, field: str) -> None:
    a = _numbers(shape, where, field).reshape(-1)
    if np.any(np.isinf(a)) or np.any(a != np.round(a)) or np.any(a < -1):
        raise ValueError(f"{where}: {field} = {a.tolist()} is not a shape (sizes >= 0; -1 for a free batch size)")
    if math.prod(int(v) for v in a if v > 0) > G.MAX_GROUP_NEURONS:
        raise ValueError(f"{where}: {field} = {a.astype(np.int64).tolist()} holds more than {G.MAX_GROUP_NEURONS} "
                         "values (MAX_GROUP_NEURONS)")


def _check_metadata(meta, where: str, graph_level: bool = False) -> None:
    if meta is None:
        return
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: metadata must be a mapping, got {type(meta).__name__}")
    for key, value in meta.items():
        strings = np.asarray(value).dtype.kind in "SUO" and all(
            isinstance(v, (str, bytes)) for v in np.asarray(value, dtype=object).reshape(-1))
        if isinstance(value, (str, bytes)) or value is None or strings:  # text, or a list of it (notes)
            pass
        elif isinstance(value, dict):
            _check_metadata(value, f"{where} (metadata {key!r})")
        else:
            a = _numbers(value, where, f"metadata {key!r}")
            if np.any(np.isinf(a)):
                raise ValueError(f"{where}: metadata {key!r} contains inf (must be finite)")
    if graph_level and DT_KEY in meta:
        dt = np.asarray(meta[DT_KEY])
        if dt.dtype.kind not in "iuf" or dt.size != 1 or not float(dt.reshape(-1)[0]) > 0:
            raise ValueError(f"{where}: metadata {DT_KEY!r} = {meta[DT_KEY]!r} must be one number > 0 (seconds)")


_SYNAPSE_FIELDS = {"dense": {"weight": "packed", "weight_exp": "int", "num_weight_bits": "int", "sign_mode": "mode"},
                   "conv": {"weight": "packed", "weight_exp": "int", "stride": "pair", "padding": "pair"},
                   "sumpool": {"kernel": "int"}}


def _check_record(raw, where: str, kind: str) -> None:
    """A node's spikeport record (metadata ``spikeport``) as our writers write it: JSON of format 1
    (``_synapse_meta``/``_neuron_meta``) or 2 (``_node_meta``), every packed array valid
    (``_unpack``) and every field of the right type. Values are then range-checked where the
    integer graph is built (``sim.formats``)."""
    if isinstance(raw, (bytes, np.bytes_)):
        raw = bytes(raw).decode("utf-8", "replace")
    if not isinstance(raw, str):
        raise ValueError(f"{where}: metadata {META_KEY!r} must be a JSON string, got {type(raw).__name__}")
    try:
        d = json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{where}: metadata {META_KEY!r} is not JSON ({type(err).__name__})") from None
    if not isinstance(d, dict) or d.get("format") not in (FORMAT, FORMAT_GRAPH):
        raise ValueError(f"{where}: metadata {META_KEY!r} is not a spikeport record (format "
                         f"{d.get('format') if isinstance(d, dict) else None!r})")

    def field(name, value, expect):
        ok = {"int": lambda v: type(v) is int, "mode": lambda v: v in (None, "mixed", "excitatory", "inhibitory"),
              "pair": lambda v: isinstance(v, list) and len(v) == 2 and all(type(x) is int for x in v),
              "bool": lambda v: isinstance(v, bool)}.get(expect)
        if expect == "packed":
            try:
                _unpack(value)
            except ValueError as err:
                raise ValueError(f"{where}: record field {name!r}: {err}") from None
        elif not ok(value):
            raise ValueError(f"{where}: record field {name!r} = {str(value)[:60]!r} is not {expect}")

    if d["format"] == FORMAT_GRAPH:
        node, arrays = d.get("node"), d.get("arrays")
        if not isinstance(node, dict) or not isinstance(node.get("kind"), str) or not isinstance(arrays, dict):
            raise ValueError(f"{where}: record without a node kind and arrays")
        for name, value in arrays.items():
            field(f"arrays.{name}", value, "packed")
        for name, value in node.items():
            values = [value]
            if isinstance(value, dict) and "neurons" in value:
                if not isinstance(value["neurons"], dict):
                    raise ValueError(f"{where}: record field {name!r}: neurons must be a mapping")
                values = list(value["neurons"].values())
            for v in values:
                if isinstance(v, dict) and not isinstance(v.get("array"), str):
                    raise ValueError(f"{where}: record field {name!r} refers to no array")
        return
    if kind in _NEURONS:
        for name in Neurons.FIELDS:
            field(name, d.get(name), "packed")
    else:
        fields = _SYNAPSE_FIELDS.get(d.get("kind"))
        if fields is None:
            raise ValueError(f"{where}: record of unknown synapse kind {d.get('kind')!r}")
        for name, expect in fields.items():
            field(name, d.get(name), expect)
    if "recurrent" in d:
        field("recurrent", d["recurrent"], "bool")


def _restore_records(graph):
    """Records that a sinabs-flavored file keeps in the graph's metadata (``RECORD_KEY`` + node
    name) back on their nodes."""
    for key, value in list((graph.metadata or {}).items()):
        if key.startswith(RECORD_KEY) and key[len(RECORD_KEY):] in graph.nodes:
            graph.nodes[key[len(RECORD_KEY):]].metadata = {META_KEY: value}
    return graph


CONVENTIONS = ("nir", "norse-1.1", "snntorch", "sinabs")


def apply_convention(graph, convention: str, dt: float):
    """Undo a known exporter's deviation from NIR's equations, in place.

    ``'nir'``: the file follows NIR. ``'norse-1.1'``: ``norse.torch.to_nir`` up to 1.1.0 writes
    ``tau`` as ``dt * tau`` (norse issue #411), and its ``LIFCell`` adds the whole input to the
    current (``i += input``), which is NIR's ``w_in = tau_syn / dt``.
    """
    if convention in ("nir", "snntorch", "sinabs"):  # the latter two: notes only (convention_notes)
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


def _arr(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor (some exporters store them)
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"expected numbers, got dtype {a.dtype}")
    return a.astype(np.float64)


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




def flatten_graph(graph, prefix: str = "") -> tuple[dict, list]:
    """Nodes and edges with nested ``NIRGraph`` subgraphs inlined as ``sub.node`` names. An edge to
    or from a subgraph by its own name goes to its Input / from its Output nodes; the subgraph's
    Input and Output nodes are passed through (their predecessors feed their successors)."""
    nodes, edges = {}, []
    inner = {}
    for name, node in graph.nodes.items():
        full = prefix + name
        if type(node).__name__ == "NIRGraph":
            sub_nodes, sub_edges = flatten_graph(node, full + ".")
            ins = [n for n in sub_nodes if type(sub_nodes[n]).__name__ == "Input"]
            outs = [n for n in sub_nodes if type(sub_nodes[n]).__name__ == "Output"]
            inner[full] = (ins, outs)
            nodes.update(sub_nodes)
            edges += sub_edges
        else:
            nodes[full] = node
    for a, b in graph.edges:
        a, b = prefix + str(a), prefix + str(b)
        srcs = inner[a][1] if a in inner else [a]
        dsts = inner[b][0] if b in inner else [b]
        edges += [(x, y) for x in srcs for y in dsts]
    for sub, (ins, outs) in inner.items():  # pass through the subgraph's own Input/Output nodes
        for io in ins + outs:
            preds = [x for x, y in edges if y == io]
            succs = [y for x, y in edges if x == io]
            edges = [e for e in edges if io not in e] + [(x, y) for x in preds for y in succs]
            del nodes[io]
    for a, b in edges:
        for n in (a, b):
            if n not in nodes:
                raise ValueError(f"NIR edge ({a!r}, {b!r}) names a node that does not exist")
    return nodes, list(dict.fromkeys(edges))


def _conv_params(node, name, w):
    groups = int(np.asarray(getattr(node, "groups", 1)).ravel()[0]) if getattr(node, "groups", None) is not None else 1
    if np.any(np.atleast_1d(np.asarray(getattr(node, "dilation", 1))) != 1):
        raise ValueError(f"NIR node {name!r}: dilated convolutions are not supported (Loihi's Conv has no dilation)")
    stride = tuple(int(v) for v in np.broadcast_to(np.atleast_1d(np.asarray(node.stride)), (2,)))
    if isinstance(node.padding, str):
        if node.padding != "valid" and not (node.padding == "same" and w.shape[2] % 2 and w.shape[3] % 2):
            raise ValueError(f"NIR node {name!r}: padding {node.padding!r} is not supported for kernel {w.shape[2:]}")
        pad = (0, 0) if node.padding == "valid" else (w.shape[2] // 2, w.shape[3] // 2)
    else:
        pad = tuple(int(v) for v in np.broadcast_to(np.atleast_1d(np.asarray(node.padding)), (2,)))
    if groups != 1:  # a grouped convolution is a full one with zero blocks (exact)
        c_out, c_in_g = w.shape[:2]
        if groups < 1 or c_out % groups:
            raise ValueError(f"NIR node {name!r}: groups = {groups} does not divide {c_out} output channels")
        full = np.zeros((c_out, c_in_g * groups, *w.shape[2:]))
        per = c_out // groups
        for g in range(groups):
            full[g * per:(g + 1) * per, g * c_in_g:(g + 1) * c_in_g] = w[g * per:(g + 1) * per]
        w = full
    return w, stride, pad


def nir_to_float_graph(graph, dt: float | None, notes: list | None = None,
                       current_bias: str = "unit") -> "G.FloatGraph":
    """The float mirror of a NIR graph (numpy; no torch): ``Input``, ``Affine``, ``FloatConv2d``,
    ``SumPool2d``, ``Flatten``, ``FloatNeurons`` and ``Output`` nodes under the file's names
    (nested subgraphs inlined as ``sub.node``), edges as in the file: recurrence and merges included.

    Per-step parameters by forward Euler with ``dt`` (see the module docstring); each neuron node's
    input gain (``r dt/tau``, ``w_in dt/tau_syn``, IF's ``r``) is folded into the weighted operator
    that feeds it (a pool feeding a neuron directly becomes its unit-kernel convolution; a
    convolution followed by pooling becomes one convolution, ``_conv_then_pool``). ``AvgPool2d`` is
    a ``SumPool2d`` whose ``1/k**2`` goes into the next weighted operator. A synaptic bias
    (``Affine.bias``, ``Conv2d.bias``, carried through any pooling, flattening or weights between it
    and the neurons) is the neurons' membrane bias where they have no synaptic current; into a
    synaptic current it is, with ``current_bias='unit'``, a synapse from one added neuron
    (``bias_unit``) that spikes every step (exact), or with ``'membrane'`` the membrane bias of its
    steady state ``b / (1 - decay_syn)`` (the first steps differ; for a chain-only float twin).
    Anything Loihi cannot run is refused naming the node.
    """
    if current_bias not in ("unit", "membrane"):
        raise ValueError(f"current_bias must be 'unit' or 'membrane', got {current_bias!r}")
    notes = [] if notes is None else notes
    raw, edges = flatten_graph(graph)
    preds = {n: [a for a, b in edges if b == n] for n in raw}
    succs = {n: [b for a, b in edges if a == n] for n in raw}
    kinds = {n: type(node).__name__ for n, node in raw.items()}
    nodes, scale_in, bias_of = {}, {}, {}
    for name, node in raw.items():
        kind = kinds[name]
        if kind == "Input":
            nodes[name] = G.Input(_drop_batch(_input_shape(node)))
        elif kind == "Output":
            nodes[name] = G.Output()
        elif kind in ("Affine", "Linear"):
            nodes[name] = G.Affine(_arr(node.weight))
            if kind == "Affine" and getattr(node, "bias", None) is not None and np.any(_arr(node.bias) != 0):
                bias_of[name] = _arr(node.bias)
        elif kind == "Conv2d":
            w, stride, pad = _conv_params(node, name, _arr(node.weight))
            nodes[name] = G.FloatConv2d(w, stride, pad)
            if getattr(node, "bias", None) is not None and np.any(_arr(node.bias) != 0):
                bias_of[name] = _arr(node.bias)
        elif kind in ("SumPool2d", "AvgPool2d"):
            k = _pool_kernel(node, name)
            nodes[name] = G.SumPool2d(k)
            if kind == "AvgPool2d":
                scale_in[name] = 1.0 / (k * k)
        elif kind == "Flatten":
            nodes[name] = G.Flatten()
        elif kind in _NEURONS:
            nodes[name] = None  # after shapes are known
        elif kind == "Scale":
            nodes[name] = ("scale", _arr(node.scale))
        elif kind == "Delay":
            nodes[name] = ("delay", _delay_steps(_arr(node.delay), dt, name))
        else:
            raise ValueError(f"NIR node {name!r} of type {kind} is not supported (Loihi runs Affine, Linear, Conv2d, "
                             f"SumPool2d, AvgPool2d, Flatten, Scale, Delay and the neurons {', '.join(_NEURONS)})")
    nodes, edges = _fold_delays(nodes, edges, notes)
    preds = {n: [a for a, b in edges if b == n] for n in nodes}
    succs = {n: [b for a, b in edges if a == n] for n in nodes}
    # Scale nodes: fold into the weighted operator before them (rows), then drop
    for name, node in list(nodes.items()):
        if not (isinstance(node, tuple) and node[0] == "scale"):
            continue
        (src,) = preds[name] if len(preds[name]) == 1 else (None,)
        if src is None or not isinstance(nodes.get(src), (G.Affine, G.FloatConv2d)) or len(succs[src]) != 1:
            raise ValueError(f"NIR node {name!r} (Scale) must follow an Affine, Linear or Conv2d node that feeds only it")
        nodes[src] = _scale_rows(nodes[src], node[1], name)
        if src in bias_of:
            bias_of[src] = bias_of[src] * np.broadcast_to(node[1], np.shape(bias_of[src]))
        edges = [(a, b) for a, b in edges if b != name and a != name] + [(src, b) for b in succs[name]]
        del nodes[name]
        preds = {n: [a for a, b in edges if b == n] for n in nodes}
        succs = {n: [b for a, b in edges if a == n] for n in nodes}
    # a convolution followed by pooling (snnTorch's Conv2d -> AvgPool2d -> Leaky) is one convolution
    for name in [n for n, node in nodes.items() if isinstance(node, G.SumPool2d)]:
        src = preds[name][0] if len(preds[name]) == 1 else None
        if src is None or not isinstance(nodes[src], G.FloatConv2d) or len(succs[src]) != 1:
            continue
        k, factor = int(nodes[name].kernel), scale_in.pop(name, 1.0)
        nodes[src] = _conv_then_pool(nodes[src], k, factor)
        if src in bias_of:  # a per-channel constant, summed over k x k positions
            b = bias_of[src]
            if b.size not in (1, np.asarray(nodes[src].weight).shape[0]):
                raise ValueError(f"NIR node {src!r}: a bias of {b.size} values before pooling {name!r} must be one "
                                 "per channel")
            bias_of[src] = b * (k * k * factor)
        notes.append(f"NIR nodes {src!r} -> {name!r}: convolution then pooling composed into one convolution "
                     f"(node {src!r}), as Loihi applies one synapse per hop")
        edges = [(a, b) for a, b in edges if b != name and a != name] + [(src, b) for b in succs[name]]
        del nodes[name]
        preds = {n: [a for a, b in edges if b == n] for n in nodes}
        succs = {n: [b for a, b in edges if a == n] for n in nodes}
    # AvgPool's 1/k**2 into the next weighted operator
    for name, factor in scale_in.items():
        nxt = succs[name]
        while len(nxt) == 1 and isinstance(nodes[nxt[0]], G.Flatten):
            nxt = succs[nxt[0]]
        if len(nxt) == 1 and isinstance(nodes[nxt[0]], (G.Affine, G.FloatConv2d)):
            op = nodes[nxt[0]]
            nodes[nxt[0]] = dataclasses.replace(op, weight=np.asarray(op.weight) * factor)
        elif not (len(nxt) == 1 and kinds.get(nxt[0]) in _NEURONS):
            raise ValueError(f"NIR node {name!r} (AvgPool2d) must feed one weighted operator or one neuron node")
    shapes = _neuron_shapes(nodes, preds, raw, kinds)
    gains = {}
    for name in [n for n in nodes if nodes[n] is None]:
        nodes[name], gains[name] = _float_neurons(raw[name], name, shapes[name], dt)
    # fold each neuron's input gain and the synaptic biases feeding it
    biased, current_biases = set(), {}
    for name in [n for n in nodes if isinstance(nodes[n], G.FloatNeurons)]:
        group = nodes[name]
        gain, decay_syn = gains[name]
        extra_bias = np.zeros(math.prod(group.shape))
        for src in preds[name]:
            op_name = src
            while isinstance(nodes[op_name], G.Flatten):
                (op_name,) = preds[op_name]
            op = nodes[op_name]
            in_shape = _try_shape(preds[op_name][0], nodes, preds, shapes) if len(preds[op_name]) == 1 else None
            if isinstance(op, G.SumPool2d):
                w = pool_as_conv(in_shape[0], int(op.kernel)) * scale_in.get(op_name, 1.0)
                op = G.FloatConv2d(w, (int(op.kernel),) * 2, (0, 0))
            if not isinstance(op, (G.Affine, G.FloatConv2d)):
                raise ValueError(f"NIR node {name!r}: its input from {src!r} ({type(op).__name__}) carries no weights; "
                                 "put a weighted operator (Affine, Conv2d) in front of each neuron node")
            if len(succs[op_name]) != 1 and not np.allclose(gain, 1.0):
                raise ValueError(f"NIR node {op_name!r} feeds several nodes and {name!r} needs its input scaled by "
                                 f"{float(np.ravel(gain)[0]):g}: give each neuron node its own operator")
            # synaptic biases of this operator and of the operators chained before it (conv -> pool -> neuron,
            # Affine -> Flatten -> ...): a constant input, carried through the chain to the neurons
            chain = _operator_chain(op_name, nodes, preds)
            for k, biased_name in enumerate(chain):
                if biased_name not in bias_of:
                    continue
                ops = [op if n == op_name else nodes[n] for n in chain]
                b = _bias_through(bias_of[biased_name], ops[k:], chain[k:], nodes, preds, shapes)
                extra_bias = extra_bias + b.reshape(-1) * gain.reshape(-1)
                biased.add(biased_name)
            nodes[op_name] = _scale_rows(op, gain, name, group.shape)
        if np.any(extra_bias != 0):
            if np.any(decay_syn != 0) and current_bias == "unit":
                current_biases[name] = extra_bias
            elif np.any(decay_syn != 0):
                extra_bias = extra_bias / (1.0 - decay_syn.reshape(-1))
                notes.append(f"NIR node {name!r}: a synaptic bias feeds a current-based neuron; mapped to the "
                             "membrane bias of its steady state b / (1 - decay_syn) (the first steps differ)")
                nodes[name] = dataclasses.replace(group, bias=group.expand("bias") + extra_bias)
            else:  # v[t] = beta v + W s + b: Loihi's membrane bias, exactly
                nodes[name] = dataclasses.replace(group, bias=group.expand("bias") + extra_bias)
    if current_biases:
        # a synaptic bias into a synaptic current (i[t] = alpha i + W s + b) is a constant input current; Loihi's
        # bias acts on the membrane (b / (1 - alpha) is only its steady state), so one neuron that spikes every
        # step sends b through a synapse of its own, exactly
        unit = _free_name("bias_unit", nodes)
        nodes[unit] = G.FloatNeurons((1,), decay_syn=0.0, decay_mem=0.0, v_threshold=0.5, bias=1.0)
        for name, b in current_biases.items():
            op = _free_name(f"{name}.bias", nodes)
            nodes[op] = G.Affine(b.reshape(-1, 1))
            edges = list(edges) + [(unit, op), (op, name)]
            notes.append(f"NIR node {name!r}: its synaptic bias feeds a synaptic current (Loihi's bias acts on the "
                         f"membrane): sent as a constant current from {unit!r}, one neuron that spikes every step, "
                         f"through {op!r}")
    unused = [n for n in bias_of if n not in biased]
    if unused:
        raise ValueError(f"NIR node {unused[0]!r}: a synaptic bias that reaches no neuron node through synaptic "
                         "operators is not supported")
    return G.FloatGraph(nodes, edges, 1.0 if dt is None else float(dt), {"notes": list(notes)})


def _delay_steps(delay, dt, name) -> np.ndarray:
    """A NIR ``Delay``'s ``delay`` (time, per element; ``y(t) = x(t - delay)``) in whole steps of ``dt``
    (of 1 when the file has no time step): Loihi 2 delays a synapse by 0..63 extra steps."""
    step = 1.0 if dt is None else float(dt)
    steps = np.asarray(delay, dtype=np.float64) / step
    rounded = np.round(steps)
    if not np.allclose(steps, rounded, rtol=0, atol=1e-6):
        bad = float(steps.reshape(-1)[int(np.argmax(np.abs(steps - rounded).reshape(-1)))])
        raise ValueError(f"NIR node {name!r} (Delay): a delay of {bad:g} steps of dt = {step:g} is not a whole "
                         "number of steps")
    from spikeport.sim import formats as F

    return F.DELAY.check(rounded, f"NIR node {name!r} (Delay), in steps,")


def _fold_delays(nodes, edges, notes):
    """Each ``Delay`` into the ``Affine`` next to it, as that operator's per-synapse ``delay``: after
    the operator (it feeds only the Delay) a delay per output (rows), before it (the Delay feeds only
    the operator, maybe through a Flatten) a delay per input (columns). Loihi 2 delays dense synapses
    only (Lava's ``DelayDense``; Lava has no delayed convolution): anything else is refused."""
    for name in [n for n, node in nodes.items() if isinstance(node, tuple) and node[0] == "delay"]:
        steps = nodes[name][1].reshape(-1)
        preds = [a for a, b in edges if b == name]
        succs = [b for a, b in edges if a == name]
        src = preds[0] if len(preds) == 1 else None
        after = [n for n in ([src] if src else []) if isinstance(nodes.get(n), G.Affine)
                 and [b for a, b in edges if a == n] == [name]]
        nxt = succs[0] if len(succs) == 1 else None
        while nxt is not None and isinstance(nodes.get(nxt), G.Flatten):
            nxt_succ = [b for a, b in edges if a == nxt]
            nxt = nxt_succ[0] if len(nxt_succ) == 1 else None
        if after:
            op = nodes[after[0]]
            w = np.asarray(op.weight)
            if steps.size not in (1, w.shape[0]):
                raise ValueError(f"NIR node {name!r} (Delay): {steps.size} delays after {after[0]!r}, which has "
                                 f"{w.shape[0]} outputs")
            d = np.broadcast_to(steps.reshape(-1, 1) if steps.size > 1 else steps, w.shape)
            target = after[0]
        elif nxt is not None and isinstance(nodes.get(nxt), G.Affine):
            op = nodes[nxt]
            w = np.asarray(op.weight)
            if steps.size not in (1, w.shape[1]):
                raise ValueError(f"NIR node {name!r} (Delay): {steps.size} delays before {nxt!r}, which has "
                                 f"{w.shape[1]} inputs")
            d = np.broadcast_to(steps.reshape(1, -1) if steps.size > 1 else steps, w.shape)
            target = nxt
        else:
            raise ValueError(f"NIR node {name!r} (Delay) must sit right after or right before one Affine/Linear node "
                             "(Loihi 2 delays dense synapses only: Lava's DelayDense; there is no delayed convolution)")
        total = d if op.delay is None else op.delay + d
        nodes[target] = dataclasses.replace(op, delay=np.ascontiguousarray(total, dtype=np.int64))
        edges = [(a, b) for a, b in edges if b != name and a != name] + [(a, b) for a in preds for b in succs]
        del nodes[name]
        notes.append(f"NIR node {name!r} (Delay): folded into {target!r} as per-synapse delays of "
                     f"{int(d.min())}..{int(d.max())} steps")
    return nodes, edges


def _conv_then_pool(conv, k: int, factor: float = 1.0):
    """``conv`` followed by ``k x k`` sum pooling (times ``factor``; ``1/k**2`` for average pooling)
    as ONE convolution, exactly: kernel ``(k - 1) s + kh`` (``s`` the stride), stride ``s k``, same
    padding, ``K[o, c, i s + u, j s + v] += W[o, c, u, v]`` for ``i, j < k``; its output size is
    the pooled one (``floor((floor((H + 2p - kh)/s) + 1)/k)``)."""
    w = np.asarray(conv.weight, dtype=np.float64)
    (sy, sx), (py, px) = conv.stride, conv.padding
    o, c, kh, kw = w.shape
    kernel = np.zeros((o, c, (k - 1) * sy + kh, (k - 1) * sx + kw))
    for i in range(k):
        for j in range(k):
            kernel[:, :, i * sy:i * sy + kh, j * sx:j * sx + kw] += w
    return G.FloatConv2d(kernel * factor, (sy * k, sx * k), (py, px))


def _free_name(name: str, nodes) -> str:
    """``name``, or ``name.1``, ``name.2``, ... if a node has it."""
    k, free = 0, name
    while free in nodes:
        k += 1
        free = f"{name}.{k}"
    return free


def _operator_chain(op_name, nodes, preds) -> list:
    """The synaptic operators feeding ``op_name`` without a neuron between them, first to last."""
    chain = [op_name]
    while len(preds[chain[0]]) == 1 and type(nodes[preds[chain[0]][0]]) in G.FLOAT_OPERATORS.values():
        chain.insert(0, preds[chain[0]][0])
    return chain


def _bias_through(bias, ops, names, nodes, preds, shapes) -> np.ndarray:
    """A synaptic bias of ``ops[0]`` (per output, per channel or shared) as the constant input it
    makes at the end of the chain ``ops`` (Flatten, SumPool2d, Affine, FloatConv2d applied to it, in
    float64); ``names`` are the operators' node names. The last op may be a pool already in its
    convolution form."""
    shape = _try_shape(names[0], nodes, preds, shapes)
    b = _per_output(bias, ops[0], shape).reshape(shape)
    for op, name in zip(ops[1:], names[1:]):
        if isinstance(op, G.Flatten):
            b = b.reshape(-1)
        elif isinstance(op, G.Affine):
            b = np.asarray(op.weight, dtype=np.float64) @ b.reshape(-1)
        elif isinstance(op, G.SumPool2d):
            k = int(op.kernel)
            c, h, w = b.shape
            b = b[:, :h // k * k, :w // k * k].reshape(c, h // k, k, w // k, k).sum(axis=(2, 4))
        else:  # FloatConv2d: cross-correlation of the bias map
            w = np.asarray(op.weight, dtype=np.float64)
            (sy, sx), (py, px) = op.stride, op.padding
            x = np.pad(b.reshape(w.shape[1], *b.shape[-2:]), ((0, 0), (py, py), (px, px)))
            win = np.lib.stride_tricks.sliding_window_view(x, w.shape[2:], axis=(1, 2))[:, ::sy, ::sx]
            b = np.einsum("chwyx,ocyx->ohw", win, w)
    return b


def _per_output(bias, op, out_shape) -> np.ndarray:
    """A synaptic bias per output neuron (per channel for a convolution)."""
    b = np.asarray(bias, dtype=np.float64).reshape(-1)
    n = math.prod(out_shape)
    if b.size == n:
        return b
    if isinstance(op, G.FloatConv2d) and len(out_shape) == 3 and b.size == out_shape[0]:
        return np.repeat(b, n // out_shape[0])
    if b.size == 1:
        return np.full(n, b[0])
    raise ValueError(f"a bias of {b.size} values does not fit {out_shape} outputs")


def _scale_rows(op, gain, name, out_shape=None):
    """``op`` with its outputs multiplied by ``gain`` (scalar, per output, or per channel for convs)."""
    g = np.asarray(gain, dtype=np.float64).reshape(-1)
    w = np.asarray(op.weight, dtype=np.float64)
    if g.size == 1:
        return dataclasses.replace(op, weight=w * g[0])
    if isinstance(op, G.Affine):
        if g.size != w.shape[0]:
            raise ValueError(f"NIR node {name!r}: a gain of {g.size} values for {w.shape[0]} outputs")
        return dataclasses.replace(op, weight=w * g[:, None])
    c = w.shape[0]
    per = g.reshape(c, -1) if g.size % c == 0 else None
    if per is None or not np.all(per == per[:, :1]):
        raise ValueError(f"NIR node {name!r}: an input gain that differs within a channel cannot be folded into a "
                         "convolution")
    return dataclasses.replace(op, weight=w * per[:, 0][:, None, None, None])


def _neuron_shapes(nodes, preds, raw, kinds) -> dict:
    """Shapes of the neuron nodes: from a feeding operator chain that starts at an input or at a
    neuron node of known shape (recurrent inputs resolve once their group is known), else from
    the node's own ``input_type``."""
    shapes = {}
    todo = [n for n in nodes if nodes[n] is None]
    while todo:
        progress = False
        for name in list(todo):
            for src in preds[name]:
                try:
                    shape = _try_shape(src, nodes, preds, shapes)
                except KeyError:
                    continue
                shapes[name] = shape
                break
            if name not in shapes:
                t = getattr(raw[name], "input_type", None) or {}
                if isinstance(t, dict) and "input" in t and np.asarray(t["input"]).size:
                    shapes[name] = _drop_batch(tuple(int(v) for v in np.asarray(t["input"]).ravel()))
            if name in shapes:
                todo.remove(name)
                progress = True
        if not progress:
            raise ValueError(f"NIR node {todo[0]!r}: its shape cannot be inferred (no input chain of known shape)")
    return shapes


def _try_shape(name, nodes, preds, shapes, trail=()):
    """Output shape of a node: inputs and neuron nodes of known shape, operators by propagation;
    ``KeyError`` while the chain starts at a neuron node whose shape is not known yet."""
    if name in shapes:
        return shapes[name]
    node = nodes[name]
    if isinstance(node, G.Input):
        return node.shape
    if node is None or name in trail:
        raise KeyError(name)
    if len(preds[name]) != 1:
        raise ValueError(f"NIR node {name!r} has {len(preds[name])} inputs; an operator takes exactly one")
    in_shape = _try_shape(preds[name][0], nodes, preds, shapes, trail + (name,))
    return tuple(node.validate(f"NIR node {name!r}", in_shape))


def _float_neurons(node, name, shape, dt) -> tuple:
    """A NIR neuron node as per-step float neurons: ``(FloatNeurons, (input gain, decay_syn))``."""
    kind = type(node).__name__
    f = lambda field: _per_neuron(getattr(node, field), shape, name, field)  # noqa: E731
    v_reset = f("v_reset") if getattr(node, "v_reset", None) is not None else np.zeros(shape)
    if np.any(v_reset != 0):
        raise ValueError(f"NIR node {name!r}: v_reset = {float(v_reset.flat[np.argmax(v_reset != 0)]):g}; "
                         "Loihi resets the membrane to 0 only")
    v_th = f("v_threshold")
    if kind != "IF" and dt is None:
        raise ValueError(f"NIR node {name!r} ({kind}) has time constants but the file does not say its time step: "
                         "pass --dt (seconds per step)")
    if kind == "IF":
        decay_syn, beta, gain, bias_v = np.zeros(shape), np.ones(shape), f("r"), np.zeros(shape)
    elif kind == "LIF":
        tau = f("tau")
        beta = decay_tau_euler(tau, dt, f"NIR node {name!r}")
        gain = f("r") * dt / tau
        bias_v = dt / tau * f("v_leak")
        decay_syn = np.zeros(shape)
    else:  # CubaLIF
        tau_syn, tau_mem = f("tau_syn"), f("tau_mem")
        decay_syn = decay_tau_euler(tau_syn, dt, f"NIR node {name!r}")
        beta = decay_tau_euler(tau_mem, dt, f"NIR node {name!r}")
        gain = f("w_in") * dt / tau_syn * f("r") * dt / tau_mem
        bias_v = dt / tau_mem * f("v_leak")
    group = G.FloatNeurons(shape, _compact(decay_syn, shape), _compact(beta, shape), _compact(v_th, shape),
                           _compact(bias_v, shape))
    return group, (np.asarray(gain, dtype=np.float64), np.asarray(decay_syn, dtype=np.float64))


def _compact(a, shape) -> np.ndarray:
    """Shared value -> scalar; constant per channel -> ``(C,)``; otherwise per neuron (flat)."""
    a = np.asarray(a, dtype=np.float64).reshape(shape)
    if np.all(a == a.flat[0]):
        return np.asarray(a.flat[0])
    if len(shape) == 3 and np.all(a == a[:, :1, :1]):
        return a[:, 0, 0].copy()
    return a.reshape(-1)


def read_nir(path, dt: float | None = None, spec=None, convention: str = "nir") -> tuple:
    """Integer graph from a NIR file: exact from our metadata, else quantized from the float graph
    (after ``apply_convention`` for files from exporters that deviate from NIR).

    Returns ``(graph, info)``: an ``IntGraph`` and ``info['source']`` ('spikeport metadata' or 'float
    parameters'), ``info['dt']`` and, for float graphs, the quantization report, the notes and the
    float graph (``info['float_graph']``).
    """
    from .quantize import QuantSpec, quantize_graph

    graph = read_graph(path)
    file_dt = (graph.metadata or {}).get(DT_KEY)
    use_dt = float(dt if dt is not None else file_dt) if (dt is not None or file_dt is not None) else None
    try:  # what the file holds is refused naming the node; say which file too
        exact = _exact_from_metadata(graph, path, use_dt)
        if exact is not None:
            return exact, {"source": "spikeport metadata", "dt": use_dt}
        notes = convention_notes(convention)
        fg = nir_to_float_graph(apply_convention(graph, convention, use_dt or 1.0), use_dt, notes)
        net, report = quantize_graph(fg, spec or QuantSpec(), meta={"source": str(path)})
    except ValueError as err:
        raise ValueError(str(err) if str(path) in str(err) else f"{path}: {err}") from None
    return net, {"source": "float parameters", "dt": use_dt, "quantization": report, "notes": notes,
                 "float_graph": fg}


def _exact_from_metadata(graph, path, dt):
    """Our own files: the integer record from the nodes' metadata, or None for other tools' files."""
    nodes, edges = flatten_graph(graph)
    weighted = [n for n, node in nodes.items() if type(node).__name__ in ("Affine", "Linear", "Conv2d", "SumPool2d",
                                                                            "AvgPool2d") + _NEURONS]
    metas = {n: _meta(nodes[n]) for n in weighted}
    if not weighted or any(m is None for m in metas.values()):
        return None
    if all(m.get("format") == FORMAT_GRAPH for m in metas.values()):
        return _graph_from_metadata(nodes, edges, metas, path, dt)
    # format 1 (training runs): synapse and neuron metadata alternate along the chain; a recurrent
    # layer's own weights hang off its neuron node (metadata "recurrent": true)
    recurrent = {n for n, m in metas.items() if m.get("recurrent")}
    order = [n for n in _chain_order(nodes, [e for e in edges if recurrent.isdisjoint(e)]) if n in metas]
    syn = [metas[n] for n in order if type(nodes[n]).__name__ not in _NEURONS]
    neu = [metas[n] for n in order if type(nodes[n]).__name__ in _NEURONS]
    layers = [Layer(_synapse_from_meta(s), Neurons(**{f: _unpack(n[f]) for f in Neurons.FIELDS}), name=f"layer{k}")
              for k, (s, n) in enumerate(zip(syn, neu))]
    raw_in = _drop_batch(_input_shape(next(node for node in nodes.values() if type(node).__name__ == "Input")))
    net = IntNetwork(raw_in, tuple(layers), dt=dt or 1.0, meta={"source": str(path)})
    graph = G.IntGraph.from_chain(net)
    if not recurrent:
        return graph
    neuron_layer = {n: k for k, n in enumerate(n for n in order if type(nodes[n]).__name__ in _NEURONS)}
    g_nodes, g_edges = dict(graph.nodes), list(graph.edges)
    for r in sorted(recurrent):
        (src,) = [a for a, b in edges if b == r]
        k = neuron_layer[src]
        g_nodes[f"layer{k}_rec"] = _synapse_from_meta(metas[r])
        g_edges += [(f"layer{k}", f"layer{k}_rec"), (f"layer{k}_rec", f"layer{k}")]
    return G.IntGraph(g_nodes, g_edges, graph.dt, graph.meta)


def _graph_from_metadata(nodes, edges, metas, path, dt):
    """An ``IntGraph`` from a file ``graph_to_nir`` wrote (every node carries its record)."""
    all_meta = {n: _meta(node) for n, node in nodes.items()}
    if any(m is None or m.get("format") != FORMAT_GRAPH for m in all_meta.values()):
        missing = next(n for n, m in all_meta.items() if m is None or m.get("format") != FORMAT_GRAPH)
        raise ValueError(f"{path}: node {missing!r} lacks the spikeport record the other nodes carry")
    rebuilt = {}
    derived = {n for n, m in all_meta.items() if isinstance(m.get("node"), dict) and m["node"].get("kind") == "derived"}
    orig = [tuple(e) for e in edges]
    edges = [(a, b) for a, b in orig if a not in derived and b not in derived]
    for name in derived:  # a Delay / per-delay Linear the writer added: its record's node has them all
        of = all_meta[name]["node"].get("of")
        if of not in all_meta or of in derived:
            raise ValueError(f"{path}: node {name!r} is derived from {of!r}, which has no record")
        edges += [(of, b) for a, b in orig if a == name and b not in derived and (of, b) not in edges]
    for name, m in all_meta.items():
        if name in derived:
            continue
        try:
            arrays = {k: _unpack(v) for k, v in m["arrays"].items()}
            rebuilt[name] = G.node_from_dict(m["node"], arrays, f"{path}: node {name!r}")
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path}: node {name!r} has a damaged spikeport record ({err})") from None
    return G.IntGraph(rebuilt, edges, dt or 1.0, {"source": str(path)})


def nir_to_model(graph, dt: float | None, surrogate=None):
    """A float torch ``SpikingNetwork`` equivalent to a NIR chain (the float twin, for comparisons
    with the library that wrote the file); returns it and the reader's notes. Built from the float
    graph (``nir_to_float_graph``): one conversion of the file's parameters. Its CUBA neurons have
    a membrane bias only, so a synaptic bias into a current is mapped to its steady state here."""
    notes = []
    fg = nir_to_float_graph(graph, dt, notes, current_bias="membrane")
    return float_graph_to_model(fg, surrogate), notes


def float_graph_to_model(fg, surrogate=None):
    """A torch ``SpikingNetwork`` of a feed-forward chain ``FloatGraph`` (Affine, FloatConv2d,
    SumPool2d, Flatten, FloatNeurons)."""
    import torch

    from spikeport.train.layers import Conv2d as TConv2d
    from spikeport.train.layers import Flatten as TFlatten
    from spikeport.train.layers import Linear as TLinear
    from spikeport.train.layers import Pool2d
    from spikeport.train.network import SpikingNetwork
    from spikeport.train.neurons import CUBA, LIF
    from spikeport.train.surrogates import Surrogate

    order = _chain_order(fg.nodes, fg.edges)
    if len(order) != len(fg.nodes) or len(fg.edges) != len(fg.nodes) - 1:
        raise ValueError("the torch float twin is built for feed-forward chains only (this graph has recurrence, "
                         "merges or branches)")
    surrogate = surrogate or Surrogate()
    shape = fg.shapes[order[0]]
    layers, shapes = [], [shape]
    for name in order[1:-1]:
        node = fg.nodes[name]
        if isinstance(node, G.Flatten):
            layers.append(TFlatten())
        elif isinstance(node, G.Affine):
            if node.delay is not None and np.any(node.delay):
                raise ValueError(f"node {name!r}: the torch float twin has no synaptic delays (the integer graph "
                                 "and Lava run them)")
            w = np.asarray(node.weight)
            if len(shape) > 1:
                layers.append(TFlatten())
                shapes.append((math.prod(shape),))
            lin = TLinear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(torch.as_tensor(w))
            layers.append(lin)
        elif isinstance(node, G.FloatConv2d):
            w = np.asarray(node.weight)
            conv = TConv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=tuple(node.stride),
                           padding=tuple(node.padding))
            with torch.no_grad():
                conv.weight.copy_(torch.as_tensor(w))
            layers.append(conv)
        elif isinstance(node, G.SumPool2d):
            layers.append(Pool2d(int(node.kernel), "sum"))
        else:  # FloatNeurons
            kw = dict(v_threshold=1.0, surrogate=surrogate, per_neuron=True)
            current = np.any(np.asarray(node.decay_syn) != 0)
            mod = CUBA(node.shape, **kw) if current else LIF(node.shape, **kw)
            values = {"decay_mem": node.decay_mem, "v_threshold": node.v_threshold, "bias": node.bias}
            if current:
                values["decay_syn"] = node.decay_syn
            for key, val in values.items():
                a = np.asarray(val, dtype=np.float64)
                if a.size == node.shape[0] and len(node.shape) == 3 and a.size > 1:
                    a = a.reshape(-1, 1, 1)
                elif a.size > 1:
                    a = a.reshape(node.shape)
                getattr(mod, key).data = torch.as_tensor(a, dtype=torch.float32)
            layers.append(mod)
            continue
        shape = fg.shapes[name]
        shapes.append(shape)
    return SpikingNetwork("nir", shapes[0], layers, shapes)


def _chain_order(nodes, edges) -> list:
    succ = {a: b for a, b in edges}
    cur = next(n for n, node in nodes.items() if type(node).__name__ == "Input")
    order, seen = [], set()
    while cur is not None and cur not in seen:
        seen.add(cur)
        order.append(cur)
        cur = succ.get(cur)
    return order


def convention_notes(convention: str) -> list:
    """What a library's own simulation does that its NIR file does not say (printed with the result)."""
    return {
        "nir": [],
        "norse-1.1": ["norse-1.1: tau read as dt * tau (norse issue #411) and LIFCell's input as w_in = tau_syn/dt"],
        "snntorch": ["snntorch: snnTorch resets by subtraction by default (reset_mechanism='subtract', the step after "
                     "a spike), and its Synaptic, RLeaky and RSynaptic with reset_mechanism='zero' and the default "
                     "reset_delay=True zero the membrane computed the step after a spike, input included; the file "
                     "says v_reset = 0 and Loihi resets to zero at the spike, so outputs differ unless the network "
                     "used Leaky(reset_mechanism='zero') or reset_delay=False (tests/test_nir_peer_graphs.py measures "
                     "both)"],
        "sinabs": ["sinabs: sinabs' IF resets by subtraction and can emit several spikes per step (MultiSpike); "
                   "Loihi emits at most one spike per step and resets to zero: outputs differ where the membrane "
                   "exceeds twice the threshold or keeps a residue after a spike"],
    }[convention]
