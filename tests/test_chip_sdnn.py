"""The chip model on sigma-delta (SDNN) graphs: mapping, traffic of graded payloads, the command line,
and the refusal of neuron kinds the model does not know.

Traffic of lava-dl slayer's small PilotNet SDNN (tests/data/sdnn/sdnn_conv.net: a Delta input
encoder, two strided SDNN convolutions, an SDNN dense layer, a Sigma output) driven by drifting
graded frames is compared with counts made independently: the simulator's nonzero payloads per
group and step, and messages and synaptic ops enumerated synapse by synapse (``test_chip``'s loop
counter). The full-size PilotNet SDNN built from sigma-delta groups is placed as Intel's Loihi 2
compiler placed it (lava-dl ``pilotnet_sdnn/benchmark.ipynb``, rows as bench/chip_calibration.py
quotes them).
"""
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from spikeport.cli import main as cli_main
from spikeport.export.netx import read_netx
from spikeport.sim.chip import GRADED_CHARGE, count_traffic, load_profile, map_network
from spikeport.sim.graph import Input, IntGraph, NeuronGroup, Output, SigmaDelta
from spikeport.sim.network import Conv2d, Dense, Neurons, conv_output_shape
from spikeport.sim.simulator import simulate
from spikeport.traffic import run_traffic

sys.path.insert(0, str(Path(__file__).parent))
from test_chip import _check_against_loops, _small_mesh  # noqa: E402  (the loop counter and small meshes)

SDNN_CONV = Path(__file__).parent / "data" / "sdnn" / "sdnn_conv.net"


def _frames(seed: int = 5, samples: int = 2, steps: int = 10) -> np.ndarray:
    """Slowly drifting integer frames, as PilotNet's camera input: ``(S, T, 3, 16, 16)``."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.integers(-12, 13, (samples, steps, 3, 16, 16)), axis=1) + 128


@pytest.fixture(scope="module")
def pilotnet_run():
    graph = read_netx(SDNN_CONV)
    x = _frames()
    return graph, x, simulate(graph, x=x, record=True)


# --- traffic ---------------------------------------------------------------------------------------

def test_sdnn_traffic_counts_nonzero_payloads_and_fan_out(pilotnet_run):
    graph, x, rec = pilotnet_run
    S, T = x.shape[:2]
    assert all(isinstance(graph.neurons(n), SigmaDelta) for n in graph.groups())
    # 4 to 100 neurons per core: every group but the last two spans several cores, on three chips
    mapping = map_network(graph, _small_mesh("loihi2", neurons_per_core=100, cores_per_chip=9, mesh=(3, 3)))
    assert mapping.n_chips == 3 and all(len(mapping.plan(n).cores) > 1 for n in ("input", "layer0", "layer1"))
    traffic = count_traffic(graph, mapping, rec.spikes)
    for i, name in enumerate(traffic.labels):
        payloads = rec.spikes[name]  # (S, T, N) int32 payloads
        assert payloads.dtype == np.int32 and np.abs(payloads).max() > 1, f"{name} sent only 0/1"
        nonzero = np.count_nonzero(payloads, axis=(0, 2))  # (T,) messages' sources: nonzero payloads per step
        assert np.array_equal(traffic.spikes[:, i], nonzero), name
        assert 0 < nonzero.sum() < payloads.size  # sparse: some neurons send nothing at some steps
    # messages = nonzero payloads x destination cores, synaptic ops = nonzero payloads x fan-out,
    # hops and link loads: enumerated synapse by synapse
    _check_against_loops(graph, mapping, traffic, dict(rec.spikes), T)
    assert traffic.graded == (True,) * 5
    assert np.array_equal(traffic.graded_messages, traffic.messages.sum(1))
    assert np.array_equal(traffic.graded_synops, traffic.synops.sum(1)) and traffic.synops.sum() > 0
    # layer2 -> layer3 is one dense projection onto one core: one message per nonzero payload
    l2 = traffic.labels.index("layer2")
    w = graph.projections()[3].op.effective_weight()
    assert (w != 0).any(axis=0).all() and len(mapping.plan("layer3").cores) == 1
    assert np.array_equal(traffic.messages[:, l2], np.count_nonzero(rec.spikes["layer2"], axis=(0, 2)))
    assert traffic.messages[:, traffic.labels.index("layer3")].sum() == 0  # the Sigma output sends nothing on chip
    # payload widths, from the payloads: two's complement bits of the widest value
    for i, name in enumerate(traffic.labels):
        p = rec.spikes[name].astype(np.int64)
        bits = traffic.payload_bits[i]
        assert p.min() >= -(1 << (bits - 1)) and p.max() < (1 << (bits - 1)) and bits > 2
        assert p.min() < -(1 << (bits - 2)) or p.max() >= (1 << (bits - 2)), name  # one bit fewer would not do


def test_graded_messages_are_charged_as_spikes_whatever_their_payload(pilotnet_run):
    """Energy and latency depend on how many payloads are sent, not on their values (GRADED_CHARGE)."""
    graph, _, rec = pilotnet_run
    mapping = map_network(graph, "loihi2")
    graded = count_traffic(graph, mapping, rec.spikes)
    signs = count_traffic(graph, mapping, {n: np.sign(s) for n, s in rec.spikes.items()})  # the same events, +-1
    for key, value in graded.energy_pj().items():
        assert np.array_equal(value, signs.energy_pj()[key]), key
    assert np.array_equal(graded.latency_ns, signs.latency_ns)
    assert graded.payload_bits != signs.payload_bits and max(signs.payload_bits) == 2
    p = mapping.profile
    assert np.allclose(graded.energy_pj()["messages"], graded.messages.sum(1) * p.energy_message_pj.value / 2)
    assert np.allclose(graded.energy_pj()["synaptic_ops"], graded.synops.sum(1) * p.energy_synop_pj.value / 2)
    summary = graded.summary()
    assert summary["graded_payloads"] == {"populations": list(graph.groups()), "charged_as": "binary spikes",
                                          "basis": GRADED_CHARGE}
    assert GRADED_CHARGE in summary["traffic_policy"] and "no published" in GRADED_CHARGE
    assert summary["per_inference"]["graded_messages"] == summary["per_inference"]["messages"] > 0


def test_graded_counts_follow_the_source_in_a_mixed_graph():
    """Host input -> SDNN group -> CUBA group -> CUBA group: graded messages are those of the host
    input (graded values) and the SDNN group; graded synaptic ops those they cause."""
    rng = np.random.default_rng(11)
    nodes = {"in": Input((6,)), "w0": Dense(rng.integers(-120, 121, (8, 6)) * 2),
             "sd": NeuronGroup((8,), SigmaDelta(vth=0)), "w1": Dense(rng.integers(1, 40, (5, 8)) * 2),
             "a": NeuronGroup((5,), Neurons(vth=40, du=4095, dv=0)), "w2": Dense(np.full((3, 5), 2)),
             "b": NeuronGroup((3,), Neurons(vth=1)), "out": Output()}
    edges = (("in", "w0"), ("w0", "sd"), ("sd", "w1"), ("w1", "a"), ("a", "w2"), ("w2", "b"), ("b", "out"))
    graph = IntGraph(nodes, edges)
    mapping = map_network(graph, "loihi2")
    assert [p.neuron_kind for p in mapping.layers] == ["sigma-delta (sigma_delta)", "CUBA", "CUBA"]
    for x, host_graded in ((rng.integers(-30, 31, (2, 12, 6)), True),
                           ((rng.random((2, 12, 6)) < 0.5).astype(np.int8), False)):
        rec = simulate(graph, x=x, record=True)
        traffic = count_traffic(graph, mapping, rec.spikes, x)
        assert traffic.labels == ("in", "sd", "a", "b")
        assert traffic.graded == (host_graded, True, False, False)
        assert all(traffic.messages[:, i].sum() > 0 for i in range(3)), "every count is exercised"
        sent = [traffic.messages[:, i] for i in range(4)]
        assert np.array_equal(traffic.graded_messages, sent[1] + (sent[0] if host_graded else 0))
        received = {n: traffic.synops[:, traffic.labels.index(n)] for n in ("sd", "a", "b")}
        assert np.array_equal(traffic.graded_synops, received["a"] + (received["sd"] if host_graded else 0))
        assert traffic.payload_bits[2:] == (1, 1) and traffic.payload_bits[1] > 1  # CUBA: 0/1 spikes


# --- mapping ---------------------------------------------------------------------------------------

# Intel's Loihi 2 compiler table for PilotNet SDNN (lava-dl pilotnet_sdnn/benchmark.ipynb, input
# encoded on the host): (layer, neurons per core, cores), as bench/chip_calibration.py quotes it
PILOTNET_SDNN_INTEL = (("conv1", 3072, 25), ("conv2", 2160, 13), ("conv3", 2688, 3), ("conv4", 2048, 3),
                       ("conv5", 2048, 2), ("fc1", 8, 12), ("fc2", 50, 1), ("fc3", 10, 1), ("fc4", 1, 1))
# (C_out, stride (H, W), padding (H, W), weight bits): PilotNet's convolutions, conv4 at 6 bits in the SDNN
PILOTNET_SDNN_CONVS = ((24, (2, 2), (0, 0), 8), (36, (2, 2), (0, 0), 7), (48, (2, 2), (0, 0), 6),
                       (64, (2, 1), (1, 0), 6), (64, (1, 1), (0, 0), 5))


def _pilotnet_sdnn(seed: int = 0) -> IntGraph:
    """PilotNet SDNN with sigma-delta groups: host input 3x66x200, five convolutions, four dense layers."""
    rng = np.random.default_rng(seed)
    shape = (3, 66, 200)
    nodes, edges, prev = {"input": Input(shape)}, [], "input"
    for i, (c_out, stride, pad, bits) in enumerate(PILOTNET_SDNN_CONVS):
        m = (1 << (bits - 1)) - 1
        w = rng.integers(-m, m + 1, (c_out, shape[0], 3, 3))
        shape = conv_output_shape(shape, c_out, (3, 3), stride, pad)
        nodes[f"conv{i + 1}_w"] = Conv2d(w, stride=stride, padding=pad)
        nodes[f"conv{i + 1}"] = NeuronGroup(shape, SigmaDelta(vth=4))
        edges += [(prev, f"conv{i + 1}_w"), (f"conv{i + 1}_w", f"conv{i + 1}")]
        prev = f"conv{i + 1}"
    n_in = int(np.prod(shape))
    for i, n in enumerate((100, 50, 10, 1)):
        nodes[f"fc{i + 1}_w"] = Dense(rng.integers(-64, 64, (n, n_in)) * 2)
        nodes[f"fc{i + 1}"] = NeuronGroup((n,), SigmaDelta(vth=4, mode="sigma" if i == 3 else "sigma_delta"))
        edges += [(prev, f"fc{i + 1}_w"), (f"fc{i + 1}_w", f"fc{i + 1}")]
        prev, n_in = f"fc{i + 1}", n
    nodes["output"] = Output()
    edges.append((prev, "output"))
    return IntGraph(nodes, tuple(edges))


def test_pilotnet_sdnn_of_sigma_delta_groups_maps_as_intels_compiler():
    """61 cores, every layer's core count and every convolution's neurons per core as Intel's table,
    with sigma-delta neurons taking one of neurons_per_core each. The table pins that limit to
    [3,072, 4,095] (conv1 needs 4 columns of 768 neurons on a core, conv4's 16 columns of 256 must
    not fit), which holds the LIF-inferred 3,584: one step outside either end changes the placement."""
    graph = _pilotnet_sdnn()
    profile = load_profile("loihi2")
    assert 3072 <= profile.neurons_per_core <= 4095
    for limit in (profile.neurons_per_core, 3072, 4095):
        rows = {r["group"]: r for r in map_network(graph, replace(profile, neurons_per_core=limit)).table_rows()}
        assert sum(r["cores"] for r in rows.values()) == 61, limit
        for name, neurons, cores in PILOTNET_SDNN_INTEL:
            assert rows[name]["cores"] == cores, (limit, name)
            assert rows[name]["neuron_kind"] == ("sigma-delta (sigma)" if name == "fc4" else
                                                 "sigma-delta (sigma_delta)")
            if name.startswith("conv"):
                assert rows[name]["neurons"] == neurons, (limit, name)
    for limit in (3071, 4096):
        rows = {r["group"]: r for r in map_network(graph, replace(profile, neurons_per_core=limit)).table_rows()}
        assert [rows[n]["cores"] for n, _, _ in PILOTNET_SDNN_INTEL] != [c for _, _, c in PILOTNET_SDNN_INTEL], limit


# --- the command line ------------------------------------------------------------------------------

def test_traffic_command_on_the_pilotnet_sdnn_file(tmp_path, capsys):
    x = _frames(seed=6, samples=2, steps=8)
    np.save(tmp_path / "frames.npy", x)
    out = tmp_path / "out"
    assert cli_main(["traffic", str(SDNN_CONV), "--input", str(tmp_path / "frames.npy"), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    rec = simulate(read_netx(SDNN_CONV), x=x, record=True)
    payloads = sum(np.count_nonzero(s) for s in rec.spikes.values())
    assert summary["per_inference"]["spikes"] == payloads / 2 > 0
    assert summary["graded_payloads"]["populations"] == ["input", "layer0", "layer1", "layer2", "layer3"]
    assert [entry["neuron_kind"] for entry in summary["layers"]] == \
        ["sigma-delta (delta)"] + ["sigma-delta (sigma_delta)"] * 3 + ["sigma-delta (sigma)"]
    assert "sigma-delta groups" in summary["neurobench"]["skipped"]
    report = (out / "report.md").read_text()
    assert GRADED_CHARGE in report and "NeuroBench metrics are computed for CUBA groups only" in report
    assert "layer0 (conv; sigma-delta (sigma_delta))" in (out / "cores.txt").read_text()
    assert (out / "report.html").stat().st_size > 1000 and (out / "per_step.csv").read_text().count("\n") == 9
    printed = capsys.readouterr().out
    assert f"{summary['per_inference']['messages']:.0f} messages" in printed


# --- neuron kinds the model does not know ----------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _OtherNeurons(Neurons):
    """A neuron kind derived from CUBA's registers (as a resonate-and-fire kind might be)."""


class _ForeignNeurons:
    """A neuron kind with nothing in common with the known ones."""


def _tiny(neurons) -> IntGraph:
    nodes = {"in": Input((4,)), "w": Dense(np.full((3, 4), 2)), "g": NeuronGroup((3,), Neurons(vth=1)),
             "out": Output()}
    graph = IntGraph(nodes, (("in", "w"), ("w", "g"), ("g", "out")))
    object.__setattr__(graph.nodes["g"], "neurons", neurons)  # past validation, as a kind added later would be
    return graph


@pytest.mark.parametrize("neurons", [_OtherNeurons(vth=1), _ForeignNeurons()], ids=["subclass", "foreign"])
def test_a_neuron_kind_the_model_does_not_know_is_refused_in_one_line(neurons):
    good = _tiny(Neurons(vth=1))
    mapping = map_network(good, "loihi2")
    spikes = {"g": np.zeros((1, 2, 3), dtype=np.int8)}
    assert count_traffic(good, mapping, spikes, np.ones((1, 2, 4), dtype=np.int8)).messages.sum() == 8
    bad = _tiny(neurons)
    kind = type(neurons).__name__
    for call in (lambda: map_network(bad, "loihi2"),
                 lambda: count_traffic(bad, mapping, spikes, np.ones((1, 2, 4), dtype=np.int8)),
                 lambda: run_traffic(bad, np.ones((1, 2, 4), dtype=np.int8), "loihi2", "/nonexistent/never-written")):
        with pytest.raises(ValueError, match=f"does not model neurons of kind {kind} \\(group 'g'\\); it models "
                                             "Neurons and SigmaDelta groups only") as err:
            call()
        assert "\n" not in str(err.value)
