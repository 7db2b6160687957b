"""Chip-level model of an integer graph on Loihi-style cores: mapping, per-core table, spike traffic.

The model takes any ``IntGraph`` (``sim/graph.py``: merges, recurrent projections, inputs with
neurons) or an ``IntNetwork`` chain (converted with ``IntGraph.from_chain``) and works on its
lowered projections (``Graph.projections()``: one Dense, Conv2d or SumPool2d per edge between two
populations). Connectivity is derived per kernel and per core from the operator's shape; no dense
connectivity matrix of a convolution is ever built, so mapping and counting are linear in neurons
and synapses.

Chip profiles (``sim/profiles/*.json``)
    A ``ChipProfile`` holds structural limits (cores per chip, mesh, neurons, synaptic memory words,
    axons per core, chips per system), the synapse encoding (word width, per-synapse overhead of
    dense synapses), two mapping rules and nine energy/time coefficients. Every number and rule
    carries a ``source`` string: a publication or file it comes from, or ``ASSUMPTION``/``INFERRED``
    with the reason. ``load_profile`` takes a built-in name (``loihi1``, ``loihi2``) or a JSON path.

Neuron kinds (``NEURON_KINDS``, ``check_neuron_kinds``)
    Two kinds of neuron registers, by exact type: Loihi CUBA (LIF) ``Neurons`` and Lava's sigma-delta
    neurons ``SigmaDelta`` (lava-dl SDNN: ``SigmaDelta``, the ``Delta`` input encoder, the ``Sigma``
    output). Any other kind is refused in one line: its state and message format are not modelled.
    A sigma-delta neuron keeps more state than a CUBA one (Lava's ``PySigmaDeltaModelFixed``,
    lava/proc/sdn/models.py 263-277: sigma, act, residue and error at 24 bits and a 16-bit bias,
    against ``u`` and ``v`` at 24 bits and a 13-bit ``bias_mant``, lava/proc/lif/models.py 80-85),
    but no profile figure gives a neuron budget per kind, so a sigma-delta neuron takes one of
    ``neurons_per_core`` like a CUBA one (an ASSUMPTION). Intel's compiler table for PilotNet SDNN
    (lava-dl ``pilotnet_sdnn/benchmark.ipynb``; bench/CALIBRATION.md) does not contradict it: it
    puts as many neurons on each convolution core as the LIF table (3,072, 2,160, 2,688, 2,048,
    2,048), which any limit in [3,072, 4,095] reproduces, the LIF-inferred 3,584 included (61 of 61
    cores; tests/test_chip_sdnn.py).

Mapping (``map_network``); the rules are the ones Intel's Loihi 2 compiler is seen to apply in the
per-core tables it prints (lava-dl ``tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb``):

    1. *One neuron group per core.* Cores never mix groups (every row of Intel's tables has
       ``NeuronGr = 1``). Groups are placed in node order; plain inputs stay on the host, an input
       with neurons (netx's Input block) is placed on cores like any group, with no synapses.
    2. *Tiles.* A group is viewed as ``(C, H, W)`` (a flat group as ``(N, 1, 1)``) and cut into
       boxes of neurons, each on one core. With the ``spatial_tiles`` rule (Loihi 2) a feature map
       is cut into slices of whole columns (all channels and rows), the slice width the largest
       power of two <= W that fits every limit; if one column does not fit, into row slices of one
       column (power-of-two heights), then channel runs. When even a one-neuron tile's kernel
       exceeds the synaptic memory (a kernel costs the same whatever the slice), the channels are
       first cut into runs by the ratio rule below and each run is sliced (an ASSUMPTION: Intel's
       tables show no such case). Otherwise (and for flat groups) the group
       is cut along channels, then rows, then columns, into ``k`` balanced runs (sizes differ by at
       most one), starting at ``k = 1`` and multiplying ``k`` by ``ceil(worst usage / limit)``
       until every tile fits (Intel's compiler: a dense layer needing 61,440 of 12,000 synaptic
       words went to 6, then 12 cores).
    3. *Per-core usage of a tile* (``_usage``), summed over the group's incoming projections:
       - dense: every input is one axon; synaptic words = inputs x ``ceil(n x b / word_bits)``,
         ``n`` the tile's neurons, ``b = num_weight_bits + dense_synapse_overhead_bits``;
       - convolution and pooling with ``shared_conv_kernels`` (Loihi 2): the kernel is stored once
         per core, ``C_in_seen x kH x kW x ceil(C_tile x b / word_bits)`` words (``C_in_seen`` =
         C_in for a convolution, 1 for pooling), ``b`` the fewest bits holding the layer's
         weights (``weight_bits``); input axons = the source cores the tile's receptive box
         touches (one axon per source core, as Loihi 2's convolution messages address a core);
       - convolution without sharing (Loihi 1): ``ceil(n x fan_in x b / word_bits)`` words and one
         axon per distinct presynaptic neuron of the receptive box.
       Output axons (Intel's "axon map") of a core = the sum over its neurons of the distinct
       destination cores each has a structural synapse onto; a group whose cores exceed
       ``axons_out_per_core`` is cut into more tiles (``k`` multiplied as in 2) and everything
       re-mapped.
    4. *Placement.* Cores are numbered in placement order and fill each chip's mesh row by row:
       core ``c`` sits on chip ``c // cores_per_chip`` at ``x = (c % cores_per_chip) % cols``,
       ``y = (c % cores_per_chip) // cols``. More than ``max_chips x cores_per_chip`` cores is a
       ``ValueError`` naming the group that does not fit.

Traffic (``count_traffic``), from recorded spikes (0/1 spikes or nonzero graded payloads)
    A *spike* is a 0/1 spike or a nonzero graded payload: the int32 payloads a sigma-delta group
    sends (what the simulator records as its spikes; a neuron sends one only when its activation
    changed by at least its threshold), or a graded value from the host. Each is counted exactly
    as a 0/1 spike. Graded messages are charged as binary ones (``GRADED_CHARGE``: no published
    per-operation figure for them was found); they are also counted apart.
    The host sits at mesh coordinate ``x = -1, y = 0`` of chip 0; chips are tiled in one row. A
    synapse *acts* when its effective weight (Lava's rules, ``effective_weight()``) is nonzero. Per
    projection and destination core, per step, from the spikes of the source population:
    - messages: one per (spiking neuron, destination core with an acting synapse); every
      projection counts, recurrent ones included; output groups with no outgoing projection send
      nothing;
    - synaptic ops: per spike, its acting targets on that core (transposed kernel for convolution
      and pooling, padding and stride included);
    - neuron updates: every neuron of every group (input groups included), every step;
    - hops: dimension-order routing, X then Y, ``|dX| + |dY|``; link loads per directed link.
    Dynamic energy per inference = synops x ``energy_synop_pj`` + neuron updates x
    ``energy_neuron_update_pj`` + messages x ``energy_message_pj`` + hops x ``energy_hop_pj``,
    graded or not.
    Step latency = ``time_step_overhead_ns`` + the busiest core (serial synops and neuron updates)
    + the longest route x ``time_hop_ns``. Static energy = ``static_power_mw`` x chips used x
    latency; total = dynamic + static. Counts are attributed to the step the spike is emitted.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .graph import IntGraph, SigmaDelta, as_graph
from .network import Dense, Neurons, SumPool2d

PROFILE_DIR = Path(__file__).with_name("profiles")

STRUCTURE = ("cores_per_chip", "mesh", "neurons_per_core", "synaptic_memory_words_per_core", "synapse_word_bits",
             "dense_synapse_overhead_bits", "axons_in_per_core", "axons_out_per_core", "max_chips")
RULES = ("shared_conv_kernels", "spatial_tiles")
COEFFICIENT_UNITS = {
    "energy_synop_pj": "pJ per synaptic operation",
    "energy_neuron_update_pj": "pJ per neuron update",
    "energy_message_pj": "pJ per spike message",
    "energy_hop_pj": "pJ per message per mesh hop",
    "time_synop_ns": "ns per synaptic operation (serial within a core)",
    "time_neuron_update_ns": "ns per neuron update (serial within a core)",
    "time_hop_ns": "ns per mesh hop",
    "time_step_overhead_ns": "ns per time step (barrier synchronisation)",
    "static_power_mw": "mW of static power per chip used",
}
MAPPING_POLICY = (
    "one neuron group per core; plain inputs stay on the host, inputs with neurons take cores",
    "spatial_tiles: feature maps in slices of whole columns (power-of-two widths), then rows, then channels; "
    "otherwise k balanced runs along channels, rows, columns, k multiplied by ceil(worst usage / limit) "
    "until every tile fits",
    "dense synapses: inputs x ceil(n x (weight bits + overhead) / word bits) words per core",
    "shared_conv_kernels: C_in x kH x kW x ceil(C_tile x weight bits / word bits) words per core, one "
    "input axon per source core; otherwise per-neuron kernels and one axon per presynaptic neuron",
    "output axons = sum over a core's neurons of their distinct destination cores (structural)",
    "neuron kinds: CUBA and sigma-delta (SDNN) groups, any other kind refused; a sigma-delta neuron takes one of "
    "neurons_per_core like a CUBA one (ASSUMPTION: no profile figure per kind; Intel's PilotNet SDNN table puts "
    "the same neurons per core as its LIF table)",
    "cores fill each chip mesh row by row in placement order; chips are tiled in one row",
)
# Graded messages (sigma-delta payloads, graded host inputs) are charged as binary spikes: say why wherever
# the energy is reported (summary, report). Searched: LOIHI.md, ANCHORS.md, both profiles' sources.
GRADED_CHARGE = (
    "graded messages (int32 payloads of sigma-delta groups, graded host inputs) and the synaptic ops they cause "
    "are charged as binary spikes (energy_message_pj, energy_hop_pj, energy_synop_pj, time_synop_ns): no published "
    "per-operation Loihi 2 figure for a graded message or a graded synaptic op (a multiply instead of an add) was "
    "found (LOIHI.md, ANCHORS.md and the profiles' sources give none), so none is invented; their counts are "
    "reported apart (graded_messages, graded_synaptic_ops) for a coefficient of one's own")
TRAFFIC_POLICY = (
    "the host sits at (x = -1, y = 0) of chip 0, one hop west of core (0, 0)",
    "a synapse acts when its effective weight is nonzero; zero-weight synapses are not routed or processed",
    "one message per (spiking neuron, destination core with an acting synapse), every projection "
    "(recurrent ones included); graded payloads (sigma-delta groups, graded inputs) count as spikes when nonzero",
    GRADED_CHARGE,
    "synaptic ops per spike = acting targets on the receiving core (transposed kernel for conv/pool)",
    "every neuron of every group is updated every step; counts are attributed to the step the spike is emitted",
    "dimension-order routing, X then Y; hops = |dX| + |dY| between global mesh coordinates",
    "dynamic energy = synops, neuron updates, messages and hops; static = static power x chips x time; "
    "step latency = barrier overhead + busiest core + longest route, no link contention; averaged over samples",
)
_F32_EXACT = 2 ** 24


# --- neuron kinds ------------------------------------------------------------------------------

# Register types the chip model knows, by exact type (a subclass may hold other state or send other
# messages, so it is refused too): Loihi CUBA (LIF) neurons, and Lava's sigma-delta neurons (lava-dl SDNN).
NEURON_KINDS = {Neurons: "CUBA", SigmaDelta: "sigma-delta"}


def neuron_kind(neurons) -> str:
    """``"CUBA"``, or ``"sigma-delta (<mode>)"`` for Lava's ``SigmaDelta``, ``Delta`` and ``Sigma``."""
    kind = NEURON_KINDS[type(neurons)]
    return f"{kind} ({neurons.mode})" if isinstance(neurons, SigmaDelta) else kind


def check_neuron_kinds(graph: IntGraph, what: str) -> None:
    """A one-line ``ValueError`` naming the first group whose registers are not a kind in ``NEURON_KINDS``.

    A whitelist: a neuron model added to the graph later (its state size and message format unknown
    here) is refused until the chip model is taught it, instead of being mapped and counted as LIF."""
    for name in graph.groups():
        neurons = graph.neurons(name)
        if type(neurons) not in NEURON_KINDS:
            raise ValueError(f"{what} does not model neurons of kind {type(neurons).__name__} (group {name!r}); "
                             f"it models {' and '.join(t.__name__ for t in NEURON_KINDS)} groups only")


# --- chip profiles -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Coefficient:
    """One energy or time coefficient: its value (unit in ``COEFFICIENT_UNITS``) and its source."""

    value: float
    source: str


@dataclass(frozen=True)
class ChipProfile:
    """Structural limits, synapse encoding, mapping rules and cost coefficients of one chip family.

    Attributes
    ----------
    cores_per_chip : int
        Neuro cores per chip; equals ``mesh[0] * mesh[1]``.
    mesh : tuple of int
        ``(cols, rows)`` of cores per chip, one core per mesh node.
    neurons_per_core, synaptic_memory_words_per_core, axons_in_per_core, axons_out_per_core : int
        Per-core limits (memory in words of ``synapse_word_bits`` bits).
    dense_synapse_overhead_bits : int
        Bits a dense synapse takes beyond its weight bits (format and index).
    max_chips : int
        Chips available to one network.
    shared_conv_kernels, spatial_tiles : bool
        Mapping rules (module docstring).
    energy_*, time_*, static_power_mw : Coefficient
    sources : tuple of (str, str)
        ``(field, source)`` for every structural field and rule.
    """

    name: str
    description: str
    cores_per_chip: int
    mesh: tuple
    neurons_per_core: int
    synaptic_memory_words_per_core: int
    synapse_word_bits: int
    dense_synapse_overhead_bits: int
    axons_in_per_core: int
    axons_out_per_core: int
    max_chips: int
    shared_conv_kernels: bool
    spatial_tiles: bool
    energy_synop_pj: Coefficient
    energy_neuron_update_pj: Coefficient
    energy_message_pj: Coefficient
    energy_hop_pj: Coefficient
    time_synop_ns: Coefficient
    time_neuron_update_ns: Coefficient
    time_hop_ns: Coefficient
    time_step_overhead_ns: Coefficient
    static_power_mw: Coefficient
    sources: tuple = ()
    notes: tuple = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"chip profile: name must be a non-empty string, got {self.name!r}")
        where = f"chip profile {self.name!r}"
        if not isinstance(self.mesh, (list, tuple)) or len(self.mesh) != 2:
            raise ValueError(f"{where}: mesh must be [cols, rows], got {self.mesh!r}")
        for key in STRUCTURE:
            low = 0 if key == "dense_synapse_overhead_bits" else 1
            for v in (self.mesh if key == "mesh" else (getattr(self, key),)):
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                    raise ValueError(f"{where}: {key} must be an integer >= {low}, got {v!r}")
        object.__setattr__(self, "mesh", tuple(int(v) for v in self.mesh))
        if self.mesh[0] * self.mesh[1] != self.cores_per_chip:
            raise ValueError(f"{where}: mesh {self.mesh[0]} x {self.mesh[1]} has {self.mesh[0] * self.mesh[1]} "
                             f"nodes but cores_per_chip = {self.cores_per_chip}")
        for key in RULES:
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{where}: rule {key} must be true or false, got {getattr(self, key)!r}")
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
        fields = STRUCTURE + RULES
        missing = [k for k in fields if not given.get(k, "").strip()]
        if missing or set(given) - set(fields):
            raise ValueError(f"{where}: sources must name every structural field and rule {list(fields)} once; "
                             f"missing {missing}, unknown {sorted(set(given) - set(fields))}")
        object.__setattr__(self, "sources", tuple((k, given[k]) for k in fields))
        object.__setattr__(self, "notes", tuple(str(n) for n in self.notes))

    @property
    def max_cores(self) -> int:
        return self.max_chips * self.cores_per_chip

    def source(self, key: str) -> str:
        """Where the structural field, rule or coefficient ``key`` comes from."""
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
                "rules": {k: {"value": bool(getattr(self, k)), "source": self.source(k)} for k in RULES},
                "coefficients": {k: {"value": c.value, "unit": COEFFICIENT_UNITS[k], "source": c.source}
                                 for k, c in self.coefficients().items()},
                "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d, where: str = "chip profile") -> "ChipProfile":
        """Build a profile from its JSON form; any missing, unknown or ill-typed entry is a ``ValueError``."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(d).__name__}")
        _check_keys(d, {"name", "structure", "rules", "coefficients"}, {"description", "notes"}, where)
        structure = _entries(d["structure"], STRUCTURE, {"value", "source"}, f"{where}: structure")
        rules = _entries(d["rules"], RULES, {"value", "source"}, f"{where}: rules")
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
        kwargs.update({k: rules[k]["value"] for k in RULES})
        kwargs.update({k: Coefficient(e["value"], e["source"]) for k, e in coefficients.items()})
        sources = tuple((k, structure[k]["source"]) for k in STRUCTURE) + tuple((k, rules[k]["source"]) for k in RULES)
        try:
            return cls(name=d["name"], description=d.get("description", ""), sources=sources, notes=tuple(notes),
                       **kwargs)
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


# --- shapes, tiles and one projection's connectivity -------------------------------------------

def _view3(shape: tuple) -> tuple:
    """A population as ``(C, H, W)``: feature maps as they are, anything else as ``(N, 1, 1)``."""
    return tuple(int(s) for s in shape) if len(shape) == 3 else (math.prod(shape), 1, 1)


def _box_size(box) -> int:
    c0, c1, y0, y1, x0, x1 = box
    return (c1 - c0) * (y1 - y0) * (x1 - x0)


def _box_index(box, shape3) -> np.ndarray:
    """Flat C-order neuron indices of ``box`` in a population of ``shape3``, in box order."""
    c0, c1, y0, y1, x0, x1 = box
    _, h, w = shape3
    return (np.arange(c0, c1)[:, None, None] * (h * w) + np.arange(y0, y1)[None, :, None] * w
            + np.arange(x0, x1)[None, None, :]).reshape(-1)


def weight_bits(weights) -> int:
    """The fewest bits holding every weight of a layer, sign included, in the manner of Lava's
    ``optimize_weight_bits`` (lava/utils/weightutils.py, ``_determine_num_weight_bits``, lines 165-201):
    trailing zero bits common to all weights go into the exponent, mixed signs cost one bit."""
    w = np.abs(np.asarray(weights).astype(np.int64))
    nz = np.unique(w[w != 0])
    if nz.size == 0:
        return 1
    shift = min((int(v) & -int(v)).bit_length() - 1 for v in nz)  # trailing zero bits common to all weights
    magnitude = int(nz.max() >> shift).bit_length()
    signed = bool((np.asarray(weights) < 0).any())
    return magnitude + int(signed)


class _Projection:
    """One lowered projection as the mapper and the counter need it (never a dense conv matrix).

    ``reach(tile, source_shape)`` and ``counts(tile)`` give, for the destination ``tile`` (a box of
    the destination group), the source box its synapses read and, over that box, the structural
    reach (any synapse the shape defines) and the number of acting synapses (nonzero effective
    weight) of each source neuron onto the tile.
    """

    def __init__(self, proj, graph: IntGraph):
        self.src, self.dst, self.name = proj.src, proj.dst, proj.name
        self.src_shape, self.dst_shape = _view3(graph.shapes[proj.src]), _view3(graph.shapes[proj.dst])
        self.n_in = math.prod(self.src_shape)
        op = proj.op
        self.dense = isinstance(op, Dense)
        if self.dense:
            self.kind = "dense"
            self.acting = op.effective_weight() != 0  # (out, in)
            self.bits = int(op.num_weight_bits)
            self.fan_in = self.n_in
            return
        self.kind = "sumpool" if isinstance(op, SumPool2d) else "conv"
        conv = op.as_conv(self.src_shape[0]) if isinstance(op, SumPool2d) else op
        eff = conv.effective_weight()
        self.depthwise = isinstance(op, SumPool2d)  # a pooling neuron reads its own channel only
        self.acting_k = eff != 0  # (C_out, C_in, kH, kW)
        self.bits = 1 if self.depthwise else weight_bits(eff)
        self.kernel = tuple(int(k) for k in eff.shape[2:])
        self.stride, self.padding = tuple(int(s) for s in conv.stride), tuple(int(p) for p in conv.padding)
        self.fan_in = (1 if self.depthwise else self.src_shape[0]) * self.kernel[0] * self.kernel[1]

    # receptive box of an output tile, and which input rows/cols each tap hits
    def _hits(self, o0, o1, axis):
        size = self.src_shape[1 + axis]
        k, s, p = self.kernel[axis], self.stride[axis], self.padding[axis]
        lo, hi = max(0, o0 * s - p), min(size, (o1 - 1) * s - p + k)
        hits = np.zeros((k, max(hi - lo, 0)), dtype=bool)
        for d in range(k):
            pos = np.arange(o0, o1) * s - p + d
            pos = pos[(pos >= lo) & (pos < hi)]
            hits[d, pos - lo] = True
        return lo, hi, hits

    def source_box(self, tile) -> tuple:
        if self.dense:
            c, h, w = self.src_shape
            return (0, c, 0, h, 0, w)
        c0, c1, y0, y1, x0, x1 = tile
        ylo, yhi, _ = self._hits(y0, y1, 0)
        xlo, xhi, _ = self._hits(x0, x1, 1)
        cs = (c0, c1) if self.depthwise else (0, self.src_shape[0])
        return (cs[0], cs[1], ylo, yhi, xlo, xhi)

    def counts(self, tile, structural: bool = False) -> tuple:
        """``(source box, (box size,) int64)``: acting (or, with ``structural``, any) synapses of
        each source neuron of the box onto the tile."""
        box = self.source_box(tile)
        if self.dense:
            rows = _box_index(tile, self.dst_shape)
            if structural:
                return box, np.ones(self.n_in, dtype=np.int64)
            return box, self.acting[rows].sum(axis=0, dtype=np.int64)
        c0, c1, y0, y1, x0, x1 = tile
        _, _, hy = self._hits(y0, y1, 0)
        _, _, hx = self._hits(x0, x1, 1)
        kh, kw = self.kernel
        out = np.zeros((box[1] - box[0], hy.shape[1], hx.shape[1]), dtype=np.int64)
        if out.size == 0:
            return box, out.reshape(-1)
        k = np.ones_like(self.acting_k) if structural and not self.depthwise else self.acting_k
        per_tap = k[c0:c1].sum(axis=0, dtype=np.int64)  # (C_in, kH, kW): targets per input channel and tap
        if self.depthwise:
            per_tap = np.einsum("cckl->ckl", k[c0:c1][:, c0:c1]).astype(np.int64)
        for di in range(kh):
            if not hy[di].any():
                continue
            for dj in range(kw):
                a = per_tap[:, di, dj]
                if hx[dj].any() and a.any():
                    out += a[:, None, None] * (hy[di][:, None] & hx[dj][None, :])[None]
        return box, out.reshape(-1)

    def words(self, tile, p: ChipProfile) -> int:
        """Synaptic memory words this projection takes on the core holding ``tile``."""
        n = _box_size(tile)
        wb = p.synapse_word_bits
        if self.dense:
            return self.n_in * -(-n * (self.bits + p.dense_synapse_overhead_bits) // wb)
        c_tile = tile[1] - tile[0]
        taps = self.kernel[0] * self.kernel[1]
        if p.shared_conv_kernels:
            if self.depthwise:  # each channel its own k x k kernel: one row of one weight per (channel, tap)
                return c_tile * taps * -(-self.bits // wb)
            return self.src_shape[0] * taps * -(-c_tile * self.bits // wb)  # a row of C_tile weights per (C_in, tap)
        return -(-n * self.fan_in * self.bits // wb)


# --- mapping -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tile:
    """Neurons ``box = (c0, c1, y0, y1, x0, x1)`` of ``group`` (viewed as ``(C, H, W)``) on ``core``."""

    group: str
    box: tuple
    core: int

    @property
    def neurons(self) -> int:
        return _box_size(self.box)


@dataclass(frozen=True)
class Core:
    """One used core: position, load and axon counts (the columns of Intel's per-core table)."""

    index: int
    chip: int
    x: int
    y: int
    neurons: int
    synapse_words: int
    memory_bits: int
    axons_in: int
    axons_out: int
    layers: tuple


@dataclass(frozen=True)
class LayerPlan:
    """How one population with neurons is placed: its size, kind of input, neuron kind
    (``neuron_kind()``: ``CUBA`` or ``sigma-delta (<mode>)``) and tiles."""

    label: str
    kind: str
    shape: tuple
    neurons: int
    fan_in: int
    weight_bits: int
    fragments: tuple
    neuron_kind: str

    @property
    def cores(self) -> tuple:
        """Cores holding this group, in placement order."""
        return tuple(f.core for f in self.fragments)


@dataclass(frozen=True, eq=False)
class Mapping:
    """A graph placed on cores: ``layers`` (one ``LayerPlan`` per group with neurons, node order),
    ``cores`` (what each core holds), ``hosts`` (inputs without neurons, on the host)."""

    profile: ChipProfile
    input_shape: tuple
    layers: tuple
    cores: tuple
    hosts: dict

    @property
    def n_cores(self) -> int:
        return len(self.cores)

    @property
    def n_chips(self) -> int:
        return -(-self.n_cores // self.profile.cores_per_chip)

    @property
    def host(self) -> int:
        """Location index of the host (after the cores)."""
        return self.n_cores

    def plan(self, name: str) -> LayerPlan:
        for p in self.layers:
            if p.label == name:
                return p
        raise ValueError(f"no neuron group named {name!r} in the mapping ({[p.label for p in self.layers]})")

    def core_of(self, name: str) -> np.ndarray:
        """``(N,)`` int64: the core of every neuron of group ``name`` (the host index for a plain input)."""
        if name in self.hosts:
            return np.full(math.prod(self.hosts[name]), self.host, dtype=np.int64)
        p = self.plan(name)
        out = np.empty(p.neurons, dtype=np.int64)
        shape3 = _view3(p.shape)
        for f in p.fragments:
            out[_box_index(f.box, shape3)] = f.core
        return out

    def locations(self) -> tuple:
        """Global mesh coordinates ``(X, Y)`` of every core then the host (``X = -1, Y = 0``)."""
        cols = self.profile.mesh[0]
        X = np.array([c.chip * cols + c.x for c in self.cores] + [-1], dtype=np.int64)
        Y = np.array([c.y for c in self.cores] + [0], dtype=np.int64)
        return X, Y

    def table_rows(self) -> list:
        """One row per group, Intel's compiler columns (per core: the largest value over the group's
        cores): axon in, neuron groups, neurons, synapse words, axon map (output axons), cores."""
        rows = []
        for p in self.layers:
            cs = [self.cores[c] for c in p.cores]
            rows.append({"group": p.label, "kind": p.kind, "neuron_kind": p.neuron_kind,
                         "axons_in": max(c.axons_in for c in cs),
                         "neuron_groups": 1, "neurons": max(c.neurons for c in cs),
                         "synapses": max(c.synapse_words for c in cs),
                         "synaptic_memory": max(c.synapse_words for c in cs)
                         / self.profile.synaptic_memory_words_per_core,
                         "axon_map": max(c.axons_out for c in cs), "cores": len(cs)})
        return rows

    def table(self) -> str:
        """The per-core table in the columns of Intel's Loihi 2 compiler (``Per core distribution``).
        Axon memory is not modelled (printed as ``-``)."""
        head = "| AxonIn |NeuronGr| Neurons|Synapses| AxonMap| AxonMem|  Cores | SynMem | group"
        lines = [head, "|" + "-" * (len(head) - 9) + "|"]
        for r in self.table_rows():
            lines.append(f"|{r['axons_in']:8d}|{r['neuron_groups']:8d}|{r['neurons']:8d}|{r['synapses']:8d}|"
                         f"{r['axon_map']:8d}|{'-':>8}|{r['cores']:8d}|{100 * r['synaptic_memory']:7.1f}%| "
                         f"{r['group']} ({r['kind']}{'' if r['neuron_kind'] == 'CUBA' else '; ' + r['neuron_kind']})")
        lines.append(f"| Total cores {self.n_cores} on {self.n_chips} chip(s) "
                     f"(synaptic memory per core: {self.profile.synaptic_memory_words_per_core} words of "
                     f"{self.profile.synapse_word_bits} bits)")
        return "\n".join(lines)

    def summary(self) -> dict:
        """JSON-serialisable placement: per group its tiles and per-core table, per core its position and load."""
        return {"cores_used": self.n_cores, "chips_used": self.n_chips,
                "core_capacity": self.profile.max_cores, "policy": list(MAPPING_POLICY),
                "hosts": list(self.hosts),
                "table": self.table_rows(),
                "layers": [{"label": p.label, "kind": p.kind, "neuron_kind": p.neuron_kind, "shape": list(p.shape),
                            "neurons": p.neurons,
                            "fan_in": p.fan_in, "weight_bits": p.weight_bits,
                            "memory_bits_per_neuron": sum(self.cores[c].memory_bits for c in p.cores) / p.neurons,
                            "cores": list(p.cores),
                            "fragments": [[f.core, *f.box] for f in p.fragments]}
                           for p in self.layers],
                "cores": [{"index": c.index, "chip": c.chip, "x": c.x, "y": c.y, "neurons": c.neurons,
                           "synapse_words": c.synapse_words, "memory_bits": c.memory_bits,
                           "axons_in": c.axons_in, "axons_out": c.axons_out, "layers": list(c.layers)}
                          for c in self.cores]}


def _balanced(n: int, k: int) -> list:
    """``[(start, stop), ...]``: ``n`` items in ``min(k, n)`` contiguous runs differing by at most one."""
    k = max(1, min(k, n))
    sizes = np.full(k, n // k)
    sizes[:n % k] += 1
    stops = np.cumsum(sizes)
    return [(int(b - s), int(b)) for s, b in zip(sizes, stops)]


def _pow2_floor(n: int) -> int:
    return 1 << (int(n).bit_length() - 1)


def _tilings(shape3: tuple, p: ChipProfile, kc: int = 1):
    """Candidate tilings of a ``(C, H, W)`` group, coarsest first (module docstring, rule 2).

    Yields lists of boxes; the worst usage ratio of each candidate comes back through ``send``.
    With ``spatial_tiles``, ``kc`` balanced channel runs (set beforehand from the kernel memory,
    which no spatial cut reduces) are each cut into power-of-two column slices, then row slices."""
    C, H, W = shape3
    if p.spatial_tiles and H * W > 1:
        runs = _balanced(C, kc)
        width = _pow2_floor(W)
        while width >= 1:
            ratio = yield [(a, b, 0, H, x, min(x + width, W)) for a, b in runs for x in range(0, W, width)]
            if ratio <= 1:
                return
            width //= 2
        height = _pow2_floor(H)
        while height >= 1:
            ratio = yield [(a, b, y, min(y + height, H), x, x + 1) for a, b in runs for x in range(W)
                           for y in range(0, H, height)]
            if ratio <= 1:
                return
            height //= 2
        k = kc
        while True:
            k *= max(2, math.ceil(ratio))
            ratio = yield [(a, b, y, y + 1, x, x + 1) for a, b in _balanced(C, k) for x in range(W) for y in range(H)]
            if ratio <= 1:
                return
    k, ratio = 1, None
    while True:  # along channels, then rows, then columns: k runs in all
        if k <= C:
            boxes = [(a, b, 0, H, 0, W) for a, b in _balanced(C, k)]
        elif k <= C * H:
            boxes = [(c, c + 1, a, b, 0, W) for c in range(C) for a, b in _balanced(H, -(-k // C))]
        else:
            boxes = [(c, c + 1, y, y + 1, a, b) for c in range(C) for y in range(H)
                     for a, b in _balanced(W, -(-k // (C * H)))]
        ratio = yield boxes
        if ratio <= 1:
            return
        k *= max(2, math.ceil(ratio))


def _usage(box, incoming: list, p: ChipProfile, core_of: dict) -> tuple:
    """``(neurons, synapse words, input axons)`` of one tile with its incoming projections."""
    words = axons = 0
    for pr in incoming:
        words += pr.words(box, p)
        if pr.dense:
            axons += pr.n_in
            continue
        sbox = pr.source_box(box)
        if p.shared_conv_kernels:
            src = core_of.get(pr.src)
            axons += 1 if src is None else len(np.unique(src[_box_index(sbox, pr.src_shape)]))
        else:
            axons += _box_size(sbox) if pr.depthwise else pr.src_shape[0] * (sbox[3] - sbox[2]) * (sbox[5] - sbox[4])
    return _box_size(box), words, axons


def map_network(net, profile, _extra_split: dict | None = None) -> Mapping:
    """Place every neuron group of ``net`` (an ``IntGraph`` or ``IntNetwork``) on cores of ``profile``.

    The rules are in the module docstring. Raises ``ValueError`` naming the group and the limit when
    one neuron cannot fit a core or the graph needs more than ``max_chips x cores_per_chip`` cores,
    and (one line) for a group of a neuron kind not in ``NEURON_KINDS``.
    """
    p = load_profile(profile)
    graph = as_graph(net)
    check_neuron_kinds(graph, "the chip model (map_network)")
    projs = [_Projection(pr, graph) for pr in graph.projections()]
    extra = dict(_extra_split or {})
    for _ in range(32):
        mapping, over = _map_once(graph, projs, p, extra)
        if not over:
            return mapping
        for name, ratio in over.items():
            extra[name] = extra.get(name, 1) * max(2, math.ceil(ratio))
    raise ValueError(f"group {next(iter(over))!r}: output axons do not fit axons_out_per_core = "
                     f"{p.axons_out_per_core} ({p.name}) even after splitting")


def _fit_group(name: str, shape3: tuple, incoming: list, p: ChipProfile, core_of: dict, extra: int) -> list:
    limits = np.array([p.neurons_per_core, p.synaptic_memory_words_per_core, p.axons_in_per_core], dtype=float)
    kc, (C, H, W) = 1, shape3
    if p.spatial_tiles and H * W > 1:  # channel runs whose kernels fit, judged on one-neuron-wide tiles
        while kc < C:
            use = np.array([_usage((a, b, 0, 1, 0, 1), incoming, p, core_of) for a, b in _balanced(C, kc)], float)
            ratio = float((use[:, 1:] / limits[1:]).max())
            if ratio <= 1:
                break
            kc = min(C, kc * max(2, math.ceil(ratio)))
    gen = _tilings(shape3, p, kc)
    boxes = next(gen)
    while True:
        use = np.array([_usage(b, incoming, p, core_of) for b in boxes], dtype=float)  # (tiles, 3)
        ratio = float((use / limits).max())
        if len(boxes) < extra and ratio <= 1:
            ratio = 1.0 + 1e-9  # an output-axon violation asked for more tiles
        if ratio <= 1:
            return boxes
        if all(_box_size(b) == 1 for b in boxes):
            names = ("neurons_per_core", "synaptic_memory_words_per_core", "axons_in_per_core")
            worst = np.unravel_index(int(np.argmax(use / limits)), use.shape)
            raise ValueError(f"group {name!r}: one neuron needs {int(use[worst])} against {names[worst[1]]} = "
                             f"{int(limits[worst[1]])} ({p.name}); it cannot fit a core")
        boxes = gen.send(ratio)


def _map_once(graph: IntGraph, projs: list, p: ChipProfile, extra: dict) -> tuple:
    core_of, layers, cores_raw = {}, [], []
    hosts = {n: graph.shapes[n] for n in graph.inputs() if graph.neurons(n) is None}
    for name in graph.groups():
        shape3 = _view3(graph.shapes[name])
        incoming = [pr for pr in projs if pr.dst == name]
        boxes = _fit_group(name, shape3, incoming, p, core_of, extra.get(name, 1))
        if len(cores_raw) + len(boxes) > p.max_cores:
            raise ValueError(f"group {name!r} does not fit: the graph needs more than the {p.max_cores} cores of "
                             f"max_chips x cores_per_chip = {p.max_chips} x {p.cores_per_chip} ({p.name})")
        first = len(cores_raw)
        owner = np.empty(math.prod(shape3), dtype=np.int64)
        for i, b in enumerate(boxes):
            owner[_box_index(b, shape3)] = first + i
            n, words, axons = _usage(b, incoming, p, core_of)
            cores_raw.append((name, n, words, axons))
        core_of[name] = owner
        kinds = sorted({pr.kind for pr in incoming}) or ["input"]
        layers.append(LayerPlan(name, "+".join(kinds), tuple(graph.shapes[name]), math.prod(shape3),
                                max((pr.fan_in for pr in incoming), default=0),
                                max((pr.bits for pr in incoming), default=0),
                                tuple(Tile(name, b, first + i) for i, b in enumerate(boxes)),
                                neuron_kind(graph.neurons(name))))
    for name, shape in hosts.items():
        core_of[name] = np.full(math.prod(shape), len(cores_raw), dtype=np.int64)
    # output axons: per source neuron, the distinct destination cores it has a structural synapse onto
    axons_out = np.zeros(len(cores_raw) + 1, dtype=np.int64)
    plans = {pl.label: pl for pl in layers}
    for pr in projs:
        for f in plans[pr.dst].fragments:
            box, reach = pr.counts(f.box, structural=True)
            src_cores = core_of[pr.src][_box_index(box, pr.src_shape)]
            np.add.at(axons_out, src_cores[reach > 0], 1)
    over = {}
    for i, (name, *_rest) in enumerate(cores_raw):
        if axons_out[i] > p.axons_out_per_core:
            over[name] = max(over.get(name, 0), axons_out[i] / p.axons_out_per_core)
    cpc, cols = p.cores_per_chip, p.mesh[0]
    cores = tuple(Core(index=c, chip=c // cpc, x=(c % cpc) % cols, y=(c % cpc) // cols, neurons=n,
                       synapse_words=int(w), memory_bits=int(w) * p.synapse_word_bits, axons_in=int(a),
                       axons_out=int(axons_out[c]), layers=(name,))
                  for c, (name, n, w, a) in enumerate(cores_raw))
    in_shape = graph.shapes[graph.inputs()[0]]
    return Mapping(p, tuple(in_shape), tuple(layers), cores, hosts), over


# --- traffic -----------------------------------------------------------------------------------

def _spike_products(s: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``s @ m`` exactly, as int64, for 0/1 spikes ``s`` ``(R, N)`` float32 and counts ``m`` ``(N, K)`` >= 0.

    float32 BLAS is exact while every result is below ``2**24`` (bounded by ``m``'s column sums);
    float64 otherwise.
    """
    if m.size and m.sum(axis=0).max() >= _F32_EXACT:
        return (s.astype(np.float64) @ m.astype(np.float64)).astype(np.int64)
    return (s @ m.astype(np.float32)).astype(np.int64)


def _link_loads(pairs: dict, X: np.ndarray, Y: np.ndarray, width: int, rows: int, T: int) -> dict:
    """Messages over every directed mesh link under X-then-Y routing.

    ``pairs``: ``{(a, b): (T,) messages from location a to b}``; ``X`` (shifted so the host column
    is 0) and ``Y`` the locations' coordinates. Returns ``{"+x", "-x": (T, rows, width - 1),
    "+y", "-y": (T, rows - 1, width)}``: link ``[y, x]`` of ``+x`` joins ``(x, y)`` to ``(x + 1, y)``,
    of ``-x`` the reverse; link ``[y, x]`` of ``+y`` joins ``(x, y)`` to ``(x, y + 1)``, of ``-y``
    the reverse. Built from difference arrays over all pairs at once.
    """
    horizontal = np.zeros((2, rows, width + 1, T), dtype=np.int64)  # [+x, -x], difference along x
    vertical = np.zeros((2, rows + 1, width, T), dtype=np.int64)    # [+y, -y], difference along y
    if pairs:
        ab = np.array(list(pairs.keys()), dtype=np.int64)
        a, b = ab[:, 0], ab[:, 1]
        c = np.stack(list(pairs.values()))  # (pairs, T)
        xa, xb, ya, yb = X[a], X[b], Y[a], Y[b]
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
    ``labels``: the host inputs, then the groups with neurons in node order; locations are the
    mapping's cores then the host.

    Attributes
    ----------
    spikes, messages, synops : (T, P) int64
        Spikes emitted, messages sent and synaptic operations received per population.
    core_spikes, core_messages_out, core_messages_in, core_synops : (T, n_cores + 1) int64
        The same per location.
    hops, chip_crossings : (T,) int64
    links : dict of str to int64 array
        Messages per directed link per step (see ``_link_loads``).
    latency_ns : (S, T) float64
        Modelled duration of every step of every sample.
    graded : tuple of bool
        Per population, whether its messages carry a graded payload (a sigma-delta group, or a host
        input whose recorded values are not all 0/1). They are counted and charged as spikes
        (``GRADED_CHARGE``); ``graded_messages`` and ``graded_synops`` report them apart.
    graded_synops : (T,) int64
        Synaptic operations caused by graded messages (part of ``synops``).
    payload_bits : tuple of int
        Per population, the bits of the widest payload sent, sign included (0 without messages;
        1 for 0/1 spikes; at most 32: the simulator and Lava send int32 payloads).
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
    graded: tuple
    graded_synops: np.ndarray
    payload_bits: tuple

    @property
    def graded_messages(self) -> np.ndarray:
        """``(T,)``: messages sent by populations with graded payloads (part of ``messages``)."""
        return self.messages[:, np.array(self.graded, dtype=bool)].sum(1)

    @property
    def layer_neurons(self) -> np.ndarray:
        """``(groups,)`` neurons per group with neurons: neuron updates per step per sample."""
        return np.array([p.neurons for p in self.mapping.layers], dtype=np.int64)

    def energy_pj(self) -> dict:
        """Energy per step, ``(T,)`` each, mean per inference: the dynamic terms, ``dynamic`` (their
        sum), ``static`` (static power x chips x modelled step time) and ``total``. Graded messages and
        their synaptic ops cost what spikes and theirs cost (``GRADED_CHARGE``)."""
        p, S = self.mapping.profile, self.samples
        terms = {"synaptic_ops": self.synops.sum(1) * p.energy_synop_pj.value / S,
                 "neuron_updates": np.full(self.steps, self.layer_neurons.sum() * p.energy_neuron_update_pj.value),
                 "messages": self.messages.sum(1) * p.energy_message_pj.value / S,
                 "hops": self.hops * p.energy_hop_pj.value / S}
        terms["dynamic"] = sum(terms.values())
        # mW x ns = 1e-3 J/s x 1e-9 s = 1e-12 J = 1 pJ
        terms["static"] = p.static_power_mw.value * self.mapping.n_chips * self.latency_ns.mean(0)
        terms["total"] = terms["dynamic"] + terms["static"]
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
        S, energy = self.samples, self.energy_pj()
        peak, latency = self.link_peak(), self.latency_ns.mean(0)
        rows = []
        for t in range(self.steps):
            row = {"t": t}
            row.update({f"spikes_{n}": self.spikes[t, i] / S for i, n in enumerate(self.labels)})
            row.update({f"synops_{n}": self.synops[t, i] / S for i, n in enumerate(self.labels)})
            row.update({"messages": self.messages[t].sum() / S, "synaptic_ops": self.synops[t].sum() / S,
                        "graded_messages": self.graded_messages[t] / S,
                        "graded_synaptic_ops": self.graded_synops[t] / S,
                        "neuron_updates": int(self.layer_neurons.sum()), "hops": self.hops[t] / S,
                        "chip_crossings": self.chip_crossings[t] / S, "busiest_link_messages": peak[t] / S,
                        "energy_pj": float(energy["total"][t]), "dynamic_energy_pj": float(energy["dynamic"][t]),
                        "latency_ns": float(latency[t])})
            rows.append({k: float(v) if isinstance(v, np.floating) else v for k, v in row.items()})
        return rows

    def summary(self) -> dict:
        """JSON-serialisable summary: profile (every number with its source), mapping, per-inference
        totals, energy (dynamic and total) and latency, per-population counts, busiest link, policy."""
        S, T, m = self.samples, self.steps, self.mapping
        energy = {k: float(v.sum()) for k, v in self.energy_pj().items()}
        per_step = self.latency_ns.mean(0)
        plans = {p.label: p for p in m.layers}
        layers = []
        for i, label in enumerate(self.labels):
            plan = plans.get(label)
            shape = list(plan.shape) if plan else list(m.hosts[label])
            n = math.prod(shape)
            spikes = float(self.spikes[:, i].sum() / S)
            layers.append({"label": label, "kind": plan.kind if plan else "input",
                           "neuron_kind": plan.neuron_kind if plan else None,
                           "graded": bool(self.graded[i]), "payload_bits": int(self.payload_bits[i]),
                           "shape": shape, "neurons": n, "spikes": spikes,
                           "firing_rate": spikes / (n * T), "messages": float(self.messages[:, i].sum() / S),
                           "synaptic_ops": float(self.synops[:, i].sum() / S),
                           "neuron_updates": n * T if plan else 0,
                           "cores": list(plan.cores) if plan else ["host"]})
        return {
            "profile": m.profile.to_dict(),
            "input": {"samples": S, "steps": T, "shape": list(m.input_shape), "neurons": math.prod(m.input_shape)},
            "mapping": m.summary(),
            "per_inference": {
                "spikes": float(self.spikes.sum() / S), "messages": float(self.messages.sum() / S),
                "synaptic_ops": float(self.synops.sum() / S), "neuron_updates": int(self.layer_neurons.sum()) * T,
                "graded_messages": float(self.graded_messages.sum() / S),
                "graded_synaptic_ops": float(self.graded_synops.sum() / S),
                "hops": float(self.hops.sum() / S), "chip_crossings": float(self.chip_crossings.sum() / S),
                "energy_pj": energy,
                "latency_ns": float(self.latency_ns.sum(1).mean()),
                "latency_per_step_ns": {"mean": float(per_step.mean()), "max": float(self.latency_ns.max())}},
            "layers": layers,
            "cores": [{"index": c, "spikes": float(self.core_spikes[:, c].sum() / S),
                       "messages_out": float(self.core_messages_out[:, c].sum() / S),
                       "messages_in": float(self.core_messages_in[:, c].sum() / S),
                       "synaptic_ops": float(self.core_synops[:, c].sum() / S)}
                      for c in range(m.n_cores)],
            "busiest_link": self.busiest_link(),
            "graded_payloads": {"populations": [n for n, g in zip(self.labels, self.graded) if g],
                                "charged_as": "binary spikes", "basis": GRADED_CHARGE},
            "traffic_policy": list(TRAFFIC_POLICY),
        }


def _as_events(x, n: int, where: str, shape=None) -> np.ndarray:
    """``(S, T, n)`` uint8 events: 1 where a spike (or a nonzero graded payload) is sent."""
    x = np.asarray(x)
    if x.ndim < 2 or (x.ndim > 2 and math.prod(x.shape[2:]) != n) or (x.ndim == 2 and n != 1) \
            or (shape is not None and x.shape[:2] != shape):
        want = f"({shape[0]}, {shape[1]}, {n})" if shape else f"(samples, T, {n})"
        raise ValueError(f"{where}: spikes must have shape {want}, got {x.shape}")
    return (x.reshape(x.shape[0], x.shape[1], n) != 0).view(np.uint8)


def _payload_bits(x: np.ndarray) -> int:
    """Bits of the widest value of ``x`` in two's complement (a sign bit only when a value is negative):
    0 for all zeros, 1 for 0/1 spikes, 32 for int32 payloads at their extremes."""
    if x.size == 0:
        return 0
    lo, hi = int(x.min()), int(x.max())
    return max(hi.bit_length(), (-lo - 1).bit_length()) + (1 if lo < 0 else 0)


def count_traffic(net, mapping: Mapping, group_spikes, input_spikes=None) -> Traffic:
    """Count spikes, messages, synaptic ops, hops and link loads of recorded spikes on ``mapping``.

    Parameters
    ----------
    net : IntGraph or IntNetwork
        The graph ``mapping`` was made for.
    mapping : Mapping
        From ``map_network(net, profile)``.
    group_spikes : dict or list
        Group name -> ``(S, T, N)`` spikes of every group with neurons (``GraphResult.spikes``); for a
        chain, the list of per-layer spikes (``SimResult.spikes``).
    input_spikes : array or dict, optional
        ``(S, T, *shape)`` spikes or graded payloads of the inputs without neurons (a dict by input
        name when there are several); nonzero entries are events sent from the host.

    Spikes of a sigma-delta group are its int32 payloads (``GraphResult.spikes``): one message per
    nonzero payload and destination core, charged as a spike (``GRADED_CHARGE``).
    Raises ``ValueError`` (one line) for a group of a neuron kind not in ``NEURON_KINDS``.

    Returns
    -------
    Traffic
    """
    graph = as_graph(net)
    check_neuron_kinds(graph, "the chip model (count_traffic)")
    plans = {p.label: p for p in mapping.layers}
    if set(plans) != set(graph.groups()) or any(tuple(graph.shapes[n]) != plans[n].shape for n in plans):
        raise ValueError("the mapping was made for a graph of other groups or shapes; map this graph first")
    if isinstance(group_spikes, (list, tuple)):
        names = [n for n in graph.groups()]
        if len(group_spikes) != len(names):
            raise ValueError(f"expected spikes of {len(names)} layers, got {len(group_spikes)}")
        group_spikes = dict(zip(names, group_spikes))
    hosts = list(mapping.hosts)
    if input_spikes is not None and not isinstance(input_spikes, dict):
        if len(hosts) != 1:
            raise ValueError(f"the graph has {len(hosts)} inputs without neurons ({hosts}): give input spikes as a "
                             "dict name -> array")
        input_spikes = {hosts[0]: input_spikes}
    input_spikes = dict(input_spikes or {})
    missing = [n for n in hosts if n not in input_spikes] + [n for n in plans if n not in group_spikes]
    if missing:
        raise ValueError(f"no spikes given for {missing}")
    labels = tuple(hosts) + tuple(p.label for p in mapping.layers)
    first = input_spikes[hosts[0]] if hosts else group_spikes[mapping.layers[0].label]
    S, T = np.shape(first)[:2]
    pops = {n: _as_events(input_spikes[n], math.prod(mapping.hosts[n]), f"input {n!r}", (S, T)) for n in hosts}
    pops.update({n: _as_events(group_spikes[n], plans[n].neurons, f"group {n!r}", (S, T)) for n in plans})
    raw = {n: np.asarray(input_spikes[n]) for n in hosts} | {n: np.asarray(group_spikes[n]) for n in plans}
    payload_bits = tuple(_payload_bits(raw[n]) for n in labels)
    # graded: a sigma-delta group (payloads whatever their values), or a host input sending other than 0/1
    graded = tuple(isinstance(graph.neurons(n), SigmaDelta) if n in plans else
                   bool(np.any((raw[n] != 0) & (raw[n] != 1))) for n in labels)
    n_loc = mapping.n_cores + 1
    core_of = {n: mapping.core_of(n) if n in plans else np.full(math.prod(mapping.hosts[n]), mapping.host)
               for n in labels}
    X, Y = mapping.locations()
    cols = mapping.profile.mesh[0]
    chip_col = np.floor_divide(X, cols)

    def zeros(*shape):
        return np.zeros(shape, dtype=np.int64)
    P = len(labels)
    spikes, messages, synops = zeros(T, P), zeros(T, P), zeros(T, P)
    core_spikes, core_out, core_in = zeros(T, n_loc), zeros(T, n_loc), zeros(T, n_loc)
    core_synops = zeros(S, T, n_loc)  # per sample: the step latency needs each sample's busiest core
    hops, crossings, longest = zeros(T), zeros(T), zeros(S, T)
    graded_synops = zeros(T)
    pairs = {}
    index = {n: i for i, n in enumerate(labels)}
    for n, s in pops.items():
        spikes[:, index[n]] = s.sum(axis=(0, 2), dtype=np.int64)
        per_core = np.zeros((S * T, n_loc), dtype=np.int64)
        flat = s.reshape(S * T, -1)
        for c in np.unique(core_of[n]):
            per_core[:, c] = flat[:, core_of[n] == c].sum(1, dtype=np.int64)
        core_spikes += per_core.reshape(S, T, n_loc).sum(0)
    for pr in (_Projection(q, graph) for q in graph.projections()):
        src = pops[pr.src].reshape(S * T, -1)
        for f in plans[pr.dst].fragments:
            box, counts = pr.counts(f.box)
            idx = _box_index(box, pr.src_shape)
            keep = counts > 0
            if not keep.any():
                continue
            idx, counts = idx[keep], counts[keep]
            src_cores, inv = np.unique(core_of[pr.src][idx], return_inverse=True)
            onehot = np.zeros((idx.size, src_cores.size + 1), dtype=np.int64)
            onehot[np.arange(idx.size), inv] = 1
            onehot[:, -1] = counts
            prod = _spike_products(src[:, idx].astype(np.float32), onehot).reshape(S, T, -1)
            received = prod[..., -1]  # (S, T) synaptic ops on core f.core
            core_synops[..., f.core] += received
            synops[:, index[pr.dst]] += received.sum(0)
            if graded[index[pr.src]]:
                graded_synops += received.sum(0)
            for k, a in enumerate(src_cores):
                m = prod[..., k]  # (S, T) messages from location a to core f.core
                total = m.sum(0)
                if not total.any():
                    continue
                d = int(abs(X[a] - X[f.core]) + abs(Y[a] - Y[f.core]))
                core_out[:, a] += total
                core_in[:, f.core] += total
                messages[:, index[pr.src]] += total
                pairs[(int(a), f.core)] = pairs.get((int(a), f.core), 0) + total
                hops += total * d
                crossings += total * int(abs(chip_col[a] - chip_col[f.core]))
                longest = np.maximum(longest, np.where(m > 0, d, 0))
    p = mapping.profile
    neurons = np.array([c.neurons for c in mapping.cores] + [0])
    busy = core_synops * p.time_synop_ns.value + neurons * p.time_neuron_update_ns.value  # (S, T, loc)
    latency = p.time_step_overhead_ns.value + busy.max(-1) + longest * p.time_hop_ns.value
    links = _link_loads(pairs, X + 1, Y, mapping.n_chips * cols + 1, p.mesh[1], T)
    return Traffic(mapping=mapping, labels=labels, samples=S, steps=T, spikes=spikes, messages=messages,
                   synops=synops, core_spikes=core_spikes, core_messages_out=core_out, core_messages_in=core_in,
                   core_synops=core_synops.sum(0), hops=hops, chip_crossings=crossings, links=links,
                   latency_ns=latency, graded=graded, graded_synops=graded_synops, payload_bits=payload_bits)
