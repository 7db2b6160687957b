"""Synaptic delays (Loihi 2's 6-bit per-synapse delay, Lava's ``DelayDense``): hand-worked timing,
the record's rules, composition, and the simulator against Lava ``fixed_pt`` exactly
(``mismatches == 0``) on feed-forward, recurrent, merging, graded and stream-reset graphs; netx and NIR
round trips; the ONNX graph model reuses these graphs (tests/test_onnx_graph.py)."""
import sys
from pathlib import Path

import numpy as np
import pytest

from spikeport.sim.graph import Flatten, Input, IntGraph, NeuronGroup, Output, load_record
from spikeport.sim.network import Dense, Neurons, SumPool2d
from spikeport.sim.simulator import simulate

sys.path.insert(0, str(Path(__file__).parent))
from test_graph_vs_lava import equal_everywhere  # noqa: E402  (the same Lava comparison for every graph test)


def one_synapse(k, weight=100, weight_exp=0):
    """in (1) -> Dense(weight, delay k) -> a neuron that never decays its current's arrival away
    (du = 4095: the current lasts one step) and never spikes: ``u`` shows when input arrives."""
    nodes = {"in": Input((1,)),
             "w": Dense(np.array([[weight]]), weight_exp=weight_exp, delay=np.array([[k]])),
             "n": NeuronGroup((1,), Neurons(du=4095, dv=4095, vth=2 ** 16)),
             "y": Output()}
    return IntGraph(nodes, [("in", "w"), ("w", "n"), ("n", "y")])


@pytest.mark.parametrize("k", [0, 1, 5])
def test_a_spike_arrives_one_plus_k_steps_later(k):
    x = np.zeros((1, 12, 1), dtype=np.uint8)
    x[0, 2, 0] = 1
    res = simulate(one_synapse(k), x, record=True)
    u = res.u["n"][0, :, 0]
    # u = a << 6 at the arrival step (du = 4095 keeps 1/4096 of the old current: floored away)
    expected = np.zeros(12, dtype=np.int64)
    expected[2 + 1 + k] = 100 * 64
    assert np.array_equal(u, expected), u


def test_ideal_timing_keeps_the_delay_but_not_the_hop():
    x = np.zeros((1, 10, 1), dtype=np.uint8)
    x[0, 1, 0] = 1
    u = simulate(one_synapse(3), x, timing="ideal", record=True).u["n"][0, :, 0]
    assert np.flatnonzero(u).tolist() == [1 + 3]


def test_delays_outside_six_bits_or_misshaped_are_refused():
    with pytest.raises(ValueError, match=r"delay = 64 outside its 6-bit unsigned range \[0, 63\]"):
        one_synapse(64)
    with pytest.raises(ValueError, match="delay has shape"):
        Dense(np.ones((2, 3), dtype=int), delay=np.zeros((3, 2), dtype=int)).validate("w", (3,))
    with pytest.raises(ValueError, match="delay must be integers"):
        Dense(np.ones((1, 1), dtype=int), delay=np.array([[1.5]])).validate("w", (1,))


def test_latency_counts_the_largest_delay():
    assert one_synapse(0).latency() == 1
    assert one_synapse(7).latency() == 8


def test_delays_round_trip_through_the_record(tmp_path):
    g = one_synapse(9)
    g.save(tmp_path / "g.npz")
    back = load_record(tmp_path / "g.npz")
    assert np.array_equal(back.nodes["w"].delay, [[9]])


def test_pool_into_dense_composes_delays_with_the_weights():
    rng = np.random.default_rng(3)
    w = rng.integers(-50, 50, (4, 2 * 2 * 2))
    d = rng.integers(0, 6, w.shape)
    nodes = {"in": Input((2, 5, 5)), "p": SumPool2d(2), "f": Flatten(), "w": Dense(w, delay=d),
             "n": NeuronGroup((4,), Neurons(du=100, dv=100, vth=10)), "y": Output()}
    g = IntGraph(nodes, [("in", "p"), ("p", "f"), ("f", "w"), ("w", "n"), ("n", "y")])
    (proj,) = g.projections()
    assert proj.op.weight.shape == (4, 50) and proj.op.delay.shape == (4, 50)
    # the input pixel (c, y, x) carries the pooled synapse's weight and delay; the dropped row/column 4 carries 0
    wide_w, wide_d = proj.op.weight.reshape(4, 2, 5, 5), proj.op.delay.reshape(4, 2, 5, 5)
    for c in range(2):
        for y in range(4):
            for x_ in range(4):
                j = c * 4 + (y // 2) * 2 + x_ // 2
                assert np.array_equal(wide_w[:, c, y, x_], w[:, j]) and np.array_equal(wide_d[:, c, y, x_], d[:, j])
    assert not wide_w[:, :, 4, :].any() and not wide_d[:, :, :, 4].any()


def delayed_graph(rng, recurrent=True):
    n_in, n_h, n_out = 9, 11, 4
    nodes = {
        "in": Input((n_in,)),
        "w_in": Dense(rng.integers(-40, 120, (n_h, n_in)), delay=rng.integers(0, 5, (n_h, n_in))),
        "h": NeuronGroup((n_h,), Neurons(du=1200, dv=300, vth=30, bias_mant=rng.integers(-10, 40, n_h), bias_exp=1)),
        "w_out": Dense(rng.integers(-50, 110, (n_out, n_h)), weight_exp=-1, delay=rng.integers(0, 9, (n_out, n_h))),
        "w_skip": Dense(rng.integers(-20, 90, (n_out, n_in))),  # no delay, merging with a delayed one
        "out": NeuronGroup((n_out,), Neurons(du=2000, dv=500, vth=25)),
        "y": Output(),
    }
    edges = [("in", "w_in"), ("w_in", "h"), ("h", "w_out"), ("w_out", "out"), ("in", "w_skip"),
             ("w_skip", "out"), ("out", "y")]
    if recurrent:
        nodes["w_rec"] = Dense(rng.integers(-90, 60, (n_h, n_h)), weight_exp=1, delay=rng.integers(0, 4, (n_h, n_h)))
        edges += [("h", "w_rec"), ("w_rec", "h")]
    return IntGraph(nodes, edges)


def test_delayed_feed_forward_recurrent_and_merging_synapses_equal_lava():
    rng = np.random.default_rng(21)
    graph = delayed_graph(rng)
    equal_everywhere(graph, x=(rng.random((2, 24, 9)) < 0.35).astype(np.uint8))


def test_delays_with_graded_input_and_netx_stream_reset_equal_lava():
    rng = np.random.default_rng(22)
    graph = delayed_graph(rng, recurrent=False)
    x = rng.integers(0, 3, (3, 10, 9)) * (rng.random((3, 10, 9)) < 0.5)
    equal_everywhere(graph, x=x.astype(np.int64), reset_interval=10, reset_offset=1)


def test_netx_writes_delays_and_reads_them_back(tmp_path):
    from spikeport.export.netx import read_netx, write_netx

    rng = np.random.default_rng(5)
    g = delayed_graph(rng, recurrent=False)
    nodes = dict(g.nodes, h=NeuronGroup((11,), Neurons(du=1200, dv=300, vth=30)))  # netx: bias_exp 6 only
    chain = IntGraph({k: v for k, v in nodes.items() if k != "w_skip"},
                     [e for e in g.edges if "w_skip" not in e])  # netx holds chains
    write_netx(chain, tmp_path / "d.net")
    back = read_netx(tmp_path / "d.net")
    x = (rng.random((2, 20, 9)) < 0.4).astype(np.uint8)
    assert np.array_equal(simulate(back, x).output, simulate(chain, x).output)
    rec = delayed_graph(rng)
    rec_nodes = dict(rec.nodes, h=nodes["h"])
    with pytest.raises(ValueError, match="recurrent group with synaptic delays"):
        write_netx(IntGraph({k: v for k, v in rec_nodes.items() if k != "w_skip"},
                            [e for e in rec.edges if "w_skip" not in e]), tmp_path / "r.net")


def test_nir_round_trip_and_other_tools_view_of_delays(tmp_path):
    """Our NIR file: one Linear per delay value, each with a Delay(k dt); read back exactly from the
    records; read as a plain NIR graph, every Delay folds back into a synapse's delays."""
    import nir

    from spikeport.export.nir import graph_to_nir, nir_to_float_graph, read_nir, write_nir_graph

    rng = np.random.default_rng(7)
    g = delayed_graph(rng)
    write_nir_graph(tmp_path / "d.nir", g, dt=1e-3)
    back, _ = read_nir(tmp_path / "d.nir")
    x = (rng.random((2, 30, 9)) < 0.4).astype(np.uint8)
    assert np.array_equal(simulate(back, x).output, simulate(g, x).output)
    assert np.array_equal(back.nodes["w_out"].delay, g.nodes["w_out"].delay)
    plain = graph_to_nir(g, 1e-3)
    delays = [n for n, node in plain.nodes.items() if isinstance(node, nir.Delay)]
    def nonzero_delays(op):
        return set(np.unique(op.delay[op.effective_weight() != 0]).tolist()) - {0}

    assert len(delays) == sum(len(nonzero_delays(g.nodes[n])) for n in ("w_in", "w_out", "w_rec"))
    fg = nir_to_float_graph(plain, 1e-3)  # the float reading: every delay folded back into an Affine
    assert not any(type(n).__name__ == "tuple" for n in fg.nodes.values())
    folded = [n for n in fg.nodes.values() if getattr(n, "delay", None) is not None]
    assert folded and max(int(np.max(n.delay)) for n in folded) == int(g.nodes["w_out"].delay.max())


def test_nir_delay_nodes_from_other_writers_fold_into_synapses():
    import nir

    from spikeport.export.nir import nir_to_float_graph

    w1, w2 = np.ones((3, 2), dtype=np.float32), np.ones((2, 3), dtype=np.float32)
    lif = dict(tau=np.full(3, 2e-3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3))
    lif2 = {k: v[:2] for k, v in lif.items()}
    g = nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([2])}), "a": nir.Linear(weight=w1),
                            "d": nir.Delay(delay=np.array([0.0, 2e-3, 4e-3])), "n": nir.LIF(**lif),
                            "d2": nir.Delay(delay=np.array([1e-3, 0.0, 3e-3])), "b": nir.Linear(weight=w2),
                            "m": nir.LIF(**lif2), "out": nir.Output(output_type={"output": np.array([2])})},
                     edges=[("in", "a"), ("a", "d"), ("d", "n"), ("n", "d2"), ("d2", "b"), ("b", "m"), ("m", "out")])
    fg = nir_to_float_graph(g, 1e-3)
    assert fg.nodes["a"].delay.tolist() == [[0, 0], [2, 2], [4, 4]]          # after a Linear: per output
    assert fg.nodes["b"].delay.tolist() == [[1, 0, 3], [1, 0, 3]]            # before one: per input
    bad = nir.NIRGraph(nodes={**g.nodes, "d": nir.Delay(delay=np.array([0.0, 1.5e-3, 0.0]))}, edges=g.edges)
    with pytest.raises(ValueError, match=r"'d' \(Delay\): a delay of 1.5 steps"):
        nir_to_float_graph(bad, 1e-3)


def test_a_constant_source_group_adds_no_pipeline_stage():
    """The NIR reader's bias unit (a group no input reaches) must not shift netx's reset phase of the
    groups it feeds (``depths``)."""
    nodes = {"in": Input((2,)), "w": Dense(np.ones((3, 2), dtype=int)),
             "unit": NeuronGroup((1,), Neurons(du=4095, dv=4095, vth=1, bias_mant=100, bias_exp=6)),
             "wb": Dense(np.ones((3, 1), dtype=int)),
             "h": NeuronGroup((3,), Neurons(du=100, dv=100, vth=10)), "w2": Dense(np.ones((2, 3), dtype=int)),
             "o": NeuronGroup((2,), Neurons(du=100, dv=100, vth=10)), "y": Output()}
    g = IntGraph(nodes, [("in", "w"), ("w", "h"), ("unit", "wb"), ("wb", "h"), ("h", "w2"), ("w2", "o"), ("o", "y")])
    assert g.depths() == {"in": 0, "unit": 0, "h": 0, "o": 1}
