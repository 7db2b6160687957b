"""NeuroBench's metrics for an ``IntGraph`` and a recorded run, computed as NeuroBench 2.3.0 defines them.

numpy only. The definitions are ported from the ``neurobench`` 2.3.0 package (files under
``neurobench/``, lines of that release) and applied to the integer graph, node by node, as NeuroBench
would see the same network written as an snnTorch model: each weighted operator (``Dense``,
``Conv2d``) is a connection layer (``nn.Linear``, ``nn.Conv2d``), each neuron group (an ``Input``
with neurons included) a spiking activation layer, ``SumPool2d`` and ``Flatten`` are neither
(``blocks/layer.py`` 3-12 lists the connection layers: Linear, Conv1d/2d/3d, RNN; pooling is none).

Footprint (``metrics/static/footprint.py`` 17-25)
    NeuroBench: bytes of every parameter and buffer of the torch module. Here two figures:
    ``footprint_bytes`` counts the integer graph in its Loihi formats (``sim.formats``): each
    weight 9 bits (``WEIGHT``: 8 magnitude bits and a sign), each ``weight_exp`` 4 bits, each
    synaptic delay 6 bits, and the neuron registers ``du``, ``dv`` (12), ``vth`` (17),
    ``bias_mant`` (13), ``bias_exp`` (3) as many times as they are stored (shared, per channel or
    per neuron); bits summed, rounded up to whole bytes. ``float32_footprint_bytes`` is the float
    mirror in float32 (4 bytes a value): the same weights, and per group its four parameters
    ``decay_syn``, ``decay_mem``, ``v_threshold``, ``bias`` as many times as the registers they
    become (``du``, ``dv``, ``vth``, ``bias_mant``). The neuron state (``u``, ``v``: 24 bits
    each per neuron) is reported apart as ``state_bytes``: NeuroBench runs Footprint before any
    data (``benchmarks/benchmark.py`` 100), when snnTorch's ``mem`` buffer is still empty, so its
    figure holds no state.
Parameter count (``metrics/static/parameter_count.py``)
    Synaptic weights (biases live in the neuron groups here; snnTorch's ``beta`` and
    ``threshold`` are buffers, not parameters, unless learnable).
Connection sparsity (``metrics/static/connection_sparsity.py`` 46-49, 116)
    Zero weights over all weights of the connection layers, rounded to 4 decimals. Weights are
    the effective ones the chip computes with (``Dense.effective_weight``: Lava's clipping and
    truncation can zero a weight).
Activation sparsity (``metrics/workload/activation_sparsity.py`` 44-54)
    Zero outputs over all outputs of every activation layer, all steps and samples. (Per batch,
    weighted by the batch's share of the data, ``metrics/manager/workload_manager.py`` 149:
    equal to the ratio over everything, as every sample has the same number of outputs.)
    Per group: ``ActivationSparsityByLayer``.
Synaptic operations (``metrics/workload/synaptic_operations.py`` 58-94,
``metrics/utils/layers/macs.py`` 7-21 and 178-198, ``metrics/utils/layers/input.py`` 31-60)
    Every call of a connection layer (one per time step and batch) counts, with weights and
    inputs made binary (nonzero -> 1; bias excluded): effective operations = pairs (input,
    weight) both nonzero that an output sums; dense = the same with every weight and input set
    to 1 (so a convolution's padding, which stays 0, is not counted). A call whose input values
    are all in {-1, 0, 1} is spiking: its effective operations are ACs, otherwise MACs (a
    ``SumPool2d`` before a ``Conv2d`` makes counts > 1, so MACs; so do graded payloads). The
    test is per call, i.e. per time step over the whole batch: ``batch_size`` says how many
    samples NeuroBench would see in one call (1: per sample). All three are per sample.
    Each operator's input at step ``t`` is what the float network feeds it at ``t``: its source's
    spikes of step ``t`` (through any ``SumPool2d``/``Flatten`` before it), or of step ``t - 1``
    (nothing at ``t = 0``) for a recurrent operator (source and target in one strongly connected
    component; snnTorch's ``RLeaky`` applies its recurrent ``Linear`` to the previous step's
    spikes at every step). Synaptic delays do not change the count (each spike is counted once,
    at the step its source sends it).
Membrane updates (``metrics/workload/membrane_updates.py`` 41-56, 70-75; ``hooks/neuron.py``
53-54, 79-80)
    Per activation layer, every neuron at the first step of a batch, then the neurons whose
    membrane after the step differs from the one before it; summed, divided by the samples. Here
    from the recorded ``v`` (after the reset, as snnTorch's ``mem`` is with
    ``reset_delay=False``); with ``batch_size`` samples per call the first-step count is the same.

The figures describe the recorded run as it was simulated (its timing): under ``hardware``
timing every layer starts one step later than in the float network, so spikes of the last steps
are not in the record.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import formats as F
from .graph import Flatten, IntGraph, as_graph, is_group
from .network import Conv2d, Dense, Neurons, SumPool2d

NEUROBENCH_VERSION = "2.3.0"
FLOAT_BYTES = 4  # float32
CHUNK_ELEMENTS = 2 ** 22  # values of an operator's input handled at once (bounds the memory used)
# bits of each stored neuron register (sim.formats), and the float parameter each becomes
REGISTER_BITS = {"du": F.DU.bits, "dv": F.DV.bits, "vth": F.VTH.bits, "bias_mant": F.BIAS_MANT.bits,
                 "bias_exp": F.BIAS_EXP.bits}
FLOAT_PARAMETERS = {"du": "decay_syn", "dv": "decay_mem", "vth": "v_threshold", "bias_mant": "bias"}


@dataclass
class OperatorCounts:
    """One connection layer (a ``Dense`` or ``Conv2d`` node): totals over all samples."""

    name: str
    kind: str
    source: str
    recurrent: bool
    weights: int
    zero_weights: int
    footprint_bits: int
    dense: int = 0
    acs: int = 0
    macs: int = 0


@dataclass
class GroupCounts:
    """One activation layer (a neuron group): totals over all samples."""

    name: str
    neurons: int
    outputs: int = 0
    nonzero: int = 0
    membrane_updates: int = 0
    footprint_bits: int = 0


@dataclass
class Metrics:
    """NeuroBench's metrics of one recorded run; ``summary()`` is the JSON form (per sample)."""

    samples: int
    steps: int
    batch_size: int
    operators: list
    groups: list
    state_bits: int
    float32_values: int
    notes: list = field(default_factory=list)

    @property
    def footprint_bytes(self) -> int:
        return math.ceil((sum(o.footprint_bits for o in self.operators) +
                          sum(g.footprint_bits for g in self.groups)) / 8)

    @property
    def float32_footprint_bytes(self) -> int:
        return FLOAT_BYTES * self.float32_values

    @property
    def parameter_count(self) -> int:
        return sum(o.weights for o in self.operators)

    @property
    def connection_sparsity(self) -> float:
        """Rounded to 4 decimals as NeuroBench (connection_sparsity.py 116); 0.0 without weights."""
        total = self.parameter_count
        return round(sum(o.zero_weights for o in self.operators) / total, 4) if total else 0.0

    @property
    def activation_sparsity(self) -> float:
        total = sum(g.outputs for g in self.groups)
        return (total - sum(g.nonzero for g in self.groups)) / total if total else 0.0

    def _per_sample(self, value) -> float:
        return value / self.samples if self.samples else 0.0

    @property
    def synaptic_operations(self) -> dict:
        """Per sample, NeuroBench's keys (synaptic_operations.py 92-95)."""
        return {"Effective_MACs": self._per_sample(sum(o.macs for o in self.operators)),
                "Effective_ACs": self._per_sample(sum(o.acs for o in self.operators)),
                "Dense": self._per_sample(sum(o.dense for o in self.operators))}

    @property
    def membrane_updates(self) -> float:
        return self._per_sample(sum(g.membrane_updates for g in self.groups))

    def summary(self) -> dict:
        per = self._per_sample
        return {
            "definitions": f"neurobench {NEUROBENCH_VERSION} (ported in spikeport.sim.metrics)",
            "samples": self.samples, "steps": self.steps, "batch_size": self.batch_size,
            "footprint_bytes": self.footprint_bytes,
            "float32_footprint_bytes": self.float32_footprint_bytes,
            "state_bytes": math.ceil(self.state_bits / 8),
            "parameter_count": self.parameter_count,
            "connection_sparsity": self.connection_sparsity,
            "activation_sparsity": self.activation_sparsity,
            "synaptic_operations": self.synaptic_operations,
            "membrane_updates": self.membrane_updates,
            "operators": [{"name": o.name, "kind": o.kind, "source": o.source, "recurrent": o.recurrent,
                           "weights": o.weights, "connection_sparsity": round(o.zero_weights / o.weights, 4)
                           if o.weights else 0.0, "dense": per(o.dense), "effective_acs": per(o.acs),
                           "effective_macs": per(o.macs)} for o in self.operators],
            "groups": [{"name": g.name, "neurons": g.neurons,
                        "activation_sparsity": (g.outputs - g.nonzero) / g.outputs if g.outputs else 0.0,
                        "spikes": per(g.nonzero), "membrane_updates": per(g.membrane_updates)}
                       for g in self.groups],
            "notes": list(self.notes),
        }


# --- static structure ------------------------------------------------------------------------------

def _register_bits(neurons: Neurons) -> int:
    return sum(np.size(getattr(neurons, name)) * bits for name, bits in REGISTER_BITS.items())


def _float_values(neurons: Neurons) -> int:
    return sum(np.size(getattr(neurons, name)) for name in FLOAT_PARAMETERS)


def _operator_bits(op) -> int:
    bits = np.size(op.weight) * F.WEIGHT.bits + F.WEIGHT_EXP.bits
    if isinstance(op, Dense) and op.delay is not None:
        bits += np.size(op.delay) * F.DELAY.bits
    return int(bits)


def _effective_weight(op) -> np.ndarray:
    return np.asarray(op.effective_weight())


def _fan_out(op, in_shape: tuple, binary_weight: np.ndarray) -> np.ndarray:
    """Per input element (flat, C order): how many (output, weight) pairs of ``binary_weight`` read
    it, i.e. the sum over outputs of the operator applied to a one-hot input (its adjoint on ones)."""
    if isinstance(op, Dense):
        return binary_weight.sum(axis=0).astype(np.int64)  # (in,)
    c, h, w = in_shape
    kh, kw = binary_weight.shape[2:]
    (sh, sw), (ph, pw) = tuple(op.stride), tuple(op.padding)
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    per_tap = binary_weight.sum(axis=0).astype(np.int64)  # (C_in, kh, kw): outputs channels reading a tap
    fan = np.zeros((c, h + 2 * ph, w + 2 * pw), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            fan[:, i:i + sh * oh:sh, j:j + sw * ow:sw] += per_tap[:, i, j][:, None, None]
    return fan[:, ph:ph + h, pw:pw + w].reshape(-1)  # padding reads zeros: never counted


def _source_chain(graph: IntGraph, name: str) -> tuple:
    """``(source group or input, [pooling/flatten nodes from the source to the operator])``."""
    chain, cur = [], graph.predecessors(name)[0]
    while not is_group(graph.nodes[cur]):
        node = graph.nodes[cur]
        if not isinstance(node, (SumPool2d, Flatten)):
            raise ValueError(f"node {name!r}: reads weighted operator {cur!r} without a neuron group between them")
        chain.insert(0, cur)
        cur = graph.predecessors(cur)[0]
    return cur, chain


def _targets(graph: IntGraph, name: str) -> set:
    """The groups an operator node's output reaches through further pooling/flatten nodes."""
    out, todo = set(), [name]
    while todo:
        cur = todo.pop()
        for a, b in graph.edges:
            if a == cur:
                (out.add(b) if is_group(graph.nodes[b]) else todo.append(b))
    return out


def _pool(x: np.ndarray, in_shape: tuple, k: int) -> np.ndarray:
    """``SumPool2d(k)`` of ``(M, C*H*W)`` values -> ``(M, C*oh*ow)`` (exact sums, remainder dropped)."""
    m = x.shape[0]
    c, h, w = in_shape
    oh, ow = h // k, w // k
    x = x.reshape(m, c, h, w)[:, :, :oh * k, :ow * k].astype(np.int64)
    return x.reshape(m, c, oh, k, ow, k).sum(axis=(3, 5)).reshape(m, -1)


def _operator_input(graph: IntGraph, values: np.ndarray, src: str, chain: list, recurrent: bool, t0: int,
                    t1: int) -> np.ndarray:
    """What the operator reads at steps ``t0 .. t1 - 1``: ``(B, t1 - t0, N)`` from the source's
    ``(B, T, N_src)`` values through the pooling and flatten nodes of ``chain``; a recurrent operator
    reads the previous step's (nothing at t = 0)."""
    if recurrent:
        seq = values[:, max(t0 - 1, 0):t1 - 1]
        if t0 == 0:
            seq = np.concatenate([np.zeros_like(values[:, :1]), seq], axis=1)
    else:
        seq = values[:, t0:t1]
    B, t = seq.shape[:2]
    seq, shape = np.asarray(seq).reshape(B * t, -1), graph.shapes[src]
    for n in chain:
        if isinstance(graph.nodes[n], SumPool2d):
            seq = _pool(seq, shape, int(graph.nodes[n].kernel))
        shape = graph.shapes[n]
    return seq.reshape(B, t, -1)


def _blocks(S: int, T: int, n: int, batch_size: int):
    """``(samples, steps)`` ranges covering ``S x T`` in whole batches of ``batch_size`` samples,
    each holding about ``CHUNK_ELEMENTS`` values of ``n`` (more only when one step of one batch does)."""
    per_batch = batch_size * T * max(n, 1)
    if per_batch <= CHUNK_ELEMENTS:
        block = batch_size * max(1, CHUNK_ELEMENTS // per_batch)
        return [((s, min(s + block, S)), (0, T)) for s in range(0, S, block)]
    steps = max(1, CHUNK_ELEMENTS // (batch_size * max(n, 1)))
    return [((s, min(s + batch_size, S)), (t, min(t + steps, T))) for s in range(0, S, batch_size)
            for t in range(0, T, steps)]


# --- the run ---------------------------------------------------------------------------------------

def _recorded(graph: IntGraph, rec) -> tuple:
    """``(spikes, v)`` dicts group -> ``(S, T, N)`` from a ``GraphResult`` or a chain's ``SimResult``."""
    if rec is None or rec.spikes is None:
        raise ValueError("the metrics need a recorded run (simulate(..., record=True))")
    if isinstance(rec.spikes, dict):
        spikes, v = rec.spikes, rec.v or {}
    else:  # SimResult of a chain: layers in order, named as IntGraph.from_chain names them
        names = [f"layer{i}" for i in range(len(rec.spikes))]
        spikes, v = dict(zip(names, rec.spikes)), dict(zip(names, rec.v or []))
    shapes = set()
    for n in graph.groups():
        for what, d in (("spikes", spikes), ("v", v)):
            if n not in d:
                raise ValueError(f"the recording has no {what} of group {n!r} (record=True records both)")
            a = np.asarray(d[n])
            if a.ndim != 3 or a.shape[2] != graph.size(n):
                raise ValueError(f"recorded {what} of group {n!r} have shape {a.shape}, expected (S, T, "
                                 f"{graph.size(n)})")
            shapes.add(a.shape[:2])
    if len(shapes) > 1:
        raise ValueError(f"recorded groups disagree on (samples, steps): {sorted(shapes)}")
    return spikes, v, (shapes.pop() if shapes else None)


def neurobench_metrics(net, rec, x=None, batch_size: int = 1) -> Metrics:
    """NeuroBench's metrics of ``net`` (an ``IntGraph`` or a chain ``IntNetwork``) for a recorded run.

    Parameters
    ----------
    net : IntGraph or IntNetwork
    rec : GraphResult or SimResult
        ``simulate(net, x, record=True)``: spikes and ``v`` of every group.
    x : array or dict, optional
        The run's input (as given to ``simulate``); needed when an operator reads an input
        without neurons (its values are that operator's input).
    batch_size : int
        Samples per NeuroBench call (its DataLoader batch): decides, per step and batch, whether
        an operator's calls are ACs or MACs. 1: per sample.

    Returns
    -------
    Metrics
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    graph = as_graph(net)
    for name in graph.groups():  # the metrics read LIF registers (du, dv, vth, bias): other kinds refuse
        kind = type(graph.neurons(name))
        if kind is not Neurons:
            raise ValueError(f"NeuroBench metrics are computed for LIF/CUBA groups (Neurons) only; group {name!r} "
                             f"is {kind.__name__}")
    spikes, v, st = _recorded(graph, rec)
    xs = {}
    if x is not None:
        from .simulator import prepare_inputs

        xs, _, _ = prepare_inputs(graph, x, steps=None if st is None else st[1])
        st = st or next(iter(xs.values())).shape[:2]
    if st is None:
        raise ValueError("no recorded group and no input: nothing to measure")
    S, T = st
    values = {**{n: a for n, a in xs.items() if graph.neurons(n) is None}, **spikes}
    comp_of = {n: i for i, comp in enumerate(graph.components()) for n in comp}

    operators = []
    for name, node in graph.nodes.items():
        if not isinstance(node, (Dense, Conv2d)):
            continue
        src, chain = _source_chain(graph, name)
        if src not in values:
            raise ValueError(f"node {name!r} reads input {src!r}: pass the run's input x to measure it")
        recurrent = any(comp_of.get(t) == comp_of[src] for t in _targets(graph, name))
        w = _effective_weight(node)
        counts = OperatorCounts(name, node.kind, src, recurrent, int(w.size), int(np.count_nonzero(w == 0)),
                                _operator_bits(node))
        fan = _fan_out(node, graph.shapes[chain[-1]] if chain else graph.shapes[src], w != 0).astype(np.float64)
        dense_fan = _fan_out(node, graph.shapes[chain[-1]] if chain else graph.shapes[src], np.ones(w.shape, bool))
        counts.dense = int(S * T * dense_fan.sum())
        for (s0, s1), (t0, t1) in _blocks(S, T, np.asarray(values[src]).shape[2], batch_size):
            seq = _operator_input(graph, values[src][s0:s1], src, chain, recurrent, t0, t1)  # (B, t, N)
            per_call = (seq != 0).astype(np.float64) @ fan  # (B, t) effective operations, exact below 2**53
            graded = (seq != 0) & (seq != 1) & (seq != -1)  # input.py 54: a call is spiking iff none of these
            for b in range(0, seq.shape[0], batch_size):
                spiking = ~graded[b:b + batch_size].any(axis=(0, 2))  # (t,) one test per call
                ops = per_call[b:b + batch_size].sum(axis=0)
                counts.acs += int(ops[spiking].sum())
                counts.macs += int(ops[~spiking].sum())
        operators.append(counts)

    groups, state_bits, float_values = [], 0, sum(o.weights for o in operators)
    for n in graph.groups():
        s, vv = np.asarray(spikes[n]), np.asarray(v[n])
        g = GroupCounts(n, graph.size(n), outputs=int(s.size), nonzero=int(np.count_nonzero(s)),
                        footprint_bits=_register_bits(graph.neurons(n)))
        if T:
            g.membrane_updates = S * graph.size(n)  # every neuron at the first step
            for (s0, s1), (t0, t1) in _blocks(S, T, graph.size(n), 1):
                t0 = max(t0, 1)  # then each step against the one before it
                g.membrane_updates += int(np.count_nonzero(vv[s0:s1, t0:t1] != vv[s0:s1, t0 - 1:t1 - 1]))
        groups.append(g)
        state_bits += 2 * F.UV_BITS * graph.size(n)
        float_values += _float_values(graph.neurons(n))
    notes = [f"definitions of neurobench {NEUROBENCH_VERSION}, applied to the recorded integer run",
             "synaptic operations and membrane updates per sample; ACs/MACs decided per step over "
             f"{batch_size} sample(s) per call",
             "footprint_bytes: Loihi register formats (9-bit weights, 4-bit weight_exp, 6-bit delays, neuron "
             "registers as stored); float32_footprint_bytes: the float mirror in float32; state (u, v) apart",
             "SumPool2d and Flatten are no connection layers (as NeuroBench); the chip's own count of synaptic "
             "operations is the traffic model's"]
    return Metrics(S, T, batch_size, operators, groups, state_bits, float_values, notes)
