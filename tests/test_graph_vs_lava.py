"""Integer graphs: the simulator against Lava ``fixed_pt`` (through the bridge), exactly.

Seeded random graphs with recurrence, merges, skips, pool-into-synapse chains, per-neuron registers,
graded input, a bias-driven input group and netx's periodic reset. For each: spikes, u and v of
every neuron group at every step, ``mismatches == 0``; and every group must spike, so that the
comparison is not between silent networks. Lava runs in its managed runtime; it is required.
"""
import numpy as np
import pytest

from spikeport.sim.graph import Input, IntGraph, NeuronGroup, Output
from spikeport.sim.network import Conv2d, Dense, Neurons, SumPool2d
from spikeport.sim.simulator import simulate
from spikeport.targets.lava import run_lava


def equal_everywhere(graph, **run):
    ours = simulate(graph, record=True, **run)
    theirs = run_lava(graph, record=True, **run)
    for name in graph.groups():
        for key in ("spikes", "u", "v"):
            a, b = getattr(ours, key)[name], getattr(theirs, key)[name]
            mismatches = int(np.count_nonzero(a != b))
            assert mismatches == 0, f"{key} of {name}: {mismatches} of {a.size} differ from Lava"
        assert ours.spikes[name].any(), f"group {name} never spiked"
    for o in graph.outputs():
        assert np.array_equal(ours.outputs[o], theirs.outputs[o])
    return ours


def spikes(rng, shape, p):
    return (rng.random(shape) < p).astype(np.uint8)


def recurrent_graph(rng, n_in=10, n_h=12, n_out=5, per_neuron=False):
    """input -> hidden (with a recurrent Dense onto itself) -> out; a skip input -> out; a second
    hidden group merging into out; hidden <-> side form a two-group loop."""
    def regs(n, du, dv, vth):
        if not per_neuron:
            return dict(du=du, dv=dv, vth=vth)
        return dict(du=rng.choice([du, 4095], n), dv=rng.choice([dv, 0, 800], n), vth=rng.choice([vth, vth + 7], n))

    nodes = {
        "in": Input((n_in,)),
        "w_in": Dense(rng.integers(-40, 120, (n_h, n_in))),
        "hidden": NeuronGroup((n_h,), Neurons(**regs(n_h, 1200, 300, 30), bias_mant=rng.integers(-20, 60, n_h),
                                              bias_exp=2)),
        "w_rec": Dense(rng.integers(-90, 60, (n_h, n_h)), weight_exp=1),
        "w_side": Dense(rng.integers(-30, 110, (7, n_h))),
        "side": NeuronGroup((7,), Neurons(**regs(7, 4095, 100, 25))),
        "w_back": Dense(rng.integers(-60, 80, (n_h, 7)), weight_exp=-1),
        "w_out": Dense(rng.integers(-50, 100, (n_out, n_h))),
        "w_skip": Dense(rng.integers(-20, 90, (n_out, n_in))),
        "w_merge": Dense(rng.integers(-40, 100, (n_out, 7))),
        "out": NeuronGroup((n_out,), Neurons(**regs(n_out, 2000, 500, 40))),
        "y": Output(),
    }
    edges = [("in", "w_in"), ("w_in", "hidden"), ("hidden", "w_rec"), ("w_rec", "hidden"),
             ("hidden", "w_side"), ("w_side", "side"), ("side", "w_back"), ("w_back", "hidden"),
             ("hidden", "w_out"), ("w_out", "out"), ("in", "w_skip"), ("w_skip", "out"),
             ("side", "w_merge"), ("w_merge", "out"), ("out", "y")]
    return IntGraph(nodes, edges)


def test_recurrence_merges_and_skips():
    rng = np.random.default_rng(11)
    graph = recurrent_graph(rng)
    assert [len(c) for c in graph.components()] == [1, 2, 1]  # in, {hidden, side}, out
    equal_everywhere(graph, x=spikes(rng, (3, 25, 10), 0.4))


def test_per_neuron_registers_split_into_processes():
    rng = np.random.default_rng(12)
    graph = recurrent_graph(rng, per_neuron=True)
    assert not graph.neurons("hidden").is_shared("du")
    equal_everywhere(graph, x=spikes(rng, (2, 22, 10), 0.4))


def test_pool_into_conv_and_dense_chains():
    rng = np.random.default_rng(13)
    nodes = {
        "in": Input((2, 8, 8)),
        "c1": Conv2d(rng.integers(-20, 60, (4, 2, 3, 3)), padding=(1, 1)),
        "g1": NeuronGroup((4, 8, 8), Neurons(du=4095, dv=200, vth=30)),
        "p1": SumPool2d(2),                                                   # pool straight into a conv
        "c2": Conv2d(rng.integers(-20, 50, (3, 4, 3, 3)), padding=(1, 1)),
        "g2": NeuronGroup((3, 4, 4), Neurons(du=1500, dv=100, vth=20)),
        "p2": SumPool2d(2),                                                   # pool, flatten, dense
        "f": Dense(rng.integers(-30, 90, (6, 12))),
        "g3": NeuronGroup((6,), Neurons(du=4095, dv=300, vth=15)),
        "skip": Dense(rng.integers(-10, 20, (6, 256))),                       # conv group -> dense skip
        "y": Output(),
    }
    edges = [("in", "c1"), ("c1", "g1"), ("g1", "p1"), ("p1", "c2"), ("c2", "g2"), ("g2", "p2"), ("p2", "f"),
             ("f", "g3"), ("g1", "skip"), ("skip", "g3"), ("g3", "y")]
    graph = IntGraph(nodes, edges)
    kinds = sorted(type(p.op).__name__ for p in graph.projections())
    assert kinds == ["Conv2d", "Conv2d", "Dense", "Dense"]  # both chains composed into one operator
    equal_everywhere(graph, x=spikes(rng, (2, 14, 2, 8, 8), 0.5))


def test_graded_input_payloads():
    rng = np.random.default_rng(14)
    nodes = {"in": Input((6,)), "w": Dense(rng.integers(-30, 60, (5, 6))),
             "g": NeuronGroup((5,), Neurons(du=3000, dv=400, vth=200)), "y": Output()}
    graph = IntGraph(nodes, [("in", "w"), ("w", "g"), ("g", "y")])
    x = rng.integers(-5, 40, (2, 18, 6)) * (rng.random((2, 18, 6)) < 0.6)
    assert x.max() > 1
    equal_everywhere(graph, x=x)


def bias_driven(rng, with_recurrence=True):
    """netx's Input block: input neurons whose bias is the image (lava-dl PilotNet / tinynet)."""
    nodes = {
        "in": Input((2, 6, 6), Neurons(du=4095, dv=0, vth=80, bias_exp=6)),
        "c": Conv2d(rng.integers(-10, 40, (3, 2, 3, 3))),
        "g": NeuronGroup((3, 4, 4), Neurons(du=2000, dv=300, vth=25)),
        "d": Dense(rng.integers(-30, 80, (8, 48))),
        "h": NeuronGroup((8,), Neurons(du=4095, dv=600, vth=20)),
        "r": Dense(rng.integers(-60, 40, (8, 8))),
        "y": Output(),
    }
    edges = [("in", "c"), ("c", "g"), ("g", "d"), ("d", "h"), ("h", "y")]
    if with_recurrence:
        edges += [("h", "r"), ("r", "h")]
    else:
        del nodes["r"]
    return IntGraph(nodes, edges)


def test_bias_driven_input_group():
    rng = np.random.default_rng(15)
    graph = bias_driven(rng)
    bias = rng.integers(0, 4096, (3, 2, 6, 6)) // 8
    equal_everywhere(graph, input_bias=bias, steps=16)


@pytest.mark.parametrize("interval,offset", [(8, 0), (5, 3)])
def test_netx_periodic_reset_stream(interval, offset):
    rng = np.random.default_rng(16 + offset)
    graph = bias_driven(rng)
    bias = rng.integers(0, 4096, (3, 2, 6, 6)) // 8
    ours = equal_everywhere(graph, input_bias=bias, steps=interval, reset_interval=interval, reset_offset=offset)
    assert graph.depths() == {"in": 0, "g": 1, "h": 2}
    # the reset really happened: at the input group's reset steps (phase offset + 1), v restarts
    # from 0, so it holds the step's own bias (or 0 where it spiked at once)
    T = interval
    v = ours.v["in"].reshape(3 * T, -1)
    b = np.repeat(bias.reshape(3, -1), T, axis=0) << 6
    first = (np.arange(3 * T) + 1) % interval == (offset + 1) % interval
    assert first.sum() >= 2
    expect = np.where(b[first] > 80 << 6, 0, b[first])
    assert np.array_equal(v[first], expect)
    assert not np.array_equal(v[~first], np.where(b[~first] > 80 << 6, 0, b[~first]))  # elsewhere v integrates


def test_progress_reporting_works_in_the_runtime(capfd):
    """The managed runtime has no tqdm: progress falls back to a count on stderr (it crashed before)."""
    rng = np.random.default_rng(17)
    graph = recurrent_graph(rng)
    x = spikes(rng, (2, 6, 10), 0.4)
    res = run_lava(graph, x, progress=True)
    assert np.array_equal(res.output, simulate(graph, x).output)
    assert "lava" in capfd.readouterr().err
