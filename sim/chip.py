"""Chip-level mapping of an ``IntNetwork`` onto Loihi-style cores, and spike-traffic counting.

Chip profiles
    A ``ChipProfile`` holds the structural limits of one chip family (cores per chip, mesh, neurons,
    synaptic memory and axons per core, chips per system) and eight energy/time coefficients. Every
    number carries a ``source`` string saying where it comes from, or that it is an assumption or an
    unverified figure. Profiles are JSON files: the built-in ones live in ``sim/profiles``
    (``loihi1``, ``loihi2``); ``load_profile`` takes a built-in name or a path.

Mapping (``map_network``)
    1. *Per-neuron memory.* A neuron keeps its fan-in synapses in its core's synaptic memory:
       dense ``in_features x num_weight_bits``; conv ``C_in x kH x kW x 9`` bits (Lava's Conv uses
       the weights as given, 9-bit signed), counted for every neuron (no kernel sharing between
       neurons: an upper bound on cores); sum pooling ``k x k x 9`` bits (a pooling neuron reads
       only its own channel). This depends only on shapes, never on weight values, so a retrained
       network maps identically.
    2. *Split.* A layer is cut into contiguous runs of neurons (flattened C order) of balanced sizes
       (they differ by at most one), at most ``cap = min(neurons_per_core, memory // bits per
       neuron)`` neurons each. While a run needs more input axons than ``axons_in_per_core``, or
       more output axons than ``axons_out_per_core`` (bounded as below), ``cap`` is divided by the
       worst run's overshoot (the largest needed/limit ratio) and lowered by at least one. Layers
       are split from the last to the first, because output axons depend on the next layer's runs.
    3. *Pack (next-fit).* Runs are placed in layer order, each onto the most recently opened core if
       that core still has room for its neurons, memory, input axons and output-axon bound, and
       otherwise onto a new core. Small consecutive layers thus share a core.
    4. *Placement.* Cores are numbered in placement order and fill each chip's mesh row by row:
       core ``c`` sits on chip ``c // cores_per_chip`` at ``x = (c % cores_per_chip) % cols``,
       ``y = (c % cores_per_chip) // cols``. More cores than ``max_chips x cores_per_chip`` is a
       ``ValueError`` naming the first layer that does not fit.

Axons (structural: any synapse the layer's shape defines, whatever its weight)
    Input axons of a core: the distinct presynaptic neurons with a synapse onto the core (one per
    neuron, shared by all its synapses there). Output axons of a core: the sum over its neurons of
    the distinct cores each one sends to, i.e. one axon per (neuron, destination core) edge; the
    output layer sends nowhere. During packing the next layer's cores are not known yet, so output
    axons are bounded by the number of next-layer runs a neuron reaches (at least the number of
    cores); ``Core.axons_out`` reports the exact count.

Traffic (``count_traffic``), from recorded spikes
    The input enters from a host location at mesh coordinate ``x = -1, y = 0`` of chip 0, one hop
    west of core (0, 0); chips are tiled in one row, chip ``k`` spanning global columns
    ``k * cols .. k * cols + cols - 1``. A synapse *acts* when its effective weight (after Lava's
    weight rules, ``effective_weight()``) is nonzero; zero-weight synapses are neither routed nor
    processed. Per time step (each count attributed to the step the spike is emitted):

    - spikes: per layer and per core (input spikes at the host);
    - messages: one per (spiking neuron, destination core) pair with at least one acting synapse;
      output-layer spikes are read out, not routed;
    - synaptic ops: per spike, its acting postsynaptic targets (fan-out; for conv and pooling the
      transposed connectivity, padding and stride included), charged to the receiving cores;
    - neuron updates: every neuron of every layer, every step;
    - hops: dimension-order routing, X first then Y, ``|dX| + |dY|`` between global coordinates;
      chip crossings count the chip-column boundaries passed; link loads count the messages over
      every directed link.

    Energy per inference = synops x ``energy_synop_pj`` + neuron updates x
    ``energy_neuron_update_pj`` + messages x ``energy_message_pj`` + hops x ``energy_hop_pj``
    (dynamic energy only). Latency of a step = ``time_step_overhead_ns`` + the busiest core's
    synops x ``time_synop_ns`` + neurons x ``time_neuron_update_ns`` (cores run in parallel, each
    serially) + the longest route's hops x ``time_hop_ns`` (no link contention). Both are computed
    per sample, then averaged over samples.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import formats as F
from .network import Dense, IntNetwork, SumPool2d

PROFILE_DIR = Path(__file__).with_name("profiles")

STRUCTURE = ("cores_per_chip", "mesh", "neurons_per_core", "synaptic_memory_bits_per_core",
             "axons_in_per_core", "axons_out_per_core", "max_chips")
COEFFICIENT_UNITS = {
    "energy_synop_pj": "pJ per synaptic operation",
    "energy_neuron_update_pj": "pJ per neuron update",
    "energy_message_pj": "pJ per spike message",
    "energy_hop_pj": "pJ per message per mesh hop",
    "time_synop_ns": "ns per synaptic operation (serial within a core)",
    "time_neuron_update_ns": "ns per neuron update (serial within a core)",
    "time_hop_ns": "ns per mesh hop",
    "time_step_overhead_ns": "ns per time step (barrier synchronisation)",
}
MAPPING_POLICY = (
    "synaptic memory per neuron = fan-in x weight bits (dense: in_features x num_weight_bits; conv: "
    "C_in x kH x kW x 9; sum pooling: k x k x 9), no kernel sharing between neurons",
    "a layer is split into contiguous balanced runs of at most min(neurons_per_core, memory // bits per "
    "neuron) neurons; while a run exceeds the input- or output-axon limit the cap is divided by the worst "
    "overshoot (and lowered by at least one)",
    "runs are packed next-fit in layer order: onto the last opened core if neurons, memory and axons "
    "fit, else onto a new core",
    "cores fill each chip mesh row by row in placement order; chips are tiled in one row",
    "input axons = distinct presynaptic neurons feeding a core; output axons = sum over a core's "
    "neurons of their distinct destination cores (structural connectivity, any weight)",
)
TRAFFIC_POLICY = (
    "the input enters from a host location at (x = -1, y = 0) of chip 0, one hop west of core (0, 0)",
    "a synapse acts when its effective weight is nonzero; zero-weight synapses are not routed or processed",
    "one message per (spiking neuron, destination core with an acting synapse); output spikes are not routed",
    "synaptic ops per spike = acting fan-out (transposed connectivity for conv/pool), charged to the "
    "receiving cores",
    "every neuron is updated every step; counts are attributed to the step the spike is emitted",
    "dimension-order routing, X then Y; hops = |dX| + |dY| between global mesh coordinates",
    "energy = dynamic terms only; step latency = barrier overhead + busiest core (serial synops and "
    "neuron updates) + longest route, no link contention; both averaged over samples",
)
_F32_EXACT = 2 ** 24


# --- chip profiles -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Coefficient:
    """One energy or time coefficient: its value (unit in ``COEFFICIENT_UNITS``) and its source."""

    value: float
    source: str


@dataclass(frozen=True)
class ChipProfile:
    """Structural limits and cost coefficients of one chip family.

    Attributes
    ----------
    name, description : str
    cores_per_chip : int
        Neuro cores per chip; equals ``mesh[0] * mesh[1]``.
    mesh : tuple of int
        ``(cols, rows)`` of cores per chip, one core per mesh node.
    neurons_per_core, synaptic_memory_bits_per_core, axons_in_per_core, axons_out_per_core : int
        Per-core limits (memory in bits).
    max_chips : int
        Chips available to one network.
    energy_synop_pj, energy_neuron_update_pj, energy_message_pj, energy_hop_pj : Coefficient
    time_synop_ns, time_neuron_update_ns, time_hop_ns, time_step_overhead_ns : Coefficient
    sources : tuple of (str, str)
        ``(field, source)`` for every structural field, in ``STRUCTURE`` order.
    notes : tuple of str
        Free remarks printed in reports.
    """

    name: str
    description: str
    cores_per_chip: int
    mesh: tuple
    neurons_per_core: int
    synaptic_memory_bits_per_core: int
    axons_in_per_core: int
    axons_out_per_core: int
    max_chips: int
    energy_synop_pj: Coefficient
    energy_neuron_update_pj: Coefficient
    energy_message_pj: Coefficient
    energy_hop_pj: Coefficient
    time_synop_ns: Coefficient
    time_neuron_update_ns: Coefficient
    time_hop_ns: Coefficient
    time_step_overhead_ns: Coefficient
    sources: tuple = ()
    notes: tuple = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"chip profile: name must be a non-empty string, got {self.name!r}")
        where = f"chip profile {self.name!r}"
        if not isinstance(self.mesh, (list, tuple)) or len(self.mesh) != 2:
            raise ValueError(f"{where}: mesh must be [cols, rows], got {self.mesh!r}")
        for key in STRUCTURE:
            for v in (self.mesh if key == "mesh" else (getattr(self, key),)):
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                    raise ValueError(f"{where}: {key} must be a positive integer, got {v!r}")
        object.__setattr__(self, "mesh", tuple(int(v) for v in self.mesh))
        if self.mesh[0] * self.mesh[1] != self.cores_per_chip:
            raise ValueError(f"{where}: mesh {self.mesh[0]} x {self.mesh[1]} has {self.mesh[0] * self.mesh[1]} "
                             f"nodes but cores_per_chip = {self.cores_per_chip}")
        for key in COEFFICIENT_UNITS:
            c = getattr(self, key)
            if not isinstance(c, Coefficient):
                raise ValueError(f"{where}: {key} must be a Coefficient, got {c!r}")
            if isinstance(c.value, bool) or not isinstance(c.value, (int, float)) or not math.isfinite(c.value) \
                    or c.value < 0:
                raise ValueError(f"{where}: {key} must be a finite number >= 0, got {c.value!r}")
            if not isinstance(c.source, str) or not c.source.strip():
                raise ValueError(f"{where}: {key} needs a non-empty source string")
        object.__setattr__(self, "sources", tuple((str(k), str(s)) for k, s in self.sources))
        given = dict(self.sources)
        missing = [k for k in STRUCTURE if not given.get(k, "").strip()]
        if missing or set(given) - set(STRUCTURE):
            raise ValueError(f"{where}: sources must name every structural field {list(STRUCTURE)} once; "
                             f"missing {missing}, unknown {sorted(set(given) - set(STRUCTURE))}")
        object.__setattr__(self, "sources", tuple((k, given[k]) for k in STRUCTURE))
        object.__setattr__(self, "notes", tuple(str(n) for n in self.notes))

    @property
    def max_cores(self) -> int:
        return self.max_chips * self.cores_per_chip

    def source(self, key: str) -> str:
        """Where the structural field or coefficient ``key`` comes from."""
        if key in COEFFICIENT_UNITS:
            return getattr(self, key).source
        return dict(self.sources)[key]

    def coefficients(self) -> dict:
        """``{name: Coefficient}`` in ``COEFFICIENT_UNITS`` order."""
        return {k: getattr(self, k) for k in COEFFICIENT_UNITS}

    def to_dict(self) -> dict:
        """The JSON form read by ``from_dict`` (and printed in traffic summaries, with units)."""
        return {"name": self.name, "description": self.description,
                "structure": {k: {"value": list(self.mesh) if k == "mesh" else int(getattr(self, k)),
                                  "source": self.source(k)} for k in STRUCTURE},
                "coefficients": {k: {"value": c.value, "unit": COEFFICIENT_UNITS[k], "source": c.source}
                                 for k, c in self.coefficients().items()},
                "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d, where: str = "chip profile") -> "ChipProfile":
        """Build a profile from its JSON form; any missing, unknown or ill-typed entry is a ``ValueError``."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(d).__name__}")
        _check_keys(d, {"name", "structure", "coefficients"}, {"description", "notes"}, where)
        structure = _entries(d["structure"], STRUCTURE, {"value", "source"}, f"{where}: structure")
        coefficients = _entries(d["coefficients"], COEFFICIENT_UNITS, {"value", "source"},
                                f"{where}: coefficients", optional={"unit"})
        for key, e in coefficients.items():
            if "unit" in e and e["unit"] != COEFFICIENT_UNITS[key]:
                raise ValueError(f"{where}: coefficients.{key} has unit {e['unit']!r}; "
                                 f"this coefficient is in {COEFFICIENT_UNITS[key]!r}")
        notes = d.get("notes", [])
        if not isinstance(notes, list):
            raise ValueError(f"{where}: notes must be a list of strings")
        kwargs = {k: structure[k]["value"] for k in STRUCTURE}
        kwargs.update({k: Coefficient(e["value"], e["source"]) for k, e in coefficients.items()})
        try:
            return cls(name=d["name"], description=d.get("description", ""),
                       sources=tuple((k, structure[k]["source"]) for k in STRUCTURE), notes=tuple(notes), **kwargs)
        except ValueError as err:  # name the file as well as the entry
            raise ValueError(f"{where}: {err}") from None

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _check_keys(d: dict, required: set, optional: set, where: str) -> None:
    missing = sorted(required - set(d))
    unknown = sorted(set(d) - required - optional)
    if missing or unknown:
        raise ValueError(f"{where}: " + "; ".join(
            ([f"missing {missing}"] if missing else []) + ([f"unknown {unknown}"] if unknown else [])))


def _entries(block, names, keys: set, where: str, optional: set = frozenset()) -> dict:
    if not isinstance(block, dict):
        raise ValueError(f"{where}: expected an object of {{name: {{value, source}}}}")
    _check_keys(block, set(names), set(), where)
    for name in names:
        if not isinstance(block[name], dict):
            raise ValueError(f"{where}.{name}: expected {{\"value\": ..., \"source\": \"...\"}}")
        _check_keys(block[name], keys, set(optional), f"{where}.{name}")
    return block


def builtin_profiles() -> list:
    """Names of the profiles shipped in ``sim/profiles``."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.json"))


def load_profile(profile) -> ChipProfile:
    """A ``ChipProfile`` from a built-in name (``loihi1``, ``loihi2``), a JSON path, or a profile.

    Raises ``ValueError`` for an unknown name, a missing or unreadable file, invalid JSON, or any
    missing, unknown or out-of-range entry (naming the file and the entry).
    """
    if isinstance(profile, ChipProfile):
        return profile
    text = str(profile)
    if text in builtin_profiles():
        path = PROFILE_DIR / f"{text}.json"
    else:
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"unknown chip profile {text!r}: not a built-in profile "
                             f"({', '.join(builtin_profiles())}) and no such file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read chip profile {path}: {err}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"chip profile {path} is not valid JSON: {err}") from None
    return ChipProfile.from_dict(data, where=str(path))


# --- connectivity of one layer -----------------------------------------------------------------

def _where(net: IntNetwork, layer: int) -> str:
    name = net.layers[layer].name
    return f"layer {layer}" + (f" ({name})" if name else "")


def layer_labels(net: IntNetwork) -> tuple:
    """A short unique label per layer: its name, or ``layer<i>`` when unnamed or repeated."""
    names = [layer.name for layer in net.layers]
    return tuple(n if n and names.count(n) == 1 and n != "input" else f"layer{i}" for i, n in enumerate(names))


class _Synapses:
    """One layer's connectivity, as the mapper and the traffic counter need it.

    ``reach(a, b)``: which presynaptic neurons have a structural synapse onto neurons ``[a, b)``
    (every synapse the shape defines); ``counts(a, b)``: how many *acting* synapses (nonzero
    effective weight) each presynaptic neuron has onto them. Conv and pooling use the transposed
    connectivity (``_transposed``).
    """

    def __init__(self, synapse, in_shape: tuple, out_shape: tuple):
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.n_in = math.prod(in_shape)
        self.dense = isinstance(synapse, Dense)
        if self.dense:
            self.acting = synapse.effective_weight() != 0  # (out, in)
            self.fan_in = self.n_in
            self.weight_bits = int(synapse.num_weight_bits)
            return
        if isinstance(synapse, SumPool2d):
            conv = synapse.as_conv(in_shape[0])
            self.structure = conv.weight != 0  # a pooling neuron sees its own channel only
            self.channels_seen = 1
        else:
            conv = synapse
            self.structure = np.ones(np.shape(conv.weight), dtype=bool)  # all input channels, whole kernel
            self.channels_seen = in_shape[0]
        self.acting = conv.effective_weight() != 0  # (C_out, C_in, kH, kW)
        self.kernel = self.structure.shape[2:]
        self.stride, self.padding = tuple(conv.stride), tuple(conv.padding)
        self.fan_in = self.channels_seen * self.kernel[0] * self.kernel[1]
        self.weight_bits = F.WEIGHT.bits

    @property
    def memory_bits(self) -> int:
        """Synaptic memory one neuron of this layer takes (bits)."""
        return self.fan_in * self.weight_bits

    def max_presynaptic(self) -> int:
        """Most presynaptic neurons any single neuron of this layer has (padding excluded)."""
        if self.dense:
            return self.n_in
        valid = []
        for size, k, s, p, n in zip(self.in_shape[1:], self.kernel, self.stride, self.padding, self.out_shape[1:]):
            rows = np.arange(n)[:, None] * s - p + np.arange(k)[None]  # input index per (output, tap)
            valid.append(int(((rows >= 0) & (rows < size)).sum(1).max()))
        return self.channels_seen * valid[0] * valid[1]

    def reach(self, a: int, b: int) -> np.ndarray:
        """``(n_in,)`` bool: presynaptic neurons with a structural synapse onto neurons ``[a, b)``."""
        if self.dense:
            return np.ones(self.n_in, dtype=bool)
        return self._transposed(self.structure, a, b) > 0

    def counts(self, a: int, b: int) -> np.ndarray:
        """``(n_in,)`` int64: acting synapses from each presynaptic neuron onto neurons ``[a, b)``."""
        if self.dense:
            return self.acting[a:b].sum(axis=0, dtype=np.int64)
        return self._transposed(self.acting, a, b)

    def _transposed(self, kernel: np.ndarray, a: int, b: int) -> np.ndarray:
        """Synapses (per ``kernel``, bool ``(C_out, C_in, kH, kW)``) from every input neuron onto the
        outputs ``[a, b)``: the transposed convolution of the outputs' 0/1 mask, padding cropped."""
        c_out, oh, ow = self.out_shape
        c_in, h, w = self.in_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        o0, o1 = a // (oh * ow), (b - 1) // (oh * ow) + 1  # output channels the range touches
        mask = np.zeros(c_out * oh * ow)
        mask[a:b] = 1.0
        mask = mask.reshape(c_out, oh * ow)[o0:o1]  # (o, oh*ow)
        out = np.zeros((c_in, h + 2 * ph, w + 2 * pw))  # padded input plane
        for di in range(kh):
            for dj in range(kw):
                tap = kernel[o0:o1, :, di, dj].T.astype(np.float64)  # (C_in, o)
                out[:, di:di + (oh - 1) * sh + 1:sh, dj:dj + (ow - 1) * sw + 1:sw] += \
                    (tap @ mask).reshape(c_in, oh, ow)
        return out[:, ph:ph + h, pw:pw + w].reshape(-1).astype(np.int64)


def _synapses(net: IntNetwork) -> list:
    return [_Synapses(layer.synapse, net.shapes[i], net.shapes[i + 1]) for i, layer in enumerate(net.layers)]


# --- mapping -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fragment:
    """Neurons ``[start, stop)`` (flattened C order) of layer ``layer`` placed on core ``core``."""

    layer: int
    start: int
    stop: int
    core: int


@dataclass(frozen=True)
class Core:
    """One used core: position, occupancy and axon counts (exact, see the module docstring)."""

    index: int
    chip: int
    x: int
    y: int
    neurons: int
    memory_bits: int
    axons_in: int
    axons_out: int
    layers: tuple


@dataclass(frozen=True)
class LayerPlan:
    """How one layer is placed: its size, per-neuron synaptic memory, and fragments."""

    label: str
    kind: str
    shape: tuple
    neurons: int
    fan_in: int
    weight_bits: int
    fragments: tuple

    @property
    def cores(self) -> tuple:
        """Distinct cores holding this layer, in placement order."""
        return tuple(dict.fromkeys(f.core for f in self.fragments))


@dataclass(frozen=True, eq=False)
class Mapping:
    """A network placed on cores: ``layers[l]`` says where layer ``l`` is, ``cores[c]`` what core ``c`` holds."""

    profile: ChipProfile
    input_shape: tuple
    layers: tuple
    cores: tuple

    @property
    def n_cores(self) -> int:
        return len(self.cores)

    @property
    def n_chips(self) -> int:
        return -(-self.n_cores // self.profile.cores_per_chip)

    @property
    def host(self) -> int:
        """Location index of the input/host (after the cores)."""
        return self.n_cores

    def core_of(self, layer: int) -> np.ndarray:
        """``(N,)`` int: the core of every neuron of ``layer``."""
        out = np.empty(self.layers[layer].neurons, dtype=np.int64)
        for f in self.layers[layer].fragments:
            out[f.start:f.stop] = f.core
        return out

    def locations(self) -> tuple:
        """Global mesh coordinates ``(X, Y)`` of every core then the host (``X = -1, Y = 0``)."""
        cols = self.profile.mesh[0]
        X = np.array([c.chip * cols + c.x for c in self.cores] + [-1], dtype=np.int64)
        Y = np.array([c.y for c in self.cores] + [0], dtype=np.int64)
        return X, Y

    def summary(self) -> dict:
        """JSON-serialisable placement: per layer its fragments, per core its position, load and axons."""
        return {"cores_used": self.n_cores, "chips_used": self.n_chips,
                "core_capacity": self.profile.max_cores, "policy": list(MAPPING_POLICY),
                "layers": [{"label": p.label, "kind": p.kind, "shape": list(p.shape), "neurons": p.neurons,
                            "fan_in": p.fan_in, "weight_bits": p.weight_bits,
                            "memory_bits_per_neuron": p.fan_in * p.weight_bits, "cores": list(p.cores),
                            "fragments": [[f.core, f.start, f.stop] for f in p.fragments]}
                           for p in self.layers],
                "cores": [{"index": c.index, "chip": c.chip, "x": c.x, "y": c.y, "neurons": c.neurons,
                           "memory_bits": c.memory_bits, "axons_in": c.axons_in, "axons_out": c.axons_out,
                           "layers": list(c.layers)} for c in self.cores]}


def _balanced(n: int, cap: int) -> list:
    """``[(start, stop), ...]``: ``n`` items in ``ceil(n / cap)`` contiguous runs differing by at most one."""
    k = -(-n // cap)
    sizes = np.full(k, n // k)
    sizes[:n % k] += 1
    stops = np.cumsum(sizes)
    return [(int(b - s), int(b)) for s, b in zip(sizes, stops)]


def _split(net: IntNetwork, syns: list, p: ChipProfile) -> tuple:
    """Runs ``[(start, stop, reach)]`` per layer, and per layer the output-axon bound of every neuron."""
    L = len(syns)
    runs, out_bound = [None] * L, [None] * L
    dests = np.zeros(math.prod(net.shapes[-1]), dtype=np.int64)  # the output layer sends nowhere
    for l in reversed(range(L)):
        syn, where, n = syns[l], _where(net, l), math.prod(net.shapes[l + 1])
        if syn.memory_bits > p.synaptic_memory_bits_per_core:
            raise ValueError(f"{where}: one neuron needs {syn.fan_in} synapses x {syn.weight_bits} bits = "
                             f"{syn.memory_bits} bits of synaptic memory, more than a {p.name} core has "
                             f"(synaptic_memory_bits_per_core = {p.synaptic_memory_bits_per_core})")
        if syn.max_presynaptic() > p.axons_in_per_core:
            raise ValueError(f"{where}: one neuron has {syn.max_presynaptic()} presynaptic neurons, more than "
                             f"a {p.name} core's input axons (axons_in_per_core = {p.axons_in_per_core})")
        if dests.max() > p.axons_out_per_core:
            raise ValueError(f"{where}: one neuron reaches {int(dests.max())} runs (cores) of the next layer, "
                             f"more than a {p.name} core's output axons (axons_out_per_core = "
                             f"{p.axons_out_per_core})")
        cap = min(p.neurons_per_core, p.synaptic_memory_bits_per_core // syn.memory_bits, n)
        while True:  # ends at cap = 1 at the latest: one neuron fits both axon limits (checked above)
            bounds = _balanced(n, cap)
            reach = [syn.reach(a, b) for a, b in bounds]
            overshoot = max(max(r.sum() for r in reach) / p.axons_in_per_core,
                            max(dests[a:b].sum() for a, b in bounds) / p.axons_out_per_core)
            if overshoot <= 1:
                break
            cap = max(1, min(cap - 1, int(cap / overshoot)))
        runs[l] = [(a, b, r) for (a, b), r in zip(bounds, reach)]
        out_bound[l] = dests
        dests = np.sum(reach, axis=0, dtype=np.int64)  # runs of layer l reaching each of its inputs
    return runs, out_bound


class _OpenCore:
    """A core being filled during packing."""

    def __init__(self):
        self.neurons = self.bits = self.out_bound = 0
        self.reach = {}  # layer -> bool mask over that layer's presynaptic neurons
        self.fragments = []

    def axons_in(self, layer: int = -1, reach=None) -> int:
        masks = dict(self.reach)
        if reach is not None:
            masks[layer] = masks[layer] | reach if layer in masks else reach
        return int(sum(m.sum() for m in masks.values()))

    def fits(self, p: ChipProfile, layer: int, n: int, bits: int, reach: np.ndarray, out: int) -> bool:
        return (self.neurons + n <= p.neurons_per_core and self.bits + bits <= p.synaptic_memory_bits_per_core
                and self.out_bound + out <= p.axons_out_per_core
                and self.axons_in(layer, reach) <= p.axons_in_per_core)

    def add(self, layer: int, a: int, b: int, bits: int, reach: np.ndarray, out: int) -> None:
        self.reach[layer] = self.reach[layer] | reach if layer in self.reach else reach
        self.neurons += b - a
        self.bits += bits
        self.out_bound += out
        self.fragments.append((layer, a, b))


def map_network(net: IntNetwork, profile) -> Mapping:
    """Place every neuron of ``net`` on cores of ``profile`` (a ``ChipProfile``, name or path).

    The policy (split, next-fit packing, row-major placement, axon accounting) is in the module
    docstring. Raises ``ValueError`` naming the layer and the limit when a neuron cannot fit a core
    or the network needs more than ``max_chips x cores_per_chip`` cores.
    """
    p = load_profile(profile)
    syns = _synapses(net)
    runs, out_bound = _split(net, syns, p)
    cores = []
    for l, layer_runs in enumerate(runs):
        for a, b, reach in layer_runs:
            bits, out = (b - a) * syns[l].memory_bits, int(out_bound[l][a:b].sum())
            if not cores or not cores[-1].fits(p, l, b - a, bits, reach, out):
                if len(cores) == p.max_cores:
                    raise ValueError(f"{_where(net, l)} does not fit: the network needs more than the "
                                     f"{p.max_cores} cores of max_chips x cores_per_chip = {p.max_chips} x "
                                     f"{p.cores_per_chip} ({p.name})")
                cores.append(_OpenCore())
            cores[-1].add(l, a, b, bits, reach, out)
    fragments = [[] for _ in syns]
    for c, core in enumerate(cores):
        for l, a, b in core.fragments:
            fragments[l].append(Fragment(l, a, b, c))
    # exact output axons: per presynaptic neuron, the distinct cores of the next layer it reaches
    axons_out = np.zeros(len(cores), dtype=np.int64)
    for l in range(1, len(syns)):
        dest_cores = np.zeros(syns[l].n_in, dtype=np.int64)
        for c in dict.fromkeys(f.core for f in fragments[l]):
            dest_cores += cores[c].reach[l]
        for f in fragments[l - 1]:
            axons_out[f.core] += dest_cores[f.start:f.stop].sum()
    cols, cpc = p.mesh[0], p.cores_per_chip
    labels = layer_labels(net)
    return Mapping(
        profile=p, input_shape=net.input_shape,
        layers=tuple(LayerPlan(labels[l], net.layers[l].synapse.kind, net.shapes[l + 1],
                               math.prod(net.shapes[l + 1]), syns[l].fan_in, syns[l].weight_bits,
                               tuple(fragments[l])) for l in range(len(syns))),
        cores=tuple(Core(index=c, chip=c // cpc, x=(c % cpc) % cols, y=(c % cpc) // cols, neurons=core.neurons,
                         memory_bits=core.bits, axons_in=core.axons_in(), axons_out=int(axons_out[c]),
                         layers=tuple(dict.fromkeys(l for l, _, _ in core.fragments)))
                    for c, core in enumerate(cores)))


# --- traffic -----------------------------------------------------------------------------------

def _spike_products(s: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``s @ m`` exactly, as int64, for 0/1 spikes ``s`` ``(R, N)`` float32 and counts ``m`` ``(N, K)`` >= 0.

    float32 BLAS is exact while every result is below ``2**24`` (bounded by ``m``'s column sums);
    float64 otherwise.
    """
    if m.size and m.sum(axis=0).max() >= _F32_EXACT:
        return (s.astype(np.float64) @ m.astype(np.float64)).astype(np.int64)
    return (s @ m.astype(np.float32)).astype(np.int64)


def _link_loads(pairs: np.ndarray, X: np.ndarray, Y: np.ndarray, width: int, rows: int) -> dict:
    """Messages over every directed mesh link under X-then-Y routing.

    ``pairs`` ``(T, P, P)``: messages per step from location ``a`` to ``b``; ``X`` (shifted so the
    host column is 0) and ``Y`` their coordinates. Returns ``{"+x", "-x": (T, rows, width - 1),
    "+y", "-y": (T, rows - 1, width)}``: link ``[y, x]`` of ``+x`` joins ``(x, y)`` to ``(x + 1, y)``,
    of ``-x`` the reverse; link ``[y, x]`` of ``+y`` joins ``(x, y)`` to ``(x, y + 1)``, of ``-y``
    the reverse. Built from difference arrays over all pairs at once.
    """
    T = pairs.shape[0]
    a, b = np.nonzero(pairs.sum(axis=0))
    c = pairs[:, a, b].T  # (pairs, T)
    xa, xb, ya, yb = X[a], X[b], Y[a], Y[b]
    horizontal = np.zeros((2, rows, width + 1, T), dtype=np.int64)  # [+x, -x], difference along x
    vertical = np.zeros((2, rows + 1, width, T), dtype=np.int64)    # [+y, -y], difference along y
    for d, sel, lo, hi in ((0, xb > xa, xa, xb), (1, xb < xa, xb, xa)):  # X leg, on the source row
        np.add.at(horizontal[d], (ya[sel], lo[sel]), c[sel])
        np.add.at(horizontal[d], (ya[sel], hi[sel]), -c[sel])
    for d, sel, lo, hi in ((0, yb > ya, ya, yb), (1, yb < ya, yb, ya)):  # Y leg, on the destination column
        np.add.at(vertical[d], (lo[sel], xb[sel]), c[sel])
        np.add.at(vertical[d], (hi[sel], xb[sel]), -c[sel])
    h = np.cumsum(horizontal, axis=2)[:, :, :width - 1].transpose(0, 3, 1, 2)
    v = np.cumsum(vertical, axis=1)[:, :rows - 1].transpose(0, 3, 1, 2)
    return {"+x": h[0], "-x": h[1], "+y": v[0], "-y": v[1]}


@dataclass(frozen=True, eq=False)
class Traffic:
    """Spike traffic of ``samples`` inferences of ``steps`` steps on a ``Mapping``.

    Count arrays are totals over the samples, per step (first axis ``T``). Populations are
    ``labels`` = ``("input", layer labels...)``; locations are the mapping's cores then the host.

    Attributes
    ----------
    spikes : (T, L + 1) int64
        Spikes emitted per population.
    messages : (T, L + 1) int64
        Messages sent per population (the output layer sends none).
    synops : (T, L) int64
        Synaptic operations received per layer.
    core_spikes, core_messages_out, core_messages_in, core_synops : (T, n_cores + 1) int64
        The same per location.
    hops, chip_crossings : (T,) int64
    links : dict of str to int64 array
        Messages per directed link per step (see ``_link_loads``).
    latency_ns : (S, T) float64
        Modelled duration of every step of every sample.
    """

    mapping: Mapping
    labels: tuple
    samples: int
    steps: int
    spikes: np.ndarray
    messages: np.ndarray
    synops: np.ndarray
    core_spikes: np.ndarray
    core_messages_out: np.ndarray
    core_messages_in: np.ndarray
    core_synops: np.ndarray
    hops: np.ndarray
    chip_crossings: np.ndarray
    links: dict
    latency_ns: np.ndarray

    @property
    def layer_neurons(self) -> np.ndarray:
        """``(L,)`` neurons per layer: neuron updates per step per sample."""
        return np.array([p.neurons for p in self.mapping.layers], dtype=np.int64)

    def energy_pj(self) -> dict:
        """Energy terms per step, ``(T,)`` each, mean per inference, plus their ``total``."""
        p, S = self.mapping.profile, self.samples
        terms = {"synaptic_ops": self.synops.sum(1) * p.energy_synop_pj.value / S,
                 "neuron_updates": np.full(self.steps, self.layer_neurons.sum() * p.energy_neuron_update_pj.value),
                 "messages": self.messages.sum(1) * p.energy_message_pj.value / S,
                 "hops": self.hops * p.energy_hop_pj.value / S}
        terms["total"] = sum(terms.values())
        return terms

    def link_peak(self) -> np.ndarray:
        """``(T,)``: messages over the busiest link at each step (totals over samples)."""
        return np.max([v.reshape(self.steps, -1).max(1, initial=0) for v in self.links.values()], axis=0)

    def busiest_link(self):
        """The directed link with the most messages over the run and its endpoints, or None without messages."""
        total, direction, (y, x) = max(
            ((int(v.sum(0).max()), d, np.unravel_index(int(v.sum(0).argmax()), v.shape[1:]))
             for d, v in self.links.items() if v[0].size), key=lambda e: e[0])
        if total == 0:
            return None
        low = (int(x) - 1, int(y))  # link arrays index the host column as x = 0
        high = (low[0] + 1, low[1]) if direction[1] == "x" else (low[0], low[1] + 1)
        start, end = (low, high) if direction[0] == "+" else (high, low)
        return {"direction": direction, "from": self._place(*start), "to": self._place(*end),
                "messages_total": total, "messages_per_inference": total / self.samples}

    def _place(self, X: int, Y: int) -> str:
        if X < 0:
            return "host" if Y == 0 else f"host column (x=-1, y={Y})"
        cols = self.mapping.profile.mesh[0]
        return f"chip {X // cols} (x={X % cols}, y={Y})"

    def per_step_rows(self) -> list:
        """One dict per step (same keys in every row), mean per inference: CSV-ready."""
        S, energy = self.samples, self.energy_pj()["total"]
        peak, latency = self.link_peak(), self.latency_ns.mean(0)
        rows = []
        for t in range(self.steps):
            row = {"t": t}
            row.update({f"spikes_{n}": self.spikes[t, i] / S for i, n in enumerate(self.labels)})
            row.update({f"synops_{n}": self.synops[t, i] / S for i, n in enumerate(self.labels[1:])})
            row.update({"messages": self.messages[t].sum() / S, "synaptic_ops": self.synops[t].sum() / S,
                        "neuron_updates": int(self.layer_neurons.sum()), "hops": self.hops[t] / S,
                        "chip_crossings": self.chip_crossings[t] / S, "busiest_link_messages": peak[t] / S,
                        "energy_pj": float(energy[t]), "latency_ns": float(latency[t])})
            rows.append({k: float(v) if isinstance(v, np.floating) else v for k, v in row.items()})
        return rows

    def summary(self) -> dict:
        """JSON-serialisable summary: profile (every number with its source), mapping, per-inference
        totals, energy and latency, per-layer counts, busiest link and the counting policy."""
        S, T = self.samples, self.steps
        energy = {k: float(v.sum()) for k, v in self.energy_pj().items()}
        per_step = self.latency_ns.mean(0)
        n_in = math.prod(self.mapping.input_shape)
        sizes = [n_in] + [int(n) for n in self.layer_neurons]
        layers = []
        for i, label in enumerate(self.labels):
            spikes = float(self.spikes[:, i].sum() / S)
            plan = self.mapping.layers[i - 1] if i else None
            layers.append({"label": label, "kind": plan.kind if i else "input",
                           "shape": list(plan.shape if i else self.mapping.input_shape),
                           "neurons": sizes[i], "spikes": spikes,
                           "firing_rate": spikes / (sizes[i] * T), "messages": float(self.messages[:, i].sum() / S),
                           "synaptic_ops": float(self.synops[:, i - 1].sum() / S) if i else 0.0,
                           "neuron_updates": sizes[i] * T if i else 0,
                           "cores": list(plan.cores) if i else ["host"]})
        return {
            "profile": self.mapping.profile.to_dict(),
            "input": {"samples": S, "steps": T, "shape": list(self.mapping.input_shape), "neurons": n_in},
            "mapping": self.mapping.summary(),
            "per_inference": {
                "spikes": float(self.spikes.sum() / S), "messages": float(self.messages.sum() / S),
                "synaptic_ops": float(self.synops.sum() / S), "neuron_updates": int(self.layer_neurons.sum()) * T,
                "hops": float(self.hops.sum() / S), "chip_crossings": float(self.chip_crossings.sum() / S),
                "energy_pj": energy,
                "latency_ns": float(self.latency_ns.sum(1).mean()),
                "latency_per_step_ns": {"mean": float(per_step.mean()), "max": float(self.latency_ns.max())}},
            "layers": layers,
            "cores": [{"index": c, "spikes": float(self.core_spikes[:, c].sum() / S),
                       "messages_out": float(self.core_messages_out[:, c].sum() / S),
                       "messages_in": float(self.core_messages_in[:, c].sum() / S),
                       "synaptic_ops": float(self.core_synops[:, c].sum() / S)}
                      for c in range(self.mapping.n_cores)],
            "busiest_link": self.busiest_link(),
            "traffic_policy": list(TRAFFIC_POLICY),
        }


def _as_spikes(x, n: int, where: str, shape=None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 3 or math.prod(x.shape[2:]) != n or (shape is not None and x.shape[:2] != shape):
        want = f"({shape[0]}, {shape[1]}, {n})" if shape else f"(samples, T, {n})"
        raise ValueError(f"{where}: spikes must have shape {want}, got {x.shape}")
    return x.reshape(x.shape[0], x.shape[1], n)


def count_traffic(net: IntNetwork, mapping: Mapping, layer_spikes, input_spikes) -> Traffic:
    """Count spikes, messages, synaptic ops, hops and link loads of recorded spikes on ``mapping``.

    Parameters
    ----------
    net : IntNetwork
        The network ``mapping`` was made for.
    mapping : Mapping
        From ``map_network(net, profile)``.
    layer_spikes : list of array
        Per layer, ``(S, T, N_l)`` 0/1 spikes (``simulate(..., record=True).spikes``).
    input_spikes : array
        ``(S, T, *input_shape)`` 0/1 input spikes, emitted by the host location.

    Returns
    -------
    Traffic
    """
    if mapping.input_shape != net.input_shape or \
            tuple(p.shape for p in mapping.layers) != tuple(net.shapes[1:]):
        raise ValueError("the mapping was made for a network of other shapes; map this network first")
    L = len(net.layers)
    if len(layer_spikes) != L:
        raise ValueError(f"expected spikes of {L} layers, got {len(layer_spikes)}")
    x = _as_spikes(input_spikes, math.prod(net.input_shape), "input")
    S, T = x.shape[:2]
    pops = [x] + [_as_spikes(s, p.neurons, f"layer {l} ({p.label})", (S, T))
                  for l, (s, p) in enumerate(zip(layer_spikes, mapping.layers))]
    host, n_loc = mapping.host, mapping.n_cores + 1
    X, Y = mapping.locations()
    cols = mapping.profile.mesh[0]
    hop = np.abs(X[:, None] - X[None]) + np.abs(Y[:, None] - Y[None])  # (loc, loc)
    crossing = np.abs(np.floor_divide(X, cols)[:, None] - np.floor_divide(X, cols)[None])
    sources = [[(host, 0, x.shape[2])]] + [[(f.core, f.start, f.stop) for f in p.fragments] for p in mapping.layers]

    def zeros(*shape):
        return np.zeros(shape, dtype=np.int64)
    spikes, messages, synops = zeros(T, L + 1), zeros(T, L + 1), zeros(T, L)
    core_spikes, core_out, core_in = zeros(T, n_loc), zeros(T, n_loc), zeros(T, n_loc)
    core_synops = zeros(S, T, n_loc)  # per sample: the step latency needs each sample's busiest core
    hops, crossings, longest = zeros(T), zeros(T), zeros(S, T)
    pairs = zeros(T, n_loc, n_loc)  # messages per step from location a to location b
    for i, s in enumerate(pops):
        spikes[:, i] = s.sum(axis=(0, 2), dtype=np.int64)
        for core, a, b in sources[i]:
            core_spikes[:, core] += s[..., a:b].sum(axis=(0, 2), dtype=np.int64)
    for l, syn in enumerate(_synapses(net)):
        dst = list(mapping.layers[l].cores)
        D = np.zeros((syn.n_in, len(dst)), dtype=np.int64)  # acting synapses presynaptic -> each core
        for f in mapping.layers[l].fragments:
            D[:, dst.index(f.core)] += syn.counts(f.start, f.stop)
        s = pops[l].reshape(S * T, -1).astype(np.float32)  # (S*T, N) 0/1, presynaptic spikes
        received = _spike_products(s, D).reshape(S, T, -1)  # (S, T, K)
        core_synops[..., dst] += received
        synops[:, l] = received.sum(axis=(0, 2))
        reach = D > 0
        for core, a, b in sources[l]:
            m = _spike_products(s[:, a:b], reach[a:b]).reshape(S, T, -1)  # (S, T, K) messages core -> dst
            total = m.sum(0)  # (T, K)
            core_out[:, core] += total.sum(-1)
            core_in[:, dst] += total
            messages[:, l] += total.sum(-1)
            pairs[:, core, dst] += total
            hops += total @ hop[core, dst]
            crossings += total @ crossing[core, dst]
            longest = np.maximum(longest, np.where(m > 0, hop[core, dst], 0).max(-1))
    p = mapping.profile
    neurons = np.array([c.neurons for c in mapping.cores] + [0])
    busy = core_synops * p.time_synop_ns.value + neurons * p.time_neuron_update_ns.value  # (S, T, loc)
    latency = p.time_step_overhead_ns.value + busy.max(-1) + longest * p.time_hop_ns.value
    links = _link_loads(pairs, X + 1, Y, mapping.n_chips * cols + 1, p.mesh[1])
    return Traffic(mapping=mapping, labels=("input",) + tuple(pl.label for pl in mapping.layers), samples=S,
                   steps=T, spikes=spikes, messages=messages, synops=synops, core_spikes=core_spikes,
                   core_messages_out=core_out, core_messages_in=core_in,
                   core_synops=core_synops.sum(0), hops=hops, chip_crossings=crossings, links=links,
                   latency_ns=latency)
