"""Tests for sim.chip (profiles, mapping rules, traffic counts) and spikeport.traffic (report files, CLI).

Expected values are worked out by hand in each test (core counts and synaptic words from the
rules and limits, hop counts on a 2 x 2 mesh) or counted independently with explicit loops over
the synapses (fan-out, destination cores) and compared with what ``count_traffic`` finds in
simulator-recorded spikes, on graphs with convolution, pooling, merges, recurrence and an input
group with neurons.
"""
import argparse
import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spikeport.sim.chip import (COEFFICIENT_UNITS, RULES, STRUCTURE, ChipProfile, Coefficient, builtin_profiles,
                                count_traffic, load_profile, map_network, weight_bits)
from spikeport.sim.graph import Input, IntGraph, NeuronGroup, Output
from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons, SumPool2d
from spikeport.sim.simulator import prepare_inputs, simulate
from spikeport.traffic import PLOTS, add_traffic_parser, run_traffic

BIG = 10 ** 9  # a limit that never binds


def _profile(base="loihi1", **changes) -> ChipProfile:
    """A built-in profile with some limits changed (the profile revalidates itself)."""
    return replace(load_profile(base), **changes)


def _small_mesh(base="loihi1", **changes) -> ChipProfile:
    """2 x 2 cores per chip, generous limits unless changed."""
    limits = dict(cores_per_chip=4, mesh=(2, 2), max_chips=4, neurons_per_core=BIG,
                  synaptic_memory_words_per_core=BIG, axons_in_per_core=BIG, axons_out_per_core=BIG)
    return _profile(base, **{**limits, **changes})


def _dense_net(sizes, names=None, weight=2):
    """A chain of dense layers ``sizes[0] -> sizes[1] -> ...`` with constant weights."""
    names = names or [f"fc{i}" for i in range(len(sizes) - 1)]
    return IntNetwork((sizes[0],), tuple(
        Layer(Dense(np.full((n_out, n_in), weight)), Neurons(vth=1), name=names[i])
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))))


def _sizes(mapping, group):
    return [f.neurons for f in mapping.plan(group).fragments]


# ------------------------------------------------------------------------------------ mapping

def test_dense_layer_needs_several_cores_by_synapse_count():
    # Loihi 2: a dense synapse takes 8 weight bits + 8 bits overhead = 16 bits, 4 per 64-bit word.
    # 784 -> 128 on one core: 784 axons x ceil(128 / 4) = 25,088 words > 12,000 -> ratio 2.09 -> 3 cores
    # of 43, 43, 42 neurons: 784 x ceil(43 / 4) = 8,624 words each (lava-dl's MNIST net: 3 cores)
    net = _dense_net([784, 128, 64, 10])
    m = map_network(net, "loihi2")
    assert _sizes(m, "layer0") == [43, 43, 42]
    assert [m.cores[c].synapse_words for c in m.plan("layer0").cores] == [784 * 11, 784 * 11, 784 * 11]
    assert [m.cores[c].synapse_words for c in m.plan("layer1").cores] == [128 * 16]
    assert [m.cores[c].synapse_words for c in m.plan("layer2").cores] == [64 * 3]
    assert m.n_cores == 5 and all(c.axons_in == n for c, n in zip(m.cores, [784] * 3 + [128, 64]))
    # one group per core: the three groups would fit one core by neurons, they never share
    assert [c.layers for c in m.cores] == [("layer0",)] * 3 + [("layer1",), ("layer2",)]


def test_ratio_rule_multiplies_the_split_like_intels_compiler():
    # PilotNet's first dense layer (2,560 -> 100): 2,560 x 25 = 64,000 words -> x ceil(5.33) = 6 cores of
    # 17 neurons: 2,560 x ceil(17 / 4) = 12,800 > 12,000 -> x ceil(1.07) = 2 -> 12 cores (Intel: 12)
    net = _dense_net([2560, 100])
    m = map_network(net, "loihi2")
    assert m.n_cores == 12 and sorted(set(_sizes(m, "layer0"))) == [8, 9]
    assert max(c.synapse_words for c in m.cores) == 2560 * 3


def test_layer_split_by_axon_count():
    # Loihi 1 rules (no kernel sharing, balanced runs): conv 3 x 3 on a (1, 3, 12) map -> (1, 1, 10).
    # One core reads all 3 x 12 = 36 inputs > 20 axons: ratio 1.8 -> 2 runs of 5 columns read 3 x 7 = 21
    # > 20 -> ratio 1.05 -> 4 runs of 3, 3, 2, 2 columns read 3 x 5, 3 x 5, 3 x 4, 3 x 4 inputs
    w = np.full((1, 1, 3, 3), 2)
    net = IntNetwork((1, 3, 12), (Layer(Conv2d(w), Neurons(vth=1), name="conv"),))
    m = map_network(net, _small_mesh(axons_in_per_core=20))
    assert _sizes(m, "layer0") == [3, 3, 2, 2]
    assert [c.axons_in for c in m.cores] == [15, 15, 12, 12]
    assert [f.box for f in m.plan("layer0").fragments] == [(0, 1, 0, 1, 0, 3), (0, 1, 0, 1, 3, 6),
                                                          (0, 1, 0, 1, 6, 8), (0, 1, 0, 1, 8, 10)]


def test_dense_input_beyond_the_axon_limit_names_the_group_and_limit():
    with pytest.raises(ValueError, match=r"group 'layer0'.*100 against axons_in_per_core = 50"):
        map_network(_dense_net([100, 4]), _small_mesh(axons_in_per_core=50))


def test_feature_maps_take_power_of_two_column_slices_with_shared_kernels():
    # Loihi 2: (3, 10, 40) -> conv 3 -> 24 channels, 3 x 3, padding 1 -> (24, 10, 40); 240 neurons per
    # column; 100 neurons... limit 1,000: widths 32 (7,680), 16, 8 (1,920) do not fit, 4 (960) does ->
    # 10 slices of 4 columns. The kernel is stored once per core: 3 x 9 x ceil(24 x 8 / 64) = 81 words
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (24, 3, 3, 3))
    w[0, 0, 0, 0] = 127  # 7 magnitude bits + sign = 8 bits
    graph = IntGraph({"in": Input((3, 10, 40)), "c": Conv2d(w, padding=(1, 1)), "g": NeuronGroup((24, 10, 40)),
                      "o": Output()}, (("in", "c"), ("c", "g"), ("g", "o")))
    m = map_network(graph, _small_mesh("loihi2", neurons_per_core=1000, max_chips=8))
    assert weight_bits(w) == 8
    assert [f.box for f in m.plan("g").fragments] == [(0, 24, 0, 10, x, x + 4) for x in range(0, 40, 4)]
    assert all(c.synapse_words == 81 and c.neurons == 960 for c in m.cores)
    assert all(c.axons_in == 1 for c in m.cores)  # one source: the host
    # without sharing (Loihi 1 rule) every neuron keeps its own 27 x 8-bit kernel
    m1 = map_network(graph, _small_mesh("loihi1", neurons_per_core=1000, max_chips=8))
    assert m1.cores[0].synapse_words == math.ceil(m1.cores[0].neurons * 27 * 8 / 64)


def test_weight_bits_follow_lavas_rule():
    assert weight_bits([[2, 4, -6]]) == 3  # common factor 2 into the exponent, 3 -> 2 bits + sign
    assert weight_bits([[1, 3]]) == 2 and weight_bits([[0, 0]]) == 1 and weight_bits([[-128, 64]]) == 3


def test_output_axon_limit_splits_the_sending_group():
    # fc1 (40 neurons, 10 per core) takes 4 cores; each fc0 neuron reaches all 4: 10 x 4 = 40 output axons
    # on one core > 20 -> fc0 is cut into 2 cores of 5 neurons (20 axons each)
    m = map_network(_dense_net([3, 10, 40]), _small_mesh(neurons_per_core=10, axons_out_per_core=20))
    assert _sizes(m, "layer0") == [5, 5] and _sizes(m, "layer1") == [10] * 4
    assert [m.cores[c].axons_out for c in m.plan("layer0").cores] == [20, 20]


def test_network_spans_chips_and_raises_beyond_max_chips():
    m = map_network(_dense_net([4, 10]), _small_mesh(neurons_per_core=2, max_chips=2))
    assert m.n_cores == 5 and m.n_chips == 2 and (m.cores[4].chip, m.cores[4].x, m.cores[4].y) == (1, 0, 0)
    with pytest.raises(ValueError, match=r"group 'layer0' does not fit.*8 cores"):
        map_network(_dense_net([4, 20]), _small_mesh(neurons_per_core=2, max_chips=2))


def test_input_group_with_neurons_takes_cores_and_the_table_prints_intels_columns():
    graph = IntGraph({"in": Input((2, 4, 4), Neurons(vth=5)), "c": Conv2d(np.full((3, 2, 3, 3), 2)),
                      "g": NeuronGroup((3, 2, 2)), "o": Output()}, (("in", "c"), ("c", "g"), ("g", "o")))
    m = map_network(graph, "loihi2")
    assert [p.label for p in m.layers] == ["in", "g"] and m.hosts == {}
    assert m.cores[0].synapse_words == 0 and m.cores[0].neurons == 32
    table = m.table()
    assert "| AxonIn |NeuronGr| Neurons|Synapses| AxonMap| AxonMem|  Cores |" in table
    rows = m.table_rows()
    assert rows[1]["synapses"] == 2 * 9 * 1 and rows[1]["cores"] == len(m.plan("g").cores)


# ----------------------------------------------------------------------------------- traffic

def _graph_with_everything():
    """Input group with neurons -> conv (stride 2, padding 1) -> sum pool -> dense -> out, with a merge
    into the dense group from the conv map and a recurrent dense projection on it; even weights
    (no Lava truncation) and some zeros."""
    rng = np.random.default_rng(3)
    w_conv = rng.integers(-1, 4, (3, 2, 3, 3)) * 2
    w_conv[0, 1] = 0  # a whole (output, input) channel pair without synapses
    w_fc = rng.integers(-2, 4, (5, 12)) * 2
    w_skip = rng.integers(-1, 2, (5, 48)) * 2
    w_rec = rng.integers(-2, 3, (5, 5)) * 2
    nodes = {"in": Input((2, 7, 7), Neurons(vth=3, du=4095, dv=0)),
             "conv_w": Conv2d(w_conv, stride=(2, 2), padding=(1, 1)), "conv": NeuronGroup((3, 4, 4), Neurons(vth=1)),
             "pool_w": SumPool2d(2), "pool": NeuronGroup((3, 2, 2), Neurons(vth=1)),
             "fc_w": Dense(w_fc), "skip_w": Dense(w_skip), "rec_w": Dense(w_rec),
             "fc": NeuronGroup((5,), Neurons(vth=1)), "out": Output()}
    edges = (("in", "conv_w"), ("conv_w", "conv"), ("conv", "pool_w"), ("pool_w", "pool"), ("pool", "fc_w"),
             ("fc_w", "fc"), ("conv", "skip_w"), ("skip_w", "fc"), ("fc", "rec_w"), ("rec_w", "fc"), ("fc", "out"))
    return IntGraph(nodes, edges)


def _targets_by_loops(graph, mapping):
    """Per projection: for every presynaptic neuron, its list of (postsynaptic neuron, core) over
    synapses with a nonzero weight, enumerated synapse by synapse."""
    out = []
    for p in graph.projections():
        in_shape, out_shape = graph.shapes[p.src], graph.shapes[p.dst]
        core = mapping.core_of(p.dst).reshape(out_shape)
        targets = [[] for _ in range(math.prod(in_shape))]
        op = p.op
        if isinstance(op, Dense):
            w = np.asarray(op.weight)
            for j in range(w.shape[0]):
                for n in range(w.shape[1]):
                    if w[j, n] != 0:
                        targets[n].append((j, core.reshape(-1)[j]))
        else:
            c_in, h, wd = in_shape
            if isinstance(op, SumPool2d):
                k = op.kernel
                w = np.zeros((c_in, c_in, k, k), dtype=int)
                for c in range(c_in):
                    w[c, c] = 1
                stride, pad = (k, k), (0, 0)
            else:
                w, stride, pad = np.asarray(op.weight), op.stride, op.padding
            for o, r, q in np.ndindex(*out_shape):
                for c, di, dj in np.ndindex(c_in, w.shape[2], w.shape[3]):
                    i, j = r * stride[0] - pad[0] + di, q * stride[1] - pad[1] + dj
                    if 0 <= i < h and 0 <= j < wd and w[o, c, di, dj] != 0:
                        post = np.ravel_multi_index((o, r, q), out_shape)
                        targets[np.ravel_multi_index((c, i, j), in_shape)].append((post, core[o, r, q]))
        out.append((p, targets))
    return out


def _global_xy(core, mapping):
    """Global mesh coordinates of a core index, or of the host (index n_cores): worked out here
    from the placement rule (row-major per chip, chips in one row, host at x = -1, y = 0)."""
    if core == mapping.n_cores:
        return -1, 0
    cols = mapping.profile.mesh[0]
    local = core % mapping.profile.cores_per_chip
    return (core // mapping.profile.cores_per_chip) * cols + local % cols, local // cols


def _route(src, dst):
    """The directed links of the X-then-Y route from ``src`` to ``dst`` (global coordinates), walked
    hop by hop, as keys into ``Traffic.links`` arrays: (direction, row, column), host column = 0."""
    (x, y), links = src, []
    while x != dst[0]:
        step = 1 if dst[0] > x else -1
        links.append(("+x" if step > 0 else "-x", y, min(x, x + step) + 1))
        x += step
    while y != dst[1]:
        step = 1 if dst[1] > y else -1
        links.append(("+y" if step > 0 else "-y", min(y, y + step), x + 1))
        y += step
    return links


def _check_against_loops(graph, mapping, traffic, pops, T):
    index = {n: i for i, n in enumerate(traffic.labels)}
    for n, s in pops.items():
        assert np.array_equal(traffic.spikes[:, index[n]], (s != 0).sum(axis=(0, 2)))
    synops = np.zeros_like(traffic.synops)
    messages = np.zeros_like(traffic.messages)
    total_hops = np.zeros(T, dtype=np.int64)
    links = {d: np.zeros_like(v) for d, v in traffic.links.items()}
    for p, tg in _targets_by_loops(graph, mapping):
        src_core = mapping.core_of(p.src)
        per_step = (pops[p.src] != 0).sum(0).astype(np.int64)  # (T, N) events of each presynaptic neuron
        dests = [sorted({c for _, c in t}) for t in tg]
        synops[:, index[p.dst]] += per_step @ np.array([len(t) for t in tg])
        messages[:, index[p.src]] += per_step @ np.array([len(d) for d in dests])
        total_hops += per_step @ np.array([sum(abs(np.subtract(_global_xy(a, mapping), _global_xy(d, mapping))).sum()
                                               for d in ds) for a, ds in zip(src_core, dests)])
        for n, (a, ds) in enumerate(zip(src_core, dests)):
            for d in ds:
                for direction, i, j in _route(_global_xy(a, mapping), _global_xy(d, mapping)):
                    links[direction][:, i, j] += per_step[:, n]
    assert np.array_equal(traffic.synops, synops)
    assert np.array_equal(traffic.messages, messages)
    assert np.array_equal(traffic.hops, total_hops)
    for direction, v in links.items():
        assert np.array_equal(traffic.links[direction], v), direction
    assert traffic.core_synops.sum() == traffic.synops.sum()
    assert traffic.core_messages_out.sum() == traffic.core_messages_in.sum() == traffic.messages.sum()
    assert traffic.core_spikes.sum() == traffic.spikes.sum()


@pytest.mark.parametrize("profile", ["loihi1", "loihi2"])
def test_traffic_counts_equal_direct_counts_on_a_graph_with_merge_and_recurrence(profile):
    graph = _graph_with_everything()
    rng = np.random.default_rng(4)
    x = (rng.random((3, 8, 2, 7, 7)) < 0.3).astype(np.int8)
    rec = simulate(graph, x, record=True)
    mapping = map_network(graph, _small_mesh(profile, neurons_per_core=12, cores_per_chip=9, mesh=(3, 3)))
    assert mapping.n_chips >= 2
    traffic = count_traffic(graph, mapping, rec.spikes)
    pops = dict(rec.spikes)
    assert all(s.sum() > 0 for s in pops.values())  # every group spikes, so every count is exercised
    _check_against_loops(graph, mapping, traffic, pops, 8)
    assert traffic.messages[:, traffic.labels.index("fc")].sum() > 0  # the recurrent projection sends


@pytest.mark.parametrize("protocol", ["graded", "bias", "stream"])
def test_every_input_protocol_counts_its_events(protocol):
    """Graded payloads from the host (nonzero = an event), --input-bias driving the input group,
    and a reset-interval stream: counts still equal the loop counts."""
    rng = np.random.default_rng(5)
    if protocol == "graded":
        graph = IntGraph({"in": Input((12,)), "d": Dense(rng.integers(-2, 3, (20, 12)) * 2),
                          "g": NeuronGroup((20,), Neurons(vth=4)), "o": Output()},
                         (("in", "d"), ("d", "g"), ("g", "o")))
        kw = {"x": rng.integers(-3, 4, (2, 6, 12)) * (rng.random((2, 6, 12)) < 0.3)}
    else:
        graph = _graph_with_everything()
        kw = {"input_bias": rng.integers(0, 200, (2, 2, 7, 7)), "steps": 6} if protocol == "bias" else \
            {"x": (rng.random((2, 6, 2, 7, 7)) < 0.9).astype(np.int8), "reset_interval": 5}
    rec = simulate(graph, record=True, **kw)
    xs, _, _ = prepare_inputs(graph, kw.get("x"), kw.get("input_bias"), kw.get("steps"), kw.get("reset_interval"))
    mapping = map_network(graph, _small_mesh("loihi2", neurons_per_core=12, cores_per_chip=9, mesh=(3, 3)))
    traffic = count_traffic(graph, mapping, rec.spikes, {n: xs[n] for n in mapping.hosts} or None)
    pops = dict(rec.spikes) | {n: xs[n] for n in mapping.hosts}
    assert sum(s.astype(bool).sum() for s in pops.values()) > 0
    _check_against_loops(graph, mapping, traffic, pops, 6)


def test_odd_mixed_sign_weight_that_lava_truncates_makes_no_synaptic_op():
    # mixed signs: Lava drops the lowest bit, so weight 1 acts as 0 (LOIHI.md); W acts as [[0, 2], [-2, 0]]
    net = IntNetwork((2,), (Layer(Dense(np.array([[1, 2], [-2, 0]])), Neurons(vth=1)),))
    x = np.ones((1, 1, 2), dtype=np.int8)
    t = count_traffic(net, map_network(net, "loihi2"), [np.zeros((1, 1, 2), dtype=np.int8)], x)
    assert t.synops.sum() == 2  # input 0 -> neuron 1 (weight -2) and input 1 -> neuron 0 (weight 2)


def test_hops_links_energy_and_latency_on_a_hand_worked_2x2_mesh():
    # one neuron per core: layer 0 (4 neurons) fills chip 0's 2 x 2 mesh, layer 1 (1 neuron) sits on
    # chip 1 at (0, 0), i.e. global (2, 0); the host is at (-1, 0)
    net = _dense_net([1, 4, 1])
    static = Coefficient(50.0, "test value")
    m = map_network(net, _small_mesh(neurons_per_core=1, max_chips=2, static_power_mw=static))
    assert [(c.chip, c.x, c.y) for c in m.cores] == [(0, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 1), (1, 0, 0)]
    x = np.array([[[1], [0], [0]]], dtype=np.int8)  # the input spikes at t = 0
    layer0 = np.array([[[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]], dtype=np.int8)  # core 2, at (0, 1), at t = 1
    layer1 = np.zeros((1, 3, 1), dtype=np.int8)
    t = count_traffic(net, m, [layer0, layer1], x)
    # t = 0: host -> (0,0), (1,0), (0,1), (1,1): 1 + 2 + 2 + 3 hops; t = 1: (0,1) -> (2,0): 2 + 1 hops
    assert t.messages.sum(1).tolist() == [4, 1, 0]
    assert t.hops.tolist() == [8, 3, 0]
    assert t.chip_crossings.tolist() == [4, 1, 0]  # host -> chip 0 four times; chip 0 -> chip 1 once
    assert t.synops.sum(1).tolist() == [4, 1, 0]
    expected = {
        0: {("+x", 0, 0): 4, ("+x", 0, 1): 2, ("+y", 0, 1): 1, ("+y", 0, 2): 1},
        1: {("+x", 1, 1): 1, ("+x", 1, 2): 1, ("-y", 0, 3): 1},
        2: {},
    }
    for step, links in expected.items():
        for d, v in t.links.items():
            want = np.zeros(v.shape[1:], dtype=np.int64)
            for (dd, y, xx), n in links.items():
                if dd == d:
                    want[y, xx] = n
            assert np.array_equal(v[step], want), (step, d)
    assert t.busiest_link() == {"direction": "+x", "from": "host", "to": "chip 0 (x=0, y=0)",
                                "messages_total": 4, "messages_per_inference": 4.0}
    p = m.profile
    dynamic = (5 * p.energy_synop_pj.value + 5 * 3 * p.energy_neuron_update_pj.value
               + 5 * p.energy_message_pj.value + 11 * p.energy_hop_pj.value)
    busy = p.time_step_overhead_ns.value + p.time_neuron_update_ns.value
    want = [busy + p.time_synop_ns.value + 3 * p.time_hop_ns.value] * 2 + [busy]
    assert t.latency_ns[0].tolist() == pytest.approx(want)
    energy = t.summary()["per_inference"]["energy_pj"]
    assert energy["dynamic"] == pytest.approx(dynamic)
    assert energy["static"] == pytest.approx(50.0 * 2 * sum(want))  # mW x chips x ns = pJ
    assert energy["total"] == pytest.approx(dynamic + 50.0 * 2 * sum(want))


def test_count_traffic_rejects_spikes_of_the_wrong_shape():
    net = _dense_net([3, 2])
    m = map_network(net, "loihi2")
    x = np.zeros((1, 4, 3), dtype=np.int8)
    with pytest.raises(ValueError, match=r"group 'layer0'.*\(1, 4, 2\)"):
        count_traffic(net, m, [np.zeros((1, 5, 2), dtype=np.int8)], x)
    with pytest.raises(ValueError, match="other groups or shapes"):
        count_traffic(_dense_net([3, 4]), m, [np.zeros((1, 4, 4), dtype=np.int8)], x)


# ---------------------------------------------------------------------------------- profiles

def test_builtin_profiles_carry_the_chip_facts_and_a_source_for_every_number():
    assert builtin_profiles() == ["loihi1", "loihi2"]
    l1, l2 = load_profile("loihi1"), load_profile("loihi2")
    assert (l1.cores_per_chip, l1.neurons_per_core, l1.axons_in_per_core, l1.axons_out_per_core) == \
        (128, 1024, 4096, 4096)
    assert l1.synaptic_memory_words_per_core * l1.synapse_word_bits == 128 * 1024 * 8
    assert l2.synaptic_memory_words_per_core == 12000 and "SynMem" in l2.source("synaptic_memory_words_per_core")
    assert l2.shared_conv_kernels and l2.spatial_tiles and not l1.shared_conv_kernels
    for prof in (l1, l2):
        assert all(prof.source(k).strip() for k in STRUCTURE + RULES + tuple(COEFFICIENT_UNITS))
    assert "ASSUMPTION" in l2.source("axons_in_per_core") and "INFERRED" in l2.source("neurons_per_core")
    assert "NOT verified" in l1.source("energy_synop_pj")
    assert l2.static_power_mw.value == pytest.approx(352.063) and "Static Power" in l2.source("static_power_mw")


def test_profile_json_round_trip(tmp_path):
    original = replace(load_profile("loihi2"), neurons_per_core=100, energy_hop_pj=Coefficient(2.5, "measured by us"))
    path = tmp_path / "custom.json"
    original.save(path)
    loaded = load_profile(str(path))
    assert loaded == original
    assert loaded.to_dict() == json.loads(path.read_text())
    assert load_profile(loaded) is loaded


def _edited_profile(edit) -> str:
    d = load_profile("loihi1").to_dict()
    edit(d)
    return json.dumps(d)


@pytest.mark.parametrize("text,message", [
    pytest.param("{not json", "not valid JSON", id="invalid-json"),
    pytest.param(_edited_profile(lambda d: d["coefficients"].pop("energy_hop_pj")), r"missing \['energy_hop_pj'\]",
                 id="missing-coefficient"),
    pytest.param(_edited_profile(lambda d: d["structure"].update(typo={"value": 1, "source": "x"})),
                 r"unknown \['typo'\]", id="unknown-entry"),
    pytest.param(_edited_profile(lambda d: d["structure"]["neurons_per_core"].update(value=-5)),
                 "neurons_per_core must be an integer >= 1, got -5", id="negative-limit"),
    pytest.param(_edited_profile(lambda d: d["rules"]["spatial_tiles"].update(value="yes")),
                 "spatial_tiles must be true or false, got 'yes'", id="bad-rule"),
    pytest.param(_edited_profile(lambda d: d["structure"]["mesh"].update(value=[4, 4])), "mesh 4 x 4 has 16 nodes",
                 id="mesh-mismatch"),
    pytest.param(_edited_profile(lambda d: d["coefficients"]["time_hop_ns"].update(source=" ")),
                 "time_hop_ns needs a non-empty source", id="empty-source"),
    pytest.param(_edited_profile(lambda d: d["coefficients"]["energy_synop_pj"].update(value="23.6")),
                 "energy_synop_pj must be a finite number", id="string-value"),
    pytest.param(_edited_profile(lambda d: d["coefficients"]["energy_synop_pj"].update(unit="nJ")), "unit 'nJ'",
                 id="wrong-unit"),
])
def test_bad_profile_file_gives_a_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        load_profile(path)
    assert str(path) in str(err.value)


def test_unknown_profile_name_lists_the_builtin_ones():
    with pytest.raises(ValueError, match="not a built-in profile.*loihi1, loihi2"):
        load_profile("loihi9")


# --------------------------------------------------------------------------- report and CLI

def _tiny_net():
    rng = np.random.default_rng(7)
    return IntNetwork((1, 5, 5), (
        Layer(Conv2d(rng.integers(0, 3, (2, 1, 3, 3)) * 2, padding=(1, 1)), Neurons(vth=1), name="conv"),
        Layer(Dense(rng.integers(-1, 3, (3, 50)) * 2), Neurons(vth=1), name="fc"),
    ))


def _check_outputs(out, T, summary, group="layer0"):
    assert json.loads((out / "summary.json").read_text()) == summary
    for key in ("profile", "input", "mapping", "per_inference", "layers", "cores", "busiest_link", "traffic_policy"):
        assert key in summary
    with open(out / "per_step.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == T and [int(r["t"]) for r in rows] == list(range(T))
    layer = next(entry for entry in summary["layers"] if entry["label"] == group)
    assert sum(float(r[f"spikes_{group}"]) for r in rows) == pytest.approx(layer["spikes"])
    for name in PLOTS.values():
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert "| AxonIn |NeuronGr|" in (out / "cores.txt").read_text()
    report = (out / "report.md").read_text()
    for key, entry in summary["profile"]["coefficients"].items():
        assert f"| {key} | {entry['value']} |" in report and entry["source"] in report


def test_run_traffic_writes_summary_csv_plots_and_report(tmp_path):
    net, T = _tiny_net(), 6
    x = (np.random.default_rng(8).random((2, T, 1, 5, 5)) < 0.4).astype(np.int8)
    summary = run_traffic(net, x, "loihi1", tmp_path / "out", description="random test spikes")
    _check_outputs(tmp_path / "out", T, summary)
    assert summary["input"]["description"] == "random test spikes"
    assert summary["input"]["samples"] == 2 and summary["input"]["steps"] == T
    assert summary["per_inference"]["neuron_updates"] == (2 * 5 * 5 + 3) * T


def test_traffic_command_with_an_input_file(tmp_path, capsys):
    net, T = _tiny_net(), 5
    net.save(tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", (np.random.default_rng(9).random((2, T, 1, 5, 5)) < 0.4).astype(np.int8))
    parser = argparse.ArgumentParser()
    add_traffic_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["traffic", str(tmp_path / "net.npz"), "--input", str(tmp_path / "x.npy"),
                              "--out", str(tmp_path / "out"), "--profile", "loihi2"])
    assert args.func(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    _check_outputs(tmp_path / "out", T, summary)
    assert summary["profile"]["name"] == "loihi2"
    out = capsys.readouterr().out
    assert "| AxonIn |NeuronGr|" in out and f"loihi2: {summary['mapping']['cores_used']} cores" in out
    with pytest.raises(SystemExit):  # --input and --dataset are exclusive
        parser.parse_args(["traffic", "n.npz", "--input", "x.npy", "--dataset", "digits", "--out", "o"])


def test_traffic_command_on_a_graph_driven_by_input_bias_in_a_stream(tmp_path, capsys):
    graph = _graph_with_everything()
    graph.save(tmp_path / "g.npz")
    np.save(tmp_path / "bias.npy", np.random.default_rng(10).integers(0, 200, (2, 2, 7, 7)))
    parser = argparse.ArgumentParser()
    add_traffic_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["traffic", str(tmp_path / "g.npz"), "--input-bias", str(tmp_path / "bias.npy"),
                              "--steps", "6", "--reset-interval", "6", "--out", str(tmp_path / "out")])
    assert args.func(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    _check_outputs(tmp_path / "out", 6, summary, group="fc")
    assert summary["input"]["protocol"] == {"steps": 6, "reset_interval": 6, "reset_offset": 0, "input_bias": True}
    assert [r["group"] for r in summary["mapping"]["table"]] == ["in", "conv", "pool", "fc"]


def test_traffic_command_reads_other_tools_files(tmp_path, capsys):
    """A NIR file snnTorch wrote (its dt and convention given, as for simulate) and a netx file
    lava-dl slayer exported, both mapped and counted from the command line."""
    data = Path(__file__).parent / "data"
    parser = argparse.ArgumentParser()
    add_traffic_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["traffic", str(data / "peer_nir" / "snntorch_rleaky.nir"), "--dt", "1e-4",
                              "--nir-convention", "snntorch", "--input",
                              str(data / "peer_nir" / "snntorch_rleaky_input.npy"), "--out", str(tmp_path / "nir")])
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert "note: snntorch" in captured.err and "loihi2: 2 cores" in captured.out
    summary = json.loads((tmp_path / "nir" / "summary.json").read_text())
    assert summary["per_inference"]["spikes"] > 0
    np.save(tmp_path / "x.npy", (np.random.default_rng(12).random((2, 10, 2, 6, 6)) < 0.3).astype(np.uint8))
    args = parser.parse_args(["traffic", str(data / "lava_dl" / "slayer_conv.net"), "--input", str(tmp_path / "x.npy"),
                              "--out", str(tmp_path / "netx")])
    assert args.func(args) == 0
    summary = json.loads((tmp_path / "netx" / "summary.json").read_text())
    assert summary["mapping"]["cores_used"] >= 3 and summary["per_inference"]["synaptic_ops"] > 0


def test_composed_pool_then_conv_projection_counts_like_its_synapses():
    # SumPool2d -> Conv2d with no neurons between is ONE projection (sim/graph.py compose): a conv with
    # a 4 x 4 kernel and stride 2; its traffic is counted per kernel like any convolution
    rng = np.random.default_rng(11)
    graph = IntGraph({"in": Input((1, 8, 8)), "c1": Conv2d(rng.integers(0, 3, (2, 1, 3, 3)) * 2, padding=(1, 1)),
                      "g1": NeuronGroup((2, 8, 8), Neurons(vth=1)), "pool": SumPool2d(2),
                      "c2": Conv2d(rng.integers(-1, 3, (3, 2, 2, 2)) * 2), "g2": NeuronGroup((3, 3, 3), Neurons(vth=1)),
                      "o": Output()},
                     (("in", "c1"), ("c1", "g1"), ("g1", "pool"), ("pool", "c2"), ("c2", "g2"), ("g2", "o")))
    (p1, p2) = graph.projections()
    assert isinstance(p2.op, Conv2d) and np.shape(p2.op.weight)[2:] == (4, 4)
    x = (rng.random((2, 6, 1, 8, 8)) < 0.4).astype(np.int8)
    rec = simulate(graph, x, record=True)
    mapping = map_network(graph, _small_mesh("loihi2", neurons_per_core=40, cores_per_chip=9, mesh=(3, 3)))
    traffic = count_traffic(graph, mapping, rec.spikes, x)
    pops = dict(rec.spikes) | {"in": x.reshape(2, 6, -1)}
    assert rec.spikes["g1"].sum() > 0
    _check_against_loops(graph, mapping, traffic, pops, 6)
