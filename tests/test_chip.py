"""Tests for sim.chip (profiles, mapper, traffic counts) and spikeport.traffic (report files, CLI).

Expected values are worked out by hand in each test (core counts from the limits, hop counts on a
2 x 2 mesh) or counted independently with explicit loops over the synapses (fan-out, destination
cores) and compared with what ``count_traffic`` finds in simulator-recorded spikes.
"""
import argparse
import csv
import json
import math
from dataclasses import replace

import numpy as np
import pytest

from spikeport.sim.chip import (COEFFICIENT_UNITS, STRUCTURE, ChipProfile, Coefficient, builtin_profiles, count_traffic,
                      load_profile, map_network)
from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons, SumPool2d
from spikeport.sim.simulator import simulate
from spikeport.traffic import PLOTS, add_traffic_parser, run_traffic

BIG = 10 ** 9  # a limit that never binds


def _profile(**changes) -> ChipProfile:
    """Loihi 1 with some limits changed (the profile revalidates itself)."""
    return replace(load_profile("loihi1"), **changes)


def _small_mesh(**changes) -> ChipProfile:
    """2 x 2 cores per chip, generous limits unless changed."""
    base = dict(cores_per_chip=4, mesh=(2, 2), max_chips=4, neurons_per_core=BIG,
                synaptic_memory_bits_per_core=BIG, axons_in_per_core=BIG, axons_out_per_core=BIG)
    return _profile(**{**base, **changes})


def _dense_net(sizes, names=None, weight=2):
    """A chain of dense layers ``sizes[0] -> sizes[1] -> ...`` with constant weights."""
    names = names or [f"fc{i}" for i in range(len(sizes) - 1)]
    return IntNetwork((sizes[0],), tuple(
        Layer(Dense(np.full((n_out, n_in), weight)), Neurons(vth=1), name=names[i])
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))))


def _runs(mapping, layer):
    return [(f.core, f.stop - f.start) for f in mapping.layers[layer].fragments]


# ------------------------------------------------------------------------------------ mapper

def test_layer_that_fits_one_core():
    net = _dense_net([20, 30])
    m = map_network(net, "loihi1")
    assert m.n_cores == 1 and m.n_chips == 1
    core = m.cores[0]
    assert (core.chip, core.x, core.y) == (0, 0, 0)
    assert core.neurons == 30
    assert core.memory_bits == 30 * 20 * 8  # fan-in x num_weight_bits per neuron
    assert core.axons_in == 20 and core.axons_out == 0  # the output layer sends nowhere


def test_layer_split_by_neuron_limit_is_balanced_and_row_major():
    m = map_network(_dense_net([10, 50]), _profile(neurons_per_core=16, cores_per_chip=8, mesh=(4, 2)))
    n_cores = math.ceil(50 / 16)
    assert m.n_cores == n_cores
    assert [n for _, n in _runs(m, 0)] == [13, 13, 12, 12]  # 50 = 13 + 13 + 12 + 12
    assert [(c.x, c.y) for c in m.cores] == [(0, 0), (1, 0), (2, 0), (3, 0)]
    assert np.array_equal(m.core_of(0), np.repeat(np.arange(4), [13, 13, 12, 12]))


def test_layer_split_by_synaptic_memory():
    # 100 inputs x 8 bits = 800 bits per neuron; 8192 bits hold 10 neurons; 50 neurons -> 5 cores
    m = map_network(_dense_net([100, 50]), _profile(synaptic_memory_bits_per_core=8192))
    per_core = 8192 // (100 * 8)
    assert m.n_cores == math.ceil(50 / per_core) == 5
    assert all(c.neurons == per_core and c.memory_bits == per_core * 800 for c in m.cores)


def test_conv_memory_counts_the_kernel_per_neuron():
    # conv 2 -> 3 channels, 3 x 3 kernel: 18 synapses x 9 bits = 162 bits per neuron (no sharing)
    net = IntNetwork((2, 6, 6), (Layer(Conv2d(np.ones((3, 2, 3, 3), dtype=int)), Neurons(), name="c"),))
    m = map_network(net, _profile(synaptic_memory_bits_per_core=1000))
    per_core = 1000 // (2 * 3 * 3 * 9)
    assert m.layers[0].neurons == 3 * 4 * 4
    assert m.n_cores == math.ceil(48 / per_core)
    assert max(c.memory_bits for c in m.cores) <= 1000


def test_two_small_layers_pack_onto_one_core():
    m = map_network(_dense_net([10, 6, 4]), "loihi1")
    assert m.n_cores == 1
    core = m.cores[0]
    assert core.layers == (0, 1) and core.neurons == 6 + 4
    assert core.memory_bits == 6 * 10 * 8 + 4 * 6 * 8
    assert core.axons_in == 10 + 6  # the input neurons, then layer 0's neurons
    assert core.axons_out == 6      # each layer-0 neuron sends to one core (its own)


def test_packing_stops_at_the_memory_limit():
    # layer 0 takes 6 x 10 x 8 = 480 bits; adding layer 1 (4 x 6 x 8 = 192) would exceed 600
    m = map_network(_dense_net([10, 6, 4]), _profile(synaptic_memory_bits_per_core=600))
    assert m.n_cores == 2
    assert [c.layers for c in m.cores] == [(0,), (1,)]
    assert m.cores[0].axons_out == 6  # every layer-0 neuron reaches the one layer-1 core


def test_network_spans_chips_and_raises_beyond_max_chips():
    net = _dense_net([5, 40], names=["wide"])
    m = map_network(net, _small_mesh(neurons_per_core=8, max_chips=2))
    assert m.n_cores == 40 // 8 and m.n_chips == 2
    assert [(c.chip, c.x, c.y) for c in m.cores] == [(0, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 1), (1, 0, 0)]
    with pytest.raises(ValueError, match=r"layer 0 \(wide\).*max_chips x cores_per_chip = 1 x 4"):
        map_network(net, _small_mesh(neurons_per_core=8, max_chips=1))


def test_neuron_whose_fan_in_cannot_fit_names_the_layer_and_limit():
    net = _dense_net([8, 200, 3], names=["hidden", "big"])  # "big" has 200 x 8 = 1600 bits per neuron
    with pytest.raises(ValueError, match=r"layer 1 \(big\).*1600 bits.*synaptic_memory_bits_per_core = 1000"):
        map_network(net, _profile(synaptic_memory_bits_per_core=1000))
    with pytest.raises(ValueError, match=r"layer 1 \(big\).*200 presynaptic.*axons_in_per_core = 100"):
        map_network(net, _profile(axons_in_per_core=100))


def test_input_axon_limit_splits_a_conv_layer():
    # 1 x 16 input, 1 x 3 kernel: a run of m consecutive outputs reads m + 2 inputs, so 6 axons allow
    # runs of 4. The cap shrinks by the overshoot: 14 (16 axons) -> int(14 * 6 / 16) = 5 (runs 5, 5, 4
    # read 7 axons) -> min(5 - 1, int(5 * 6 / 7)) = 4, i.e. runs of 4, 4, 3, 3
    net = IntNetwork((1, 1, 16), (Layer(Conv2d(np.ones((1, 1, 1, 3), dtype=int)), Neurons(), name="row"),))
    m = map_network(net, _profile(axons_in_per_core=6))
    sizes = [n for _, n in _runs(m, 0)]
    assert sizes == [4, 4, 3, 3]
    assert [c.axons_in for c in m.cores] == [n + 2 for n in sizes]


def test_output_axon_limit_splits_the_sending_layer():
    # layer 1 (24 neurons, 8 per core) needs 3 cores; every layer-0 neuron reaches all 3, so 8
    # layer-0 neurons need 24 output axons: with a limit of 12 (overshoot 2), layer 0 is split into
    # 2 runs of 4
    net = _dense_net([4, 8, 24])
    m = map_network(net, _profile(neurons_per_core=8, axons_out_per_core=12))
    assert _runs(m, 0) == [(0, 4), (1, 4)]
    assert _runs(m, 1) == [(2, 8), (3, 8), (4, 8)]
    assert [c.axons_out for c in m.cores] == [4 * 3, 4 * 3, 0, 0, 0]
    assert [c.axons_in for c in m.cores] == [4, 4, 8, 8, 8]


# ----------------------------------------------------------------------------------- traffic

def _conv_pool_dense_net():
    """conv (stride 2, padding 1) -> sum pool -> dense, with even weights (no Lava truncation) and zeros."""
    rng = np.random.default_rng(3)
    w_conv = rng.integers(-1, 4, (3, 2, 3, 3)) * 2
    w_conv[0, 1] = 0  # a whole (output, input) channel pair without synapses
    w_fc = rng.integers(-2, 4, (5, 12)) * 2
    return IntNetwork((2, 7, 7), (
        Layer(Conv2d(w_conv, stride=(2, 2), padding=(1, 1)), Neurons(vth=1), name="conv"),
        Layer(SumPool2d(2), Neurons(vth=1), name="pool"),
        Layer(Dense(w_fc), Neurons(vth=1), name="fc"),
    ))


def _fan_out_by_loops(net, mapping):
    """Per synaptic layer: for every presynaptic neuron, its list of (postsynaptic neuron, core)
    over synapses with a nonzero weight, enumerated synapse by synapse."""
    out = []
    for l, layer in enumerate(net.layers):
        in_shape, out_shape = net.shapes[l], net.shapes[l + 1]
        core = mapping.core_of(l).reshape(out_shape)
        targets = [[] for _ in range(math.prod(in_shape))]
        syn = layer.synapse
        if isinstance(syn, Dense):
            w = np.asarray(syn.weight)
            for j in range(w.shape[0]):
                for n in range(w.shape[1]):
                    if w[j, n] != 0:
                        targets[n].append((j, core[j]))
        else:
            c_in, h, wd = in_shape
            if isinstance(syn, SumPool2d):
                k = syn.kernel
                w = np.zeros((c_in, c_in, k, k), dtype=int)
                for c in range(c_in):
                    w[c, c] = 1
                stride, pad = (k, k), (0, 0)
            else:
                w, stride, pad = np.asarray(syn.weight), syn.stride, syn.padding
            for o, p, q in np.ndindex(*out_shape):
                for c, di, dj in np.ndindex(c_in, w.shape[2], w.shape[3]):
                    i, j = p * stride[0] - pad[0] + di, q * stride[1] - pad[1] + dj
                    if 0 <= i < h and 0 <= j < wd and w[o, c, di, dj] != 0:
                        post = np.ravel_multi_index((o, p, q), out_shape)
                        targets[np.ravel_multi_index((c, i, j), in_shape)].append((post, core[o, p, q]))
        out.append(targets)
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


def test_traffic_counts_equal_direct_counts_of_simulated_spikes():
    net = _conv_pool_dense_net()
    rng = np.random.default_rng(4)
    x = (rng.random((3, 8, 2, 7, 7)) < 0.3).astype(np.int8)
    rec = simulate(net, x, timing="hardware", record=True)
    mapping = map_network(net, _small_mesh(neurons_per_core=6, cores_per_chip=9, mesh=(3, 3)))
    assert mapping.n_cores == 8 + 2 + 1 and mapping.n_chips == 2  # 48, 12 and 5 neurons, 6 per core
    traffic = count_traffic(net, mapping, rec.spikes, x)
    pops = [x.reshape(3, 8, -1)] + list(rec.spikes)
    assert all(p.sum() > 0 for p in pops)  # every layer spikes, so every count is exercised

    for i, s in enumerate(pops):
        assert np.array_equal(traffic.spikes[:, i], s.sum(axis=(0, 2)))

    targets = _fan_out_by_loops(net, mapping)
    host = mapping.n_cores
    sources = [np.full(pops[0].shape[2], host)] + [mapping.core_of(l) for l in range(len(net.layers))]
    total_hops = np.zeros(8, dtype=np.int64)
    links = {d: np.zeros_like(v) for d, v in traffic.links.items()}
    for l, tg in enumerate(targets):
        per_step = pops[l].sum(0).astype(np.int64)  # (T, N) spikes of each presynaptic neuron
        fan_out = np.array([len(t) for t in tg])
        dests = [sorted({c for _, c in t}) for t in tg]
        n_msgs = np.array([len(d) for d in dests])
        hops = np.array([sum(abs(np.subtract(_global_xy(src, mapping), _global_xy(d, mapping))).sum()
                             for d in ds) for src, ds in zip(sources[l], dests)])
        assert np.array_equal(traffic.synops[:, l], per_step @ fan_out)
        assert np.array_equal(traffic.messages[:, l], per_step @ n_msgs)
        total_hops += per_step @ hops
        for n, (src, ds) in enumerate(zip(sources[l], dests)):
            for d in ds:
                for direction, i, j in _route(_global_xy(src, mapping), _global_xy(d, mapping)):
                    links[direction][:, i, j] += per_step[:, n]
    assert np.array_equal(traffic.hops, total_hops)
    for direction, v in links.items():
        assert np.array_equal(traffic.links[direction], v), direction
    assert not traffic.messages[:, -1].any()  # output spikes are not routed
    # per-core views add up to the per-layer ones
    assert traffic.core_synops.sum() == traffic.synops.sum()
    assert traffic.core_messages_out.sum() == traffic.core_messages_in.sum() == traffic.messages.sum()
    assert traffic.core_spikes.sum() == traffic.spikes.sum()


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
    m = map_network(net, _small_mesh(neurons_per_core=1, max_chips=2))
    assert [(c.chip, c.x, c.y) for c in m.cores] == [(0, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 1), (1, 0, 0)]
    x = np.array([[[1], [0], [0]]], dtype=np.int8)  # the input spikes at t = 0
    layer0 = np.array([[[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]], dtype=np.int8)  # core 2, at (0, 1), at t = 1
    layer1 = np.zeros((1, 3, 1), dtype=np.int8)
    t = count_traffic(net, m, [layer0, layer1], x)
    # t = 0: host -> (0,0), (1,0), (0,1), (1,1): 1 + 2 + 2 + 3 hops; t = 1: (0,1) -> (2,0): 2 + 1 hops;
    # t = 2: nothing
    assert t.messages.sum(1).tolist() == [4, 1, 0]
    assert t.hops.tolist() == [8, 3, 0]
    assert t.chip_crossings.tolist() == [4, 1, 0]  # host -> chip 0 four times; chip 0 -> chip 1 once
    assert t.synops.sum(1).tolist() == [4, 1, 0]
    # link loads, X then Y; keys (direction, row or column index as in the arrays, host column = 0)
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
    energy = (5 * p.energy_synop_pj.value + 5 * 3 * p.energy_neuron_update_pj.value
              + 5 * p.energy_message_pj.value + 11 * p.energy_hop_pj.value)
    assert t.summary()["per_inference"]["energy_pj"]["total"] == pytest.approx(energy)
    # a step: barrier + the busiest core (1 synop at most, 1 neuron each) + the longest route (3 hops)
    busy = p.time_step_overhead_ns.value + p.time_neuron_update_ns.value
    want = [busy + p.time_synop_ns.value + 3 * p.time_hop_ns.value] * 2 + [busy]
    assert t.latency_ns[0].tolist() == pytest.approx(want)


def test_count_traffic_rejects_spikes_of_the_wrong_shape():
    net = _dense_net([3, 2])
    m = map_network(net, "loihi2")
    x = np.zeros((1, 4, 3), dtype=np.int8)
    with pytest.raises(ValueError, match=r"layer 0 \(fc0\).*\(1, 4, 2\)"):
        count_traffic(net, m, [np.zeros((1, 5, 2), dtype=np.int8)], x)
    with pytest.raises(ValueError, match="other shapes"):
        count_traffic(_dense_net([3, 4]), m, [np.zeros((1, 4, 4), dtype=np.int8)], x)


# ---------------------------------------------------------------------------------- profiles

def test_builtin_profiles_carry_the_chip_facts_and_a_source_for_every_number():
    assert builtin_profiles() == ["loihi1", "loihi2"]
    l1, l2 = load_profile("loihi1"), load_profile("loihi2")
    assert (l1.cores_per_chip, l1.neurons_per_core, l1.axons_in_per_core, l1.axons_out_per_core) == \
        (128, 1024, 4096, 4096)
    assert (l2.cores_per_chip, l2.neurons_per_core) == (128, 8192)
    assert l1.synaptic_memory_bits_per_core == l2.synaptic_memory_bits_per_core == 128 * 1024 * 8
    for prof in (l1, l2):
        assert all(prof.source(k).strip() for k in STRUCTURE + tuple(COEFFICIENT_UNITS))
    assert "ASSUMPTION" in l2.source("axons_in_per_core") and "ASSUMPTION" in l2.source("axons_out_per_core")
    assert "NOT verified" in l1.source("energy_synop_pj")
    assert all("PLACEHOLDER" in c.source for c in l2.coefficients().values())


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
                 "neurons_per_core must be a positive integer, got -5", id="negative-limit"),
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


def _check_outputs(out, T, summary):
    assert json.loads((out / "summary.json").read_text()) == summary
    for key in ("profile", "input", "mapping", "per_inference", "layers", "cores", "busiest_link", "traffic_policy"):
        assert key in summary
    with open(out / "per_step.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == T and [int(r["t"]) for r in rows] == list(range(T))
    assert sum(float(r["spikes_conv"]) for r in rows) == pytest.approx(summary["layers"][1]["spikes"])
    for name in PLOTS.values():
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    report = (out / "report.md").read_text()
    for key, entry in summary["profile"]["coefficients"].items():
        assert f"| {key} | {entry['value']} |" in report and entry["source"] in report
    assert all(f"]({name})" in report for name in PLOTS.values())


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
    assert "loihi2: 1 cores" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # --input and --dataset are exclusive
        parser.parse_args(["traffic", "n.npz", "--input", "x.npy", "--dataset", "digits", "--out", "o"])
