"""The integer network as a graph: what NIR describes and Lava runs, in Loihi's integer formats.

An ``IntGraph`` is a directed graph of named nodes:

``Input``      where spikes enter (``(S, T, *shape)`` 0/1 spikes or integer graded payloads). With
               ``neurons`` it is itself a group of CUBA neurons (netx's Input block): the input
               drives their ``a_in`` directly (no synapse, no delay) and a per-sample bias can
               replace their ``bias_mant`` (``--input-bias``, as lava-dl drives PilotNet).
``Neurons``    a group of Loihi CUBA neurons of a given ``shape`` (``NeuronGroup``); its registers
               are scalars, per channel or per neuron (``sim.network.Neurons``). A group (or an
               input group) may instead hold ``SigmaDelta`` registers: Lava's sigma-delta neurons
               (lava/proc/sdn, lava-dl's SDNN), which send graded payloads instead of 0/1 spikes.
               A group may also hold ``Resonator`` registers: Lava's resonate-and-fire neurons
               (lava/proc/rf, rf_iz; lava-dl's RF blocks), with two synaptic inputs, real and
               imaginary.
``Dense``, ``Conv2d``, ``SumPool2d``, ``Flatten``, ``ImagPart``
               synaptic operators (``sim.network``), exactly one input each. A ``Dense`` may
               carry a per-synapse ``delay`` (0..63 extra steps, Loihi 2's 6-bit synaptic delay;
               Lava's ``DelayDense``); convolutions have none (Lava has no delayed Conv). An
               ``ImagPart`` after an operator routes it into a resonate-and-fire group's
               imaginary input (``Projection.imag``); every other projection into such a group
               goes to its real input.
``Output``     names a group (or input) whose spikes are the network's output.

Edges may form cycles (recurrence) and several edges may enter one neuron group: their synaptic
inputs add, as Lava's ports add what several connections send. Every path from a group to a group
passes through at least one synaptic operator; a chain of operators without a neuron between them
(``SumPool2d -> Conv2d``, ``SumPool2d -> Flatten -> Dense``) is composed into ONE operator
exactly (``projections``): on the chip it is one synapse, with one step of delay.

``projections()`` is the lowered form every runner uses: ``Projection(src, dst, op)`` from a group
or input to a group, ``op`` a single ``Dense``, ``Conv2d`` or ``SumPool2d`` (Flatten dropped: data
is flat C-order everywhere; a Dense after a feature map reads it flattened).

Timing (Lava's): each projection delivers at step ``t`` what its source sent at ``t - 1``; a
synapse with delay ``k`` delivers at ``t`` what its source sent at ``t - 1 - k`` (lava-nc 0.10
``AbstractPyDelayDenseModel.update_act``: "delays of 0 correspond to the next time step").

Records are frozen and validated on construction; a bad value is a ``ValueError`` naming the node,
the field, the value and the allowed range. ``save``/``load`` write one ``.npz`` (arrays plus a
JSON header) through one generic node (de)serialization (``node_to_dict``/``node_from_dict``),
also used for NIR metadata. ``IntNetwork`` (a feed-forward chain) converts with ``from_chain``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import formats as F
from .network import Conv2d, Dense, IntNetwork, Layer, Neurons, SumPool2d, _shape, conv_output_shape
from .npzfile import MEMORY_BUDGET_BYTES, read_record

FORMAT = "spikeport.intgraph"
FORMAT_VERSION = 1
# the largest group (or input): the simulator holds u and v, float64, per neuron and sample
MAX_GROUP_NEURONS = MEMORY_BUDGET_BYTES // 16   # 2**28


SD_MODES = ("sigma_delta", "delta", "sigma")


@dataclass(frozen=True, eq=False)
class SigmaDelta:
    """Registers of a group of Lava sigma-delta neurons (lava-nc 0.10 lava/proc/sdn), the neurons of
    lava-dl's SDNN networks (netx hdf5.py 164-189). ``mode``:

    ``"sigma_delta"``  ``SigmaDelta`` with ReLU (``PySigmaDeltaModelFixed``, models.py 260-284)
    ``"delta"``        ``Delta``, the encoder of netx's SDNN Input block (``PyDeltaModelFixed``,
                       models.py 205-231): no accumulation, no activation, no bias
    ``"sigma"``        ``Sigma``, netx's ``sigma_output`` layer (``PySigmaModelFixed``, models.py
                       169-176): sends its accumulated input

    The arithmetic (``sim.simulator.sigma_delta_step``) holds ``sigma``, ``act`` and ``residue`` in
    int32 (wrapping) and sends ``s >> state_exp``, a graded payload (int32, signed). ``vth`` (the
    file's ``vThMant``) and ``bias`` are mantissas: Lava scales both by ``1 << (spike_exp +
    state_exp)`` when it builds the process (lava/proc/sdn/process.py 99, 179-180). ``bias`` is a
    scalar, one value per channel ``(C,)`` of a feature map or one per neuron; the rest are shared.
    ``expand`` of a CUBA register (``du``, ...) is a ``ValueError``: code written for CUBA groups
    refuses these groups in one line instead of computing something else.
    """

    mode: str = "sigma_delta"
    vth: int = 0
    bias: np.ndarray | int = 0
    spike_exp: int = F.NETX_SD_SPIKE_EXP
    state_exp: int = F.NETX_SD_STATE_EXP
    kind = "sigma_delta"
    FIELDS = ("mode", "vth", "bias", "spike_exp", "state_exp")

    def validate(self, where: str, out_shape: tuple) -> None:
        if self.mode not in SD_MODES:
            raise ValueError(f"{where}: sigma-delta mode {self.mode!r} is not one of {SD_MODES}")
        for name, fmt in (("spike_exp", F.SD_SPIKE_EXP), ("state_exp", F.SD_STATE_EXP), ("vth", F.SD_VTH)):
            arr = fmt.check(getattr(self, name), f"{where}: sigma-delta")
            if arr.size != 1:
                raise ValueError(f"{where}: sigma-delta {name} must be one value (Lava holds one per process), "
                                 f"got {arr.size}")
        # Lava computes vth << (spike_exp + state_exp) and bias << (...) in int32 when it builds the
        # process: with these ranges (17 and 16 bits, a shift of at most 14) both stay below 2**31
        bias = F.SD_BIAS.check(self.bias, f"{where}: sigma-delta")
        n = math.prod(out_shape)
        if bias.size not in (1, n) and not (len(out_shape) == 3 and bias.size == out_shape[0]):
            raise ValueError(f"{where}: bias has {bias.size} values; expected 1, {n} (per neuron)"
                             + (f" or {out_shape[0]} (per channel)" if len(out_shape) == 3 else ""))
        if self.mode != "sigma_delta" and np.any(bias != 0):
            raise ValueError(f"{where}: a sigma-delta group in mode {self.mode!r} has no bias (Lava's {self.mode.title()} "
                             "process takes none)")

    def scale_shift(self) -> int:
        """``spike_exp + state_exp``: the left shift of ``vth`` and ``bias`` (and of a Delta's input)."""
        return int(self.spike_exp) + int(self.state_exp)

    def expand(self, name: str, out_shape: tuple) -> np.ndarray:
        """``bias`` as one int64 value per neuron (flattened C order); CUBA registers are refused."""
        if name != "bias":
            raise ValueError(f"a sigma-delta (SDNN) group has no CUBA register {name!r}: this operation handles "
                             "Loihi CUBA (LIF) groups only")
        arr = np.asarray(self.bias).astype(np.int64).reshape(-1)
        n = math.prod(out_shape)
        if arr.size == 1:
            return np.full(n, arr[0], dtype=np.int64)
        return arr if arr.size == n else np.repeat(arr, n // arr.size)


def is_sigma_delta(neurons) -> bool:
    """Whether a group's registers are sigma-delta ones (graded payloads out)."""
    return isinstance(neurons, SigmaDelta)




RF_MODES = ("rf", "rf_iz")
# The registers of Lava's RF / RF_IZ fixed-point models (lava-nc 0.10 lava/proc/rf/models.py 90-115):
# ``sin_decay``/``cos_decay`` are annotated ``np.uint16, precision=12`` but hold the signed int32
# that process.py 216-217 computes (never checked): 16 signed bits here; ``vth`` (the file's
# ``vThMant``) is a mantissa that process.py 213-214 shifts by ``state_exp`` into the 24-bit
# (``precision=24``) int32 threshold; ``state_exp`` and ``decay_bits`` are ``precision=3``
# annotations that netx overrides with ``decay_bits = 12`` (lava-dl netx/hdf5.py 202-203).
RF_DECAY = F.IntFormat("decay", 16, True)
RF_VTH = F.IntFormat("vth", 24, True)
RF_STATE_EXP = F.IntFormat("state_exp", 3, False)
RF_DECAY_BITS = F.IntFormat("decay_bits", 4, False)
NETX_RF_STATE_EXP, NETX_RF_DECAY_BITS = 6, 12   # lava-dl netx/hdf5.py 202-203


@dataclass(frozen=True, eq=False)
class Resonator:
    """Registers of a group of Lava resonate-and-fire neurons, one set per group (Lava's ``RF``
    process holds one of each, lava-nc 0.10 lava/proc/rf/process.py 224-228), as lava-dl netx builds
    them for its neuron types containing ``RF`` (netx/hdf5.py 190-205). ``mode``:

    ``"rf"``     ``RF`` (``PyRFModelFixed``, lava/proc/rf/models.py 122-145): spikes when the phase
                 crosses zero upwards with ``real >= vth``; no reset
    ``"rf_iz"``  ``RF_IZ`` (``PyRF_IZModelFixed``, lava/proc/rf_iz/models.py 34-58): spikes when
                 ``imag >= vth``, then ``real = 0`` and ``imag = vth - 1``

    ``sin_decay``, ``cos_decay`` are the integers Lava's process holds (``(1 - alpha) sin(2 pi /
    period) << decay_bits``, truncated: process.py 207-217), ``vth`` the mantissa that Lava shifts by
    ``state_exp`` (process.py 213-214). The group takes two synaptic inputs, ``a_real_in`` and
    ``a_imag_in``: projections through an ``ImagPart`` node go to the second. The arithmetic is
    ``sim.simulator.resonator_step``; recorded ``u``/``v`` hold ``real``/``imag``. ``expand`` of a
    CUBA register is a ``ValueError``: code written for CUBA groups refuses these groups in one line.
    """

    mode: str = "rf"
    sin_decay: int = 0
    cos_decay: int = 0
    vth: int = 0
    state_exp: int = NETX_RF_STATE_EXP
    decay_bits: int = NETX_RF_DECAY_BITS
    kind = "resonator"
    FIELDS = ("mode", "sin_decay", "cos_decay", "vth", "state_exp", "decay_bits")

    def validate(self, where: str, out_shape: tuple) -> None:
        if self.mode not in RF_MODES:
            raise ValueError(f"{where}: resonate-and-fire mode {self.mode!r} is not one of {RF_MODES}")
        for name, fmt in (("sin_decay", RF_DECAY), ("cos_decay", RF_DECAY), ("vth", RF_VTH),
                          ("state_exp", RF_STATE_EXP), ("decay_bits", RF_DECAY_BITS)):
            arr = fmt.check(getattr(self, name), f"{where}: resonate-and-fire")
            if arr.size != 1:
                raise ValueError(f"{where}: resonate-and-fire {name} must be one value (Lava's RF process holds "
                                 f"one per process), got {arr.size}")
        if int(self.decay_bits) < 1:
            raise ValueError(f"{where}: resonate-and-fire decay_bits = 0: Lava's RF then keeps float decays "
                             "(process.py 215-217), which the integer graph does not hold")

    def expand(self, name: str, out_shape: tuple) -> np.ndarray:
        raise ValueError(f"a resonate-and-fire (RF) group has no CUBA register {name!r}: this operation handles "
                         "Loihi CUBA (LIF) groups only")


def is_resonator(neurons) -> bool:
    """Whether a group's registers are resonate-and-fire ones (two synaptic inputs, real and imaginary)."""
    return isinstance(neurons, Resonator)


# What a consumer of the graph that handles Loihi CUBA (LIF) groups only says of the other kinds.
KIND_NAMES = {SigmaDelta: "sigma-delta (SDNN)", Resonator: "resonate-and-fire (RF, RF_IZ)"}


def refuse_unless_lif(graph, what: str) -> None:
    """A one-line ``ValueError`` when ``graph`` has a group that is not a CUBA (LIF) one, which
    ``what`` cannot handle: a whitelist, so that a neuron kind added later is refused too."""
    for name in graph.groups():
        kind = type(graph.neurons(name))
        if kind is not Neurons:
            raise ValueError(f"{what} does not support {KIND_NAMES.get(kind, kind.__name__)} groups (group {name!r}); "
                             "the simulator runs them (spikeport simulate)")


@dataclass(frozen=True, eq=False)
class ImagPart:
    """Sends what the synaptic operator before it computes into the imaginary input (Lava's
    ``a_imag_in``) of the resonate-and-fire group after it: the second half of netx's complex
    synapse (``ComplexDense``: two Lava Dense processes, netx/blocks/process.py 349-379). A shape
    pass-through; it must feed a ``Resonator`` group directly."""

    kind = "imag"

    def validate(self, where: str, in_shape: tuple) -> tuple:
        return tuple(in_shape)


@dataclass(frozen=True, eq=False)
class Input:
    """Where input enters; with ``neurons`` a neuron group driven by the input (netx's Input block)."""

    shape: tuple
    neurons: Neurons | SigmaDelta | None = None
    kind = "input"

    def __post_init__(self):
        object.__setattr__(self, "shape", _shape(self.shape))


@dataclass(frozen=True, eq=False)
class NeuronGroup:
    """A group of Loihi CUBA neurons of ``shape`` (PyTorch order) with its registers."""

    shape: tuple
    neurons: Neurons | SigmaDelta | Resonator = field(default_factory=Neurons)
    kind = "neurons"

    def __post_init__(self):
        object.__setattr__(self, "shape", _shape(self.shape))


@dataclass(frozen=True, eq=False)
class Flatten:
    """A shape change only (data is flat C-order everywhere): ``(C, H, W) -> (C*H*W,)``."""

    kind = "flatten"

    def validate(self, where: str, in_shape: tuple) -> tuple:
        return (math.prod(in_shape),)


@dataclass(frozen=True, eq=False)
class Output:
    """The spikes of the node that feeds it are an output of the network."""

    kind = "output"


# --- the float mirror's node types (numpy; what readers produce and quantization consumes) -------

def _finite(values, where: str, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{where}: {name} must be numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = arr.flat[int(np.argmax(~np.isfinite(arr)))]
        raise ValueError(f"{where}: {name} contains {bad} (must be finite)")
    return arr


@dataclass(frozen=True, eq=False)
class Affine:
    """Float dense synapses ``a = W s`` (``weight`` ``(out, in)``); a bias lives in the neurons."""

    weight: np.ndarray
    delay: np.ndarray | None = None
    kind = "affine"

    def validate(self, where: str, in_shape: tuple) -> tuple:
        w = _finite(self.weight, where, "weight")
        if w.ndim != 2 or w.shape[1] != math.prod(in_shape):
            raise ValueError(f"{where}: weight of shape {w.shape} does not fit an input of shape {in_shape}")
        if self.delay is not None and F.DELAY.check(self.delay, where).shape != w.shape:
            raise ValueError(f"{where}: delay has shape {np.shape(self.delay)}, the weight {w.shape} (one delay in "
                             "steps per synapse)")
        return (w.shape[0],)


@dataclass(frozen=True, eq=False)
class FloatConv2d:
    """Float 2-d cross-correlation, weight ``(C_out, C_in, kH, kW)`` (PyTorch's ``conv2d``)."""

    weight: np.ndarray
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    kind = "fconv"

    def validate(self, where: str, in_shape: tuple) -> tuple:
        w = _finite(self.weight, where, "weight")
        if w.ndim != 4 or len(in_shape) != 3 or in_shape[0] != w.shape[1]:
            raise ValueError(f"{where}: conv weight of shape {w.shape} does not fit an input of shape {in_shape}")
        return conv_output_shape(in_shape, w.shape[0], w.shape[2:], _shape(self.stride), _shape(self.padding), where)


@dataclass(frozen=True, eq=False)
class FloatNeurons:
    """A group of discrete-time CUBA neurons in float, per step (Loihi's form, Lava's ``floating_pt``)::

        i[t] = decay_syn i[t-1] + a[t]          (decay_syn = 0: no synaptic current, STBP's LIF)
        v[t] = decay_mem v[t-1] + i[t] + bias
        s[t] = v[t] > v_threshold;  v[t] = 0 where s[t]

    Each parameter is a scalar, one value per channel ``(C,)`` of a feature map, or one per neuron.
    """

    shape: tuple
    decay_syn: np.ndarray | float = 0.0
    decay_mem: np.ndarray | float = 1.0
    v_threshold: np.ndarray | float = 1.0
    bias: np.ndarray | float = 0.0
    kind = "fneurons"
    FIELDS = ("decay_syn", "decay_mem", "v_threshold", "bias")

    def __post_init__(self):
        object.__setattr__(self, "shape", _shape(self.shape))

    def validate(self, where: str, shape: tuple) -> None:
        n = math.prod(shape)
        for name in self.FIELDS:
            a = _finite(getattr(self, name), where, name)
            if a.size not in (1, n) and not (len(shape) == 3 and a.size == shape[0]):
                raise ValueError(f"{where}: {name} has {a.size} values; expected 1, {n} (per neuron)"
                                 + (f" or {shape[0]} (per channel)" if len(shape) == 3 else ""))
            if name.startswith("decay") and (a.min() < 0 or a.max() > 1):
                raise ValueError(f"{where}: {name} = {float(a.min() if a.min() < 0 else a.max()):g} outside [0, 1]")
            if name == "v_threshold" and a.min() < 0:
                raise ValueError(f"{where}: v_threshold = {float(a.min()):g} is negative (Loihi thresholds are unsigned)")

    def expand(self, name: str) -> np.ndarray:
        """One float64 value per neuron, flattened C order."""
        a = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
        n = math.prod(self.shape)
        return np.full(n, a[0]) if a.size == 1 else (a if a.size == n else np.repeat(a, n // a.size))


OPERATORS = {"dense": Dense, "conv": Conv2d, "sumpool": SumPool2d, "flatten": Flatten, "imag": ImagPart}
FLOAT_OPERATORS = {"affine": Affine, "fconv": FloatConv2d, "sumpool": SumPool2d, "flatten": Flatten}
NODE_TYPES = {"input": Input, "neurons": NeuronGroup, "output": Output, **OPERATORS}
FLOAT_NODE_TYPES = {"input": Input, "fneurons": FloatNeurons, "output": Output, **FLOAT_OPERATORS}


def is_group(node) -> bool:
    """Nodes whose spikes other nodes read: neuron groups and inputs."""
    return isinstance(node, (Input, NeuronGroup, FloatNeurons))


def group_neurons(node):
    """The registers (or, in the float mirror, the float parameters) of a group; None for inputs
    without neurons and for operators."""
    if isinstance(node, FloatNeurons):
        return node
    return node.neurons if isinstance(node, (Input, NeuronGroup)) else None


# --- one generic (de)serialization for every node type ---------------------------------------

def node_to_dict(node, arrays: dict, prefix: str) -> dict:
    """``{"kind": ..., field: value}``; array fields go into ``arrays`` under ``prefix.field`` and
    appear in the dict as ``{"array": key}``; a nested ``Neurons`` is a nested dict."""
    out = {"kind": node.kind}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if isinstance(value, (Neurons, SigmaDelta, Resonator)):
            key = "neurons" if isinstance(value, Neurons) else value.kind
            out[f.name] = {key: {n: _encode(getattr(value, n), arrays, f"{prefix}.{f.name}.{n}")
                                 for n in type(value).FIELDS}}
        else:
            out[f.name] = _encode(value, arrays, f"{prefix}.{f.name}")
    return out


def _encode(value, arrays: dict, key: str):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (tuple, list)) and all(isinstance(v, (int, np.integer)) for v in value):
        return [int(v) for v in value]
    arr = np.asarray(value)
    if arr.ndim == 0 and arr.dtype.kind in "iu":
        return int(arr)
    if arr.ndim == 0 and arr.dtype.kind == "f":
        return float(arr)
    arrays[key] = arr
    return {"array": key}


def node_from_dict(entry: dict, arrays, where: str, types: dict | None = None):
    """Inverse of ``node_to_dict``; ``arrays`` is a mapping (an open ``.npz``); ``types`` the
    graph's node types (the integer graph's by default)."""
    types = NODE_TYPES if types is None else types
    if not isinstance(entry, dict) or entry.get("kind") not in types:
        kind = entry.get("kind") if isinstance(entry, dict) else entry
        raise ValueError(f"{where}: unknown node kind {kind!r} (known: {', '.join(types)})")
    cls = types[entry["kind"]]
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in entry:
            continue
        value = entry[f.name]
        if isinstance(value, dict) and "neurons" in value:
            value = Neurons(**{n: _decode(value["neurons"].get(n, 0), arrays, where) for n in Neurons.FIELDS})
        elif isinstance(value, dict) and SigmaDelta.kind in value:
            sd = value[SigmaDelta.kind]
            value = SigmaDelta(**{n: _decode(sd[n], arrays, where) for n in SigmaDelta.FIELDS if n in sd})
        elif isinstance(value, dict) and Resonator.kind in value:
            rf = value[Resonator.kind]
            value = Resonator(**{n: _decode(rf[n], arrays, where) for n in Resonator.FIELDS if n in rf})
        else:
            value = _decode(value, arrays, where)
        kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**kwargs)
    except ValueError as err:  # e.g. a shape that is not integers: say which node
        raise ValueError(f"{where}: {err}") from None


def _decode(value, arrays, where):
    if isinstance(value, dict):
        key = value.get("array")
        if not isinstance(key, str) or key not in arrays:
            raise ValueError(f"{where}: array {key!r} missing from the file")
        arr = arrays[key]
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{where}: array {key!r} has dtype {arr.dtype}, expected numbers")
        return arr
    return value


# --- the graph ---------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Projection:
    """One synapse of the lowered graph: ``op`` from group/input ``src`` to group ``dst``.
    ``name`` is the operator node it came from (the last one of a composed chain)."""

    src: str
    dst: str
    op: object
    name: str
    imag: bool = False   # into a resonate-and-fire group's imaginary input (through an ``ImagPart``)


@dataclass(frozen=True, eq=False)
class Graph:
    """A spiking network as a graph of named nodes (see the module docstring); ``IntGraph`` holds
    Loihi's integers, ``FloatGraph`` the float mirror.

    Attributes
    ----------
    nodes : dict
        name -> node, in a stable order (the order groups are listed and recorded in).
    edges : tuple of (str, str)
        ``(src, dst)`` connections.
    dt : float
        Seconds per time step the integers were derived for (1.0 if unitless).
    meta : dict
        Free JSON-serialisable facts.
    """

    nodes: dict
    edges: tuple
    dt: float = 1.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        nodes = dict(self.nodes)
        edges = tuple((str(a), str(b)) for a, b in self.edges)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "edges", edges)
        if not isinstance(self.dt, (int, float)) or not math.isfinite(self.dt) or not self.dt > 0:
            raise ValueError(f"dt must be a finite number > 0, got {self.dt!r}")
        for name, node in nodes.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"node names must be non-empty strings, got {name!r}")
            if type(node) not in self.NODE_TYPES.values():
                raise ValueError(f"node {name!r}: {type(node).__name__} is not a {type(self).__name__} node type")
        seen = set()
        for a, b in edges:
            for n in (a, b):
                if n not in nodes:
                    raise ValueError(f"edge {a!r} -> {b!r}: no node named {n!r}")
            if (a, b) in seen:
                raise ValueError(f"edge {a!r} -> {b!r} appears twice")
            seen.add((a, b))
        ins = {n: [a for a, b in edges if b == n] for n in nodes}
        outs = {n: [b for a, b in edges if a == n] for n in nodes}
        object.__setattr__(self, "_ins", ins)
        object.__setattr__(self, "_outs", outs)
        if not any(isinstance(n, Input) for n in nodes.values()):
            raise ValueError("the graph has no Input node")
        if not any(isinstance(n, Output) for n in nodes.values()):
            raise ValueError("the graph has no Output node")
        for name, node in nodes.items():
            where = f"node {name!r}"
            if is_group(node) and (any(s < 1 for s in node.shape) or math.prod(node.shape) > MAX_GROUP_NEURONS):
                raise ValueError(f"{where}: shape {node.shape} must have sizes >= 1 and at most {MAX_GROUP_NEURONS} "
                                 "neurons (MAX_GROUP_NEURONS)")
            if isinstance(node, Input) and is_resonator(node.neurons):
                raise ValueError(f"{where}: an input group cannot be resonate-and-fire (netx's Input block drives "
                                 "a_in, which Lava's RF has not)")
            if isinstance(node, Input) and ins[name]:
                raise ValueError(f"{where}: an Input takes no incoming edges (from {ins[name]})")
            if isinstance(node, Output):
                if len(ins[name]) != 1 or not is_group(nodes[ins[name][0]]):
                    raise ValueError(f"{where}: an Output needs exactly one incoming edge from a neuron group or "
                                     f"input, got {ins[name]}")
                if outs[name]:
                    raise ValueError(f"{where}: an Output has no outgoing edges")
            if type(node) in self.OPERATORS.values() and len(ins[name]) != 1:
                raise ValueError(f"{where}: a synaptic operator takes exactly one input, got {len(ins[name])} "
                                 f"({ins[name]}); to add inputs, send each through its own operator into a "
                                 "neuron group")
            if isinstance(node, (NeuronGroup, FloatNeurons)):
                for src in ins[name]:
                    if is_group(nodes[src]):
                        raise ValueError(f"{where}: edge from {src!r} needs a synaptic operator between two "
                                         "neuron groups")
            if isinstance(node, Output) or outs[name] or is_group(node):
                continue
            raise ValueError(f"{where}: the operator's output goes nowhere")
        shapes = {}
        for name, node in nodes.items():
            if is_group(node):
                shapes[name] = node.shape
                neurons = group_neurons(node)
                if neurons is not None:
                    neurons.validate(f"node {name!r}", node.shape)
        for name, node in nodes.items():
            if type(node) in self.OPERATORS.values():
                self._op_shape(name, shapes, ins, ())
            elif isinstance(node, Output):
                shapes[name] = shapes[ins[name][0]]
        object.__setattr__(self, "shapes", shapes)
        object.__setattr__(self, "_projections", tuple(self._lower(ins, shapes)))

    def _op_shape(self, name, shapes, ins, trail):
        if name in shapes:
            return shapes[name]
        if name in trail:
            raise ValueError(f"node {name!r}: a cycle of synaptic operators without a neuron group "
                             f"({' -> '.join(trail + (name,))})")
        src = ins[name][0]
        in_shape = shapes[src] if is_group(self.nodes[src]) else self._op_shape(src, shapes, ins, trail + (name,))
        out = _shape(self.nodes[name].validate(f"node {name!r}", in_shape))
        shapes[name] = out
        return out

    def _lower(self, ins, shapes):
        for dst, node in self.nodes.items():
            if not is_group(node):
                continue
            for last in ins[dst]:
                if isinstance(self.nodes[last], Output):
                    continue
                if math.prod(shapes[last]) != math.prod(node.shape):
                    raise ValueError(f"node {dst!r}: input from {last!r} has shape {shapes[last]}, the group "
                                     f"{node.shape}")
                chain = [last]
                while not is_group(self.nodes[ins[chain[0]][0]]):
                    chain.insert(0, ins[chain[0]][0])
                src = ins[chain[0]][0]
                imag = [n for n in chain if isinstance(self.nodes[n], ImagPart)]
                if imag and (imag != [last] or not is_resonator(group_neurons(node))):
                    raise ValueError(f"node {imag[0]!r}: an ImagPart must feed a resonate-and-fire group directly "
                                     f"(it is the imaginary input of {dst!r})")
                op = compose([(self.nodes[n], shapes[ins[n][0]], n) for n in chain])
                yield Projection(src, dst, op, last, bool(imag))

    # --- views ---------------------------------------------------------------------------------
    def projections(self) -> tuple:
        """The lowered synapses, one per path from a group/input to a group (see module docstring)."""
        return self._projections

    def groups(self) -> list:
        """Names of everything with neurons: inputs with neurons and neuron groups, in node order."""
        return [n for n, node in self.nodes.items() if group_neurons(node) is not None]

    def inputs(self) -> list:
        return [n for n, node in self.nodes.items() if isinstance(node, Input)]

    def outputs(self) -> dict:
        """Output name -> the group (or input) it reads."""
        return {n: self._ins[n][0] for n, node in self.nodes.items() if isinstance(node, Output)}

    def predecessors(self, name: str) -> list:
        return list(self._ins[name])

    def size(self, name: str) -> int:
        return math.prod(self.shapes[name])

    def neurons(self, name: str) -> Neurons:
        return group_neurons(self.nodes[name])

    # --- structure -------------------------------------------------------------------------------
    def components(self) -> list:
        """Strongly connected components of the group graph (through projections), in topological
        order: each a list of group/input names. A component of several groups, or of one group
        with a projection onto itself, is recurrent."""
        names = [n for n, node in self.nodes.items() if is_group(node)]
        succ = {n: [] for n in names}
        for p in self._projections:
            succ[p.src].append(p.dst)
        return _tarjan(names, succ)

    def depths(self) -> dict:
        """Pipeline depth of each group: 0 for groups fed only by inputs (or input groups), else 1 +
        the deepest group feeding it from an earlier component (netx's layer index when the graph
        is a netx chain; recurrent edges inside a component do not count). A group that no input
        reaches (a constant source such as the NIR reader's ``bias_unit``) counts like an input:
        it adds no stage to the groups it feeds."""
        comp_of = {}
        comps = self.components()
        for i, comp in enumerate(comps):
            for n in comp:
                comp_of[n] = i
        driven, todo = set(self.inputs()), list(self.inputs())
        while todo:
            n = todo.pop()
            for p in self._projections:
                if p.src == n and p.dst not in driven:
                    driven.add(p.dst)
                    todo.append(p.dst)
        depth = {}
        for comp in comps:
            for n in comp:
                feeders = [p.src for p in self._projections if p.dst == n and comp_of[p.src] != comp_of[n]]
                group_feeders = [depth[s] for s in feeders
                                 if group_neurons(self.nodes[s]) is not None and s in driven]
                depth[n] = 1 + max(group_feeders) if group_feeders else 0
        return depth

    def latency(self) -> int:
        """Steps (in Lava's timing) from an input to the latest output: the most projections on a path
        from an input to an output's group (each one step, plus its largest synaptic delay),
        recurrent edges inside a component not counted."""
        comp_of = {n: i for i, comp in enumerate(self.components()) for n in comp}
        hops = {}
        for comp in self.components():
            for n in comp:
                feeders = [hops[p.src] + 1 + max_delay(p.op) for p in self._projections
                           if p.dst == n and comp_of[p.src] != comp_of[n]]
                hops[n] = max(feeders, default=0)
        return max((hops[src] for src in self.outputs().values()), default=0)

    # --- persistence ---------------------------------------------------------------------------
    def save(self, path) -> None:
        arrays = {}
        header = {"format": self.FORMAT, "version": FORMAT_VERSION, "dt": self.dt, "meta": self.meta,
                  "nodes": [[name, node_to_dict(node, arrays, f"n{i}")] for i, (name, node) in
                            enumerate(self.nodes.items())],
                  "edges": [list(e) for e in self.edges]}
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def from_header(cls, header: dict, arrays, where: str):
        try:
            nodes = {}
            for name, entry in header["nodes"]:
                if not isinstance(name, str) or name in nodes:
                    raise ValueError(f"{where}: bad or repeated node name {name!r}")
                nodes[name] = node_from_dict(entry, arrays, f"{where}: node {name!r}", cls.NODE_TYPES)
            edges = [tuple(e) for e in header["edges"]]
            if any(len(e) != 2 for e in edges):
                raise ValueError(f"{where}: every edge must be a [src, dst] pair")
            meta = header.get("meta") or {}
            if not isinstance(meta, dict):
                raise ValueError(f"{where}: meta must be a JSON object, got {type(meta).__name__}")
            return cls(nodes, edges, float(header.get("dt", 1.0)), dict(meta))
        except (KeyError, TypeError, AttributeError, IndexError, OverflowError) as err:
            raise ValueError(f"{where}: damaged integer graph (missing or malformed {type(err).__name__}: "
                             f"{err})") from None
        except ValueError as err:  # the graph's own validation names the node; add the file
            raise ValueError(str(err) if str(err).startswith(where) else f"{where}: {err}") from None



@dataclass(frozen=True, eq=False)
class IntGraph(Graph):
    """A quantized spiking network: Loihi's registers and operators (the contract between export,
    the simulator and the targets)."""

    NODE_TYPES = NODE_TYPES
    OPERATORS = OPERATORS
    FORMAT = FORMAT

    @classmethod
    def from_chain(cls, net: IntNetwork) -> "IntGraph":
        """The graph of a feed-forward chain: ``input -> layer0_synapse -> layer0 -> ... -> output``."""
        nodes, edges, prev = {"input": Input(net.input_shape)}, [], "input"
        for i, layer in enumerate(net.layers):
            syn, grp = f"layer{i}_synapse", f"layer{i}"
            nodes[syn] = layer.synapse
            nodes[grp] = NeuronGroup(net.shapes[i + 1], layer.neurons)
            edges += [(prev, syn), (syn, grp)]
            prev = grp
        nodes["output"] = Output()
        edges.append((prev, "output"))
        return cls(nodes, tuple(edges), net.dt, dict(net.meta))


    def to_chain(self, what: str = "this runner") -> IntNetwork:
        """The feed-forward chain this graph is (one plain input, then operator -> group pairs, one
        output), for code that handles chains only; a ``ValueError`` naming ``what`` otherwise."""
        why = None
        inputs = self.inputs()
        if len(inputs) != 1 or self.nodes[inputs[0]].neurons is not None:
            why = "it needs one input without neurons"
        elif len(self.outputs()) != 1:
            why = f"it has {len(self.outputs())} outputs"
        layers, cur = [], inputs[0] if not why else None
        while cur is not None and not why:
            projs = [p for p in self._projections if p.src == cur]
            readers = [b for a, b in self.edges if a == cur]
            if not projs:
                if readers != [next(iter(self.outputs()))]:
                    why = "it branches"
                break
            if len(projs) != 1 or len([p for p in self._projections if p.dst == projs[0].dst]) != 1 \
                    or len([r for r in readers if not isinstance(self.nodes[r], Output)]) != 1:
                why = "it has recurrence, merges or branches"
                break
            p = projs[0]
            layers.append(Layer(p.op, self.neurons(p.dst), name=p.dst))
            cur = p.dst
        if not why and len(layers) != len(self.groups()):
            why = "not every group is on the input-to-output path"
        if why:
            raise ValueError(f"{what} handles feed-forward chains only, and this graph is not one ({why})")
        return IntNetwork(self.nodes[inputs[0]].shape, tuple(layers), self.dt, dict(self.meta))


@dataclass(frozen=True, eq=False)
class FloatGraph(Graph):
    """The float mirror of ``IntGraph``: the same structure with float parameters (``Affine``,
    ``FloatConv2d``, ``FloatNeurons``), what readers produce and quantization maps node by node."""

    NODE_TYPES = FLOAT_NODE_TYPES
    OPERATORS = FLOAT_OPERATORS
    FORMAT = "spikeport.floatgraph"


def load_record(path):
    """Read a ``.npz`` integer record: an ``IntGraph`` or a chain ``IntNetwork`` (older files).

    The file is read through ``sim.npzfile.read_record`` (sizes, dtypes and the memory budget
    checked before anything is allocated, every member read eagerly); every problem with the file
    is a one-line ``ValueError`` naming it."""
    path = Path(path)
    data, header = read_record(path, "spikeport integer network file")
    if header.get("format") == FORMAT:
        version = header.get("version", 0)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f"{path} was written by a newer spikeport (format {version!r})")
        return IntGraph.from_header(header, data, str(path))
    return IntNetwork.from_record(path, header, data)


def as_graph(net) -> IntGraph:
    return net if isinstance(net, IntGraph) else IntGraph.from_chain(net)


# --- composing chains of synaptic operators ------------------------------------------------------

def max_delay(op) -> int:
    """The largest extra synaptic delay of an operator (0 without delays)."""
    d = getattr(op, "delay", None)
    return int(np.max(d)) if d is not None and np.size(d) else 0


def compose(chain: list):
    """One operator equal to applying ``chain`` (``[(op, in_shape, name), ...]``, first applied
    first) with no neuron between them, or a ``ValueError`` naming the nodes.

    Exact compositions (entries of the result are entries of the originals, so every format and
    Lava's sign-mode rules see the same values):
    - ``Flatten`` anywhere: dropped;
    - ``SumPool2d(k)`` then ``Conv2d`` (kernel ``(kh, kw)``, stride ``s``, padding ``p``): a
      ``Conv2d`` with kernel ``(kh k, kw k)``, ``K[o, c, y k + i, x k + j] = W[o, c, y, x]``,
      stride ``s k`` and padding ``p k`` (needs ``p = 0`` or ``H, W`` divisible by ``k``:
      pooling drops a remainder that a padded composed kernel would read);
    - ``SumPool2d(k)`` then ``Dense``: a ``Dense`` reading the un-pooled map,
      ``W'[:, (c, y, x)] = W[:, (c, y // k, x // k)]`` (0 for the dropped remainder);
    - ``SumPool2d(k1)`` then ``SumPool2d(k2)``: ``SumPool2d(k1 k2)`` when the first divides evenly.
    """
    ops = [(op, shape, name) for op, shape, name in chain if not isinstance(op, (Flatten, ImagPart))]
    if not ops:
        raise ValueError(f"node {chain[-1][2]!r}: a {type(chain[-1][0]).__name__} alone is no synapse between two "
                         "neuron groups")
    op, in_shape, name = ops[0]
    for nxt, nxt_shape, nxt_name in ops[1:]:
        op = _compose_two(op, in_shape, nxt, nxt_shape, name, nxt_name)
        name = nxt_name
    return op


def _compose_two(a, a_in, b, b_in, a_name, b_name):
    if not isinstance(a, SumPool2d):
        raise ValueError(f"nodes {a_name!r} -> {b_name!r}: two weighted synaptic operators with no neuron group "
                         f"between them ({a.kind} then {b.kind}); Loihi applies one synapse per hop, and their "
                         "product would not fit the weight format")
    k = int(a.kernel)
    c, h, w = a_in
    if isinstance(b, SumPool2d):
        if h % k or w % k:
            raise ValueError(f"nodes {a_name!r} -> {b_name!r}: pooling {k}x{k} of {a_in} leaves a remainder; "
                             "two poolings compose only when the first divides the map evenly")
        return SumPool2d(k * int(b.kernel))
    if isinstance(b, (Conv2d, FloatConv2d)):
        stride, padding = _shape(b.stride), _shape(b.padding)
        if any(padding) and (h % k or w % k):
            raise ValueError(f"nodes {a_name!r} -> {b_name!r}: a padded convolution after {k}x{k} pooling of "
                             f"{a_in} (not divisible by {k}) cannot be composed exactly")
        wt = np.asarray(b.weight)
        _fits_budget(wt.size * k * k, a_name, b_name)
        kernel = np.repeat(np.repeat(wt, k, axis=2), k, axis=3)  # K[o, c, y k + i, x k + j] = W[o, c, y, x]
        return dataclasses.replace(b, weight=kernel, stride=(stride[0] * k, stride[1] * k),
                                   padding=(padding[0] * k, padding[1] * k))
    if isinstance(b, (Dense, Affine)):
        ph, pw = h // k, w // k
        _fits_budget(np.shape(b.weight)[0] * c * h * w, a_name, b_name)
        cols = np.full((c, h, w), -1, dtype=np.int64)
        pooled = np.arange(c * ph * pw).reshape(c, ph, pw)
        cols[:, :ph * k, :pw * k] = np.repeat(np.repeat(pooled, k, axis=1), k, axis=2)
        wt = np.asarray(b.weight)
        keep, at = cols.reshape(-1) >= 0, np.maximum(cols.reshape(-1), 0)
        wide = np.where(keep, wt[:, at], 0).astype(wt.dtype)
        delay = None if b.delay is None else np.where(keep, np.asarray(b.delay)[:, at], 0)
        if isinstance(b, Affine):
            return Affine(wide, delay=delay)
        # the sign mode Lava determines from the original matrix (zeros added for the remainder
        # must not turn an inhibitory matrix's determination)
        mode = b.sign_mode or F.sign_mode_of(wt)
        return Dense(wide, weight_exp=b.weight_exp, num_weight_bits=b.num_weight_bits, sign_mode=mode, delay=delay)
    raise ValueError(f"nodes {a_name!r} -> {b_name!r}: cannot compose {a.kind} then {b.kind}")


def _fits_budget(entries: int, a_name, b_name) -> None:
    """Refuse, before allocating, a composed operator of more int64 weights than the memory budget."""
    if entries * 8 > MEMORY_BUDGET_BYTES:
        raise ValueError(f"nodes {a_name!r} -> {b_name!r}: the composed operator would hold {entries} weights, "
                         f"more than the {MEMORY_BUDGET_BYTES}-byte memory budget (MEMORY_BUDGET_BYTES)")


def _tarjan(names: list, succ: dict) -> list:
    """Strongly connected components in topological order (sources first), iteratively."""
    index, low, on, stack, comps, counter = {}, {}, set(), [], [], [0]
    for root in names:
        if root in index:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(succ[nxt])))
                elif nxt in on:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                comps.append(comp[::-1])
    return comps[::-1]
