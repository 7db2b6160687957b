"""ONNX export of one time step of an ``IntNetwork`` chain or of any ``IntGraph`` (``graph_to_onnx``:
recurrence, merges, per-synapse delays, input neurons), integer-exact (int64 throughout).

The exported graph is one step of ``sim.simulator``; stepping it over a sequence reproduces
``simulate`` bit for bit. Per layer ``k`` (``s_-1 = s_in``), with this step's synaptic output
``x_k = syn_k(s_{k-1})`` and the input the neurons receive ``a = a_k`` (``hardware`` timing: the
buffer computed at the previous step) or ``a = x_k`` (``ideal``)::

    u = sign(u) * ((|u| * (4096 - (du + 1))) / 4096)     # decay toward zero
    u = wrap32(u + a * 2**6)                             # Lava adds in int32
    u = u - 2**24 if u > 2**23 else u                    # one conditional 24-bit wrap
    u = u + 2**24 if u <= -2**23 else u
    v = wrap32(sign(v) * ((|v| * (4096 - dv)) / 4096) + u + bias_mant * 2**bias_exp)
    v = clip(v, -(2**23 - 1), 2**23 - 1)
    s_k = v > vth * 2**6;  v = 0 where s_k
    a_k_out = x_k                                        # hardware timing only

    dense    x = floor((s @ W_eff.T) / 2**-weight_exp)   or  s @ (W_eff.T * 2**weight_exp)
    conv     x = wrap24(conv(s, w * 2**weight_exp))      (sum pooling: SumPool2d.as_conv)

``wrapB(x) = ((x + 2**(B-1)) mod 2**B) - 2**(B-1)``; ``W_eff = Dense.effective_weight()`` (Lava's
clipping and low-bit truncation included).

Graph interface (batch dimension ``batch``, layer sizes ``N_k`` flattened in C order)
    inputs   ``s_in`` (batch, N_in) uint8 0/1; per layer ``u_k``, ``v_k`` (batch, N_k) int64 and,
             for ``hardware`` timing, ``a_k`` (batch, N_k) int64
    outputs  per layer ``s_k`` (batch, N_k) uint8, ``u_k_out``, ``v_k_out`` and (``hardware``)
             ``a_k_out``, all int64
    metadata ``spikeport.timing`` and ``spikeport.input_shape`` (JSON list)
Rest is all zeros (``u = v = a = 0``).

Exactness: every tensor is int64 and every op is an integer op; no value is ever held in floating
point. Bounds: ``|u| < 2**31`` after its wraps, ``|v| < 2**23``, ``|u * 4095| < 2**43`` and a dense
sum is at most ``2**15 * N_in`` before ``* 2**6``, so nothing approaches ``2**63`` for
``N_in < 2**40``. The op choices:

- ``MatMul`` on int64 (onnxruntime's CPU kernel supports it) for dense and convolution.
- Convolution is im2col, not ``Conv``: onnxruntime has CPU ``Conv`` kernels for float only (a
  double ``Conv`` is NOT_IMPLEMENTED in 1.23), and float32 is exact only below ``2**24``. The
  channel-last input is padded (``Pad``), one strided ``Slice`` per kernel offset is taken, the
  slices are concatenated on the channel axis and multiplied by the reordered kernel.
- ``Mod`` with ``fmod=0``: for integers the remainder takes the sign of the divisor (the ONNX
  spec), i.e. floor semantics; it implements the wraps and the floor shift
  ``floor(y / 2**e) = (y - (y mod 2**e)) / 2**e``.
- Integer ``Div`` only where its rounding cannot matter (the spec does not fix it for negative
  operands; onnxruntime truncates): an exact multiple (floor shift) or a non-negative dividend
  (decay, ``sign(x) * ((|x| * k) / 4096)`` is Lava's truncation toward zero).
- ``BitShift`` is not used (unsigned types only); shifts are multiplications by powers of two.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from spikeport.sim import formats as F
from spikeport.sim.network import Conv2d, Dense, IntNetwork, SumPool2d
from spikeport.sim.simulator import TIMINGS, SimResult, check_spikes

OPSET = 17
IR_VERSION = 8  # opset 17's IR; onnx 1.23 would write IR 14, which onnxruntime 1.23 refuses (max 11)
_BATCH = "batch"


class _Graph:
    """Accumulates nodes and int64 initializers under unique names."""

    def __init__(self):
        self.nodes, self.initializers = [], []
        self._scalars = {}

    def const(self, value) -> str:
        arr = np.asarray(value, dtype=np.int64)
        if arr.ndim == 0 and int(arr) in self._scalars:
            return self._scalars[int(arr)]
        name = f"c{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(arr, name))
        if arr.ndim == 0:
            self._scalars[int(arr)] = name
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        name = out or f"t{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=f"n{len(self.nodes)}", **attrs))
        return name


def _wrap(g: _Graph, x: str, bits: int) -> str:
    half = g.const(2 ** (bits - 1))
    return g.op("Sub", g.op("Mod", g.op("Add", x, half), g.const(2 ** bits), fmod=0), half)


def _decay(g: _Graph, x: str, k: str) -> str:
    magnitude = g.op("Div", g.op("Mul", g.op("Abs", x), k), g.const(F.DECAY_UNITY))
    return g.op("Mul", g.op("Sign", x), magnitude)


def _dense(g: _Graph, s: str, syn: Dense) -> str:
    e = int(syn.weight_exp)
    w = syn.effective_weight().T * 2 ** max(e, 0)  # (in, out); a positive exponent folds exactly
    y = g.op("MatMul", s, g.const(w))
    if e >= 0:
        return y
    step = g.const(2 ** -e)
    return g.op("Div", g.op("Sub", y, g.op("Mod", y, step, fmod=0)), step)


def _conv(g: _Graph, s: str, syn: Conv2d, in_shape: tuple, out_shape: tuple) -> str:
    c, h, w = in_shape
    c_out, oh, ow = out_shape
    kernel = syn.effective_weight()  # (C_out, C_in, kH, kW), exponent folded
    kh, kw = kernel.shape[2:]
    (sh, sw), (ph, pw) = tuple(syn.stride), tuple(syn.padding)
    x = g.op("Transpose", g.op("Reshape", s, g.const([0, c, h, w])), perm=[0, 2, 3, 1])  # (B, H, W, C)
    if ph or pw:
        x = g.op("Pad", x, g.const([0, ph, pw, 0, 0, ph, pw, 0]))
    cols = [g.op("Slice", x, g.const([i, j]), g.const([i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1]),
                 g.const([1, 2]), g.const([sh, sw]))
            for i in range(kh) for j in range(kw)]  # each (B, oh, ow, C)
    x = g.op("Concat", *cols, axis=3) if len(cols) > 1 else cols[0]
    y = g.op("MatMul", x, g.const(kernel.transpose(2, 3, 1, 0).reshape(kh * kw * c, c_out)))
    y = g.op("Flatten", g.op("Transpose", y, perm=[0, 3, 1, 2]), axis=1)  # (B, C_out * oh * ow)
    return _wrap(g, y, F.CONV_BITS)


def _synapse(g: _Graph, s: str, syn, in_shape: tuple, out_shape: tuple) -> str:
    if isinstance(syn, Dense):
        return _dense(g, s, syn)
    if isinstance(syn, SumPool2d):
        syn = syn.as_conv(in_shape[0])
    return _conv(g, s, syn, in_shape, out_shape)


def _neurons(g: _Graph, k, a: str, neurons, out_shape: tuple, bias_mant: str | None = None) -> str:
    """Emit one neuron step of layer ``k`` driven by ``a``; returns the int64 spike tensor name.
    ``bias_mant``: a tensor of bias mantissas in place of the record's (an input group's per-sample
    bias)."""
    def per_neuron(name):
        return neurons.expand(name, out_shape)

    k_u = g.const(F.DECAY_UNITY - (per_neuron("du") + F.DS_OFFSET))
    k_v = g.const(F.DECAY_UNITY - (per_neuron("dv") + F.DM_OFFSET))
    if bias_mant is None:
        bias = g.const(per_neuron("bias_mant") * 2 ** per_neuron("bias_exp"))
    else:
        bias = g.op("Mul", bias_mant, g.const(2 ** per_neuron("bias_exp")))
    vth = g.const(per_neuron("vth") * 2 ** F.VTH_SHIFT)
    u = _decay(g, f"u_{k}", k_u)
    u = _wrap(g, g.op("Add", u, g.op("Mul", a, g.const(2 ** F.ACT_SHIFT))), 32)
    u = g.op("Where", g.op("Greater", u, g.const(F.UV_MAX)), g.op("Sub", u, g.const(2 ** F.UV_BITS)), u)
    u = g.op("Where", g.op("LessOrEqual", u, g.const(-F.UV_MAX)), g.op("Add", u, g.const(2 ** F.UV_BITS)), u,
             out=f"u_{k}_out")
    v = _wrap(g, g.op("Add", g.op("Add", _decay(g, f"v_{k}", k_v), u), bias), 32)
    v = g.op("Clip", v, g.const(-(F.UV_MAX - 1)), g.const(F.UV_MAX - 1))
    fired = g.op("Greater", v, vth)
    g.op("Where", fired, g.const(0), v, out=f"v_{k}_out")
    g.op("Cast", fired, to=TensorProto.UINT8, out=f"s_{k}")
    return g.op("Cast", fired, to=TensorProto.INT64)


def to_onnx(net: IntNetwork, path, timing: str = "hardware") -> onnx.ModelProto:
    """Write an ONNX model of one time step of ``net`` to ``path`` and return it.

    Parameters
    ----------
    net : IntNetwork
        The integer network.
    path : str or Path
        Where the ``.onnx`` file is written.
    timing : {"hardware", "ideal"}
        ``hardware`` (Lava's): each layer's synaptic output is delivered one step later, carried
        in the state ``a_k``; ``ideal``: delivered in the same step.

    Returns
    -------
    onnx.ModelProto
        The model, checked by ``onnx.checker``; its interface is described in the module docstring.
    """
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {TIMINGS}, got {timing!r}")
    if not isinstance(net, IntNetwork):
        raise ValueError(f"to_onnx needs an IntNetwork, got {type(net).__name__}")
    if any(isinstance(layer.synapse, Dense) and layer.synapse.delay is not None for layer in net.layers):
        raise ValueError("to_onnx's chain step model has no synaptic delays: use graph_to_onnx (write_onnx picks it)")
    g = _Graph()
    inputs = [helper.make_tensor_value_info("s_in", TensorProto.UINT8, [_BATCH, math.prod(net.input_shape)])]
    outputs = []
    s = g.op("Cast", "s_in", to=TensorProto.INT64)
    for k, layer in enumerate(net.layers):
        n = math.prod(net.shapes[k + 1])
        states = ["u", "v"] + (["a"] if timing == "hardware" else [])
        inputs += [helper.make_tensor_value_info(f"{x}_{k}", TensorProto.INT64, [_BATCH, n]) for x in states]
        outputs.append(helper.make_tensor_value_info(f"s_{k}", TensorProto.UINT8, [_BATCH, n]))
        outputs += [helper.make_tensor_value_info(f"{x}_{k}_out", TensorProto.INT64, [_BATCH, n]) for x in states]
        x = _synapse(g, s, layer.synapse, net.shapes[k], net.shapes[k + 1])
        if timing == "hardware":
            g.op("Identity", x, out=f"a_{k}_out")
            x = f"a_{k}"
        s = _neurons(g, k, x, layer.neurons, net.shapes[k + 1])
    graph = helper.make_graph(g.nodes, "spikeport_step", inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="spikeport")
    helper.set_model_props(model, {"spikeport.timing": timing,
                                   "spikeport.input_shape": json.dumps(list(net.input_shape))})
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return model


class OnnxStepper:
    """Runs an exported step model in onnxruntime, carrying the state from one call to the next.

    Parameters
    ----------
    path : str or Path
        A model written by ``to_onnx``.
    """

    def __init__(self, path):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(Path(path)), providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if "spikeport.timing" not in meta:
            raise ValueError(f"{path} is not a spikeport step model (no spikeport.timing metadata)")
        self.timing = meta["spikeport.timing"]
        self.input_shape = tuple(json.loads(meta["spikeport.input_shape"]))
        self.state_sizes = {i.name: i.shape[1] for i in self.session.get_inputs() if i.name != "s_in"}
        self.sizes = [n for name, n in self.state_sizes.items() if name.startswith("u_")]
        self.state = {}

    def reset(self, batch: int) -> None:
        """Put ``batch`` samples at rest (all state zero)."""
        self.state = {name: np.zeros((batch, n), dtype=np.int64) for name, n in self.state_sizes.items()}

    def step(self, s_in: np.ndarray) -> list:
        """Advance one step on input spikes ``(batch, N_in)`` 0/1; returns each layer's spikes
        ``(batch, N_k)`` uint8. The new state is in ``self.state``."""
        results = self.session.run(None, {"s_in": np.asarray(s_in, dtype=np.uint8), **self.state})
        named = dict(zip((o.name for o in self.session.get_outputs()), results))
        self.state = {name: named[f"{name}_out"] for name in self.state_sizes}
        return [named[f"s_{k}"] for k in range(len(self.sizes))]


def run_onnx(path, x) -> SimResult:
    """Step the model at ``path`` over input spike trains ``x`` ``(S, T, *input_shape)`` from rest.

    Returns
    -------
    SimResult
        ``output`` ``(S, T, n_out)`` int8 and, per layer, ``spikes`` (int8), ``u`` and ``v`` (int32)
        as ``(S, T, N_k)`` arrays, like ``simulate(..., record=True)``.
    """
    stepper = OnnxStepper(path)
    x = check_spikes(x, stepper.input_shape)
    S, T = x.shape[:2]
    rec = {k: [np.zeros((S, T, n), dtype=np.int8 if k == "spikes" else np.int32) for n in stepper.sizes]
           for k in ("spikes", "u", "v")}
    stepper.reset(S)
    for t in range(T):
        for k, s in enumerate(stepper.step(x[:, t])):
            rec["spikes"][k][:, t] = s
            rec["u"][k][:, t] = stepper.state[f"u_{k}"]
            rec["v"][k][:, t] = stepper.state[f"v_{k}"]
    return SimResult(rec["spikes"][-1].copy(), rec["spikes"], rec["u"], rec["v"])


# --- any integer graph ---------------------------------------------------------------------------

def write_onnx(net, path, timing: str = "hardware") -> str:
    """The step model of ``net``: ``to_onnx``'s chain interface (``s_in``, ``u_k``, ...; both
    timings) for a feed-forward chain without delays, else ``graph_to_onnx`` (Lava's hardware timing
    only). Returns ``"chain"`` or ``"graph"``."""
    from spikeport.sim.graph import IntGraph, refuse_unless_lif

    chain = net
    if isinstance(net, IntGraph):
        refuse_unless_lif(net, "ONNX export")
        try:
            chain = net.to_chain("the chain step model")
        except ValueError:
            chain = None
    if chain is not None and not any(isinstance(layer.synapse, Dense) and layer.synapse.delay is not None
                                     for layer in chain.layers):
        to_onnx(chain, path, timing)
        return "chain"
    if timing != "hardware":
        raise ValueError("the ONNX step model of a graph (recurrence, merges, delays or input neurons) is in "
                         "Lava's hardware timing only; use --timing hardware")
    graph_to_onnx(net, path)
    return "graph"


def _graph_dense(g: _Graph, s: str, w: np.ndarray, e: int, delayed: bool) -> str:
    """One Dense (or one delay bucket of a DelayDense) on int64 payloads ``s``: Lava's int32 sum and
    shift (``PyDenseModelBitAcc``: ``weights.dot(s)`` then ``<< e`` or ``>> -e`` in int32); a delay
    bucket sums and shifts in int64 and wraps only where it is added into the int32 buffer."""
    y = g.op("MatMul", s, g.const(w.T))
    if not delayed:
        y = _wrap(g, y, 32)
    if e > 0:
        y = g.op("Mul", y, g.const(2 ** e))
        return y if delayed else _wrap(g, y, 32)
    if e < 0:
        step = g.const(2 ** -e)
        y = g.op("Div", g.op("Sub", y, g.op("Mod", y, step, fmod=0)), step)
    return y


def graph_to_onnx(graph, path) -> onnx.ModelProto:
    """Write one time step of any ``IntGraph`` in Lava's (hardware) timing as an ONNX model.

    Interface (batch ``batch``; indices follow ``graph.groups()``, ``graph.inputs()`` and
    ``graph.projections()``, whose names the metadata ``spikeport.graph`` lists):

    - ``x_i`` (batch, N) int64: input ``i``'s payload this step (0/1 spikes or graded integers);
      for an input with neurons it drives their ``a_in`` directly;
    - ``b_i`` (batch, N) int64, inputs with neurons only: their ``bias_mant`` (the record's, or a
      per-sample bias: netx's Input block driven as lava-dl drives PilotNet);
    - state, with an ``_out`` twin among the outputs: ``u_k``, ``v_k`` per group and, per projection
      ``p`` with largest delay ``D``, its synaptic buffer ``a_p_0 .. a_p_D`` (slot ``j`` is delivered
      ``j`` steps from now; Lava's ``Dense.a_buff`` / ``DelayDense.a_buff``);
    - outputs ``s_k`` (batch, N) uint8 per group.

    A group's input this step is the sum of its projections' slot 0, wrapped to int32 as Lava's
    ports add; then the neuron step of ``_neurons``. Each projection computes this step's synaptic
    sums from its source's spikes (or an input's payload) into the shifted buffer. Every value is an
    int64 integer (see the module docstring); stepping the model over a sequence equals
    ``simulate(graph, timing="hardware", record=True)`` bit for bit (``run_onnx_graph`` steps it
    with the same protocol: input bias, netx's periodic reset).
    """
    from spikeport.sim.graph import as_graph, max_delay, refuse_unless_lif

    graph = as_graph(graph)
    refuse_unless_lif(graph, "ONNX export")
    g = _Graph()
    groups, ins, projs = graph.groups(), graph.inputs(), graph.projections()
    gi = {n: k for k, n in enumerate(groups)}
    inputs, outputs = [], []

    def tensor(name, n, kind=TensorProto.INT64):
        return helper.make_tensor_value_info(name, kind, [_BATCH, n])

    sends = {}  # node -> int64 tensor it sends this step (an input's payload or a group's spikes)
    for i, n in enumerate(ins):
        inputs.append(tensor(f"x_{i}", graph.size(n)))
        if graph.neurons(n) is not None:
            inputs.append(tensor(f"b_{i}", graph.size(n)))
        else:
            sends[n] = f"x_{i}"
    delivered = {n: [] for n in groups}
    for p_i, p in enumerate(projs):
        for j in range(max_delay(p.op) + 1):
            inputs.append(tensor(f"a_{p_i}_{j}", graph.size(p.dst)))
            outputs.append(tensor(f"a_{p_i}_{j}_out", graph.size(p.dst)))
        delivered[p.dst].append(f"a_{p_i}_0")
    for name in groups:
        k, n = gi[name], graph.size(name)
        inputs += [tensor(f"u_{k}", n), tensor(f"v_{k}", n)]
        outputs += [tensor(f"s_{k}", n, TensorProto.UINT8), tensor(f"u_{k}_out", n), tensor(f"v_{k}_out", n)]
        if name in ins:
            a = f"x_{ins.index(name)}"
        elif delivered[name]:
            a = delivered[name][0]
            for more in delivered[name][1:]:
                a = g.op("Add", a, more)
            a = _wrap(g, a, 32) if len(delivered[name]) > 1 else a
        else:
            a = g.const(np.zeros((1, n), dtype=np.int64))
        bias = f"b_{ins.index(name)}" if name in ins else None  # an input group's bias comes in as b_i
        sends[name] = _neurons(g, k, a, graph.neurons(name), graph.shapes[name], bias)
    for p_i, p in enumerate(projs):
        src = sends[p.src]
        d = max_delay(p.op)
        if isinstance(p.op, Dense):
            parts = p.op.delays() if p.op.delay is not None else {0: p.op.effective_weight()}
            sums = {k: _graph_dense(g, src, w, int(p.op.weight_exp), p.op.delay is not None) for k, w in parts.items()}
        else:
            sums = {0: _synapse(g, src, p.op, graph.shapes[p.src], graph.shapes[p.dst])}
        for j in range(d + 1):
            nxt = f"a_{p_i}_{j + 1}" if j < d else None
            terms = [t for t in (nxt, sums.get(j)) if t is not None]
            if not terms:
                g.op("Mul", f"a_{p_i}_{j}", g.const(0), out=f"a_{p_i}_{j}_out")
                continue
            total = terms[0] if len(terms) == 1 else g.op("Add", *terms)
            g.op("Identity", _wrap(g, total, 32), out=f"a_{p_i}_{j}_out")
    meta = {"groups": groups, "inputs": ins, "projections": [[p.src, p.dst, p.name, max_delay(p.op)] for p in projs],
            "shapes": {n: list(graph.shapes[n]) for n in groups + ins},
            "with_neurons": [n for n in ins if graph.neurons(n) is not None],
            "bias_mant": {n: graph.neurons(n).expand("bias_mant", graph.shapes[n]).reshape(-1).tolist()
                          for n in ins if graph.neurons(n) is not None},
            "depths": graph.depths(), "outputs": graph.outputs()}
    model_graph = helper.make_graph(g.nodes, "spikeport_graph_step", inputs, outputs, g.initializers)
    model = helper.make_model(model_graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="spikeport")
    helper.set_model_props(model, {"spikeport.timing": "hardware", "spikeport.graph": json.dumps(meta)})
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return model


def run_onnx_graph(path, x=None, input_bias=None, steps=None, reset_interval=None, reset_offset: int = 0):
    """Step a ``graph_to_onnx`` model in onnxruntime with ``simulate``'s protocol (``x``: one array
    or a dict input name -> ``(S, T, *shape)``; ``input_bias``, ``steps``, netx's
    ``reset_interval``/``reset_offset``). Returns a ``GraphResult`` with every group's spikes, u
    and v, like ``simulate(graph, timing="hardware", record=True)``."""
    import onnxruntime as ort

    from spikeport.sim.simulator import GraphResult, Protocol, check_payload

    session = ort.InferenceSession(str(Path(path)), providers=["CPUExecutionProvider"])
    meta_map = session.get_modelmeta().custom_metadata_map
    if "spikeport.graph" not in meta_map:
        raise ValueError(f"{path} is not a spikeport graph step model (no spikeport.graph metadata)")
    meta = json.loads(meta_map["spikeport.graph"])
    groups, ins, shapes = meta["groups"], meta["inputs"], {k: tuple(v) for k, v in meta["shapes"].items()}
    if x is not None and not isinstance(x, dict):
        if len(ins) != 1:
            raise ValueError(f"the model has {len(ins)} inputs ({ins}): give x as a dict name -> array")
        x = {ins[0]: x}
    xs = {n: check_payload(v, shapes[n], f"input {n!r}") for n, v in (x or {}).items()}
    S = next(iter(xs.values())).shape[0] if xs else (0 if input_bias is None else np.asarray(input_bias).shape[0])
    T = next(iter(xs.values())).shape[1] if xs else int(steps)
    bias = None if input_bias is None else np.asarray(input_bias, dtype=np.int64).reshape(S, -1)
    proto = Protocol(T, bias, reset_interval, int(reset_offset))
    stream = reset_interval is not None
    B, L = (1, S * T) if stream else (S, T)
    sizes = {n: math.prod(shapes[n]) for n in groups + ins}
    state = {i.name: np.zeros((B, i.shape[1]), dtype=np.int64) for i in session.get_inputs()
             if not i.name.startswith(("x_", "b_"))}
    rec = {k: {n: np.zeros((B, L, sizes[n]), dtype=np.int8 if k == "spikes" else np.int32) for n in groups}
           for k in ("spikes", "u", "v")}
    out_names = [o.name for o in session.get_outputs()]
    for t in range(L):
        feed = dict(state)
        for i, n in enumerate(ins):
            if n in xs:
                v = xs[n].reshape(S * T, -1)[t][None] if stream else xs[n][:, t].reshape(S, -1)
            else:
                v = np.zeros((B, sizes[n]), dtype=np.int64)
            feed[f"x_{i}"] = v.astype(np.int64)
            if n in meta["with_neurons"]:
                b = np.asarray(meta["bias_mant"][n], dtype=np.int64)[None].repeat(B, 0)
                if bias is not None:
                    b = bias[t // T][None] if stream else bias
                feed[f"b_{i}"] = b
        if stream:
            for k, n in enumerate(groups):
                if (t + 1) % reset_interval == proto.phase(meta["depths"][n]):
                    feed[f"u_{k}"] = np.zeros_like(feed[f"u_{k}"])
                    feed[f"v_{k}"] = np.zeros_like(feed[f"v_{k}"])
        named = dict(zip(out_names, session.run(None, feed)))
        state = {name: named[f"{name}_out"] for name in state}
        for k, n in enumerate(groups):
            rec["spikes"][n][:, t] = named[f"s_{k}"]
            rec["u"][n][:, t] = named[f"u_{k}_out"]
            rec["v"][n][:, t] = named[f"v_{k}_out"]
    if stream:
        rec = {k: {n: a.reshape(S, T, -1) for n, a in d.items()} for k, d in rec.items()}
    outputs = {o: (rec["spikes"][src] if src in groups else xs[src]).copy() for o, src in meta["outputs"].items()}
    return GraphResult(outputs, rec["spikes"], rec["u"], rec["v"])
