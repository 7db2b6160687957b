"""The integer graph record and its simulator, without Lava (tests/test_graph_vs_lava.py runs Lava).

(1) validation names the node and the problem; (2) composed operator chains equal the chain applied
step by step; (3) the simulator equals a slow reference written from the equations in
shared/LOIHI.md (int64 arithmetic, one neuron step at a time) on recurrent graphs, in both timings
and with netx's periodic reset; (4) records round-trip through .npz; (5) protocol errors.
"""
import math

import numpy as np
import pytest

from spikeport.sim import formats as F
from spikeport.sim.graph import (Flatten, Input, IntGraph, NeuronGroup, Output, compose, load_record)
from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons, SumPool2d
from spikeport.sim.simulator import _Synapse, simulate


def spikes(rng, shape, p=0.4):
    return (rng.random(shape) < p).astype(np.uint8)


def small(nodes_extra=None, edges_extra=()):
    nodes = {"in": Input((4,)), "w": Dense(np.ones((3, 4), dtype=int)), "g": NeuronGroup((3,), Neurons(vth=2)),
             "y": Output()}
    nodes.update(nodes_extra or {})
    return nodes, [("in", "w"), ("w", "g"), ("g", "y"), *edges_extra]


# --- (1) validation -------------------------------------------------------------------------------

@pytest.mark.parametrize("change,match", [
    (lambda n, e: e.append(("g", "w")), "'w'.*exactly one input"),
    (lambda n, e: (n.update(v=Dense(np.ones((3, 3), dtype=int))), e.extend([("g", "v"), ("v", "v")])),
     "'v'.*exactly one input"),
    (lambda n, e: (n.update(h=NeuronGroup((3,))), e.append(("g", "h"))), "'h'.*synaptic operator between"),
    (lambda n, e: e.append(("in", "nowhere")), "no node named 'nowhere'"),
    (lambda n, e: (n.update(h=NeuronGroup((5,))), e.append(("w", "h"))), "'h'.*shape \\(3,\\).*\\(5,\\)"),
    (lambda n, e: (n.pop("y"), e.remove(("g", "y"))), "no Output"),
    (lambda n, e: (n.update(z=Output()), e.append(("w", "z"))), "'z'.*Output needs"),
    (lambda n, e: n.update(g=NeuronGroup((3,), Neurons(du=np.array([1, 2])))), "'g'.*du has 2 values"),
    (lambda n, e: n.update(g=NeuronGroup((3,), Neurons(vth=-1))), "'g'.*vth = -1 outside"),
])
def test_bad_graphs_name_the_node(change, match):
    nodes, edges = small()
    change(nodes, edges)
    with pytest.raises(ValueError, match=match):
        IntGraph(nodes, edges)


def test_operator_cycle_without_neurons_is_refused():
    nodes = {"in": Input((2,)), "a": Dense(np.eye(2, dtype=int)), "b": Dense(np.eye(2, dtype=int)),
             "c": Dense(np.eye(2, dtype=int)), "g": NeuronGroup((2,)), "y": Output()}
    # b's only input is a and a's only input is b: never reaches a group or an input
    with pytest.raises(ValueError, match="cycle of synaptic operators"):
        IntGraph(nodes, [("a", "b"), ("b", "a"), ("b", "g"), ("in", "c"), ("c", "g"), ("g", "y")])


def test_two_weighted_operators_in_a_row_are_refused():
    nodes = {"in": Input((2,)), "a": Dense(np.eye(2, dtype=int)), "b": Dense(np.eye(2, dtype=int)),
             "g": NeuronGroup((2,)), "y": Output()}
    with pytest.raises(ValueError, match="'a' -> 'b'.*two weighted"):
        IntGraph(nodes, [("in", "a"), ("a", "b"), ("b", "g"), ("g", "y")])


# --- (2) composed chains ----------------------------------------------------------------------------

def pool_ref(x, k):  # (M, C, H, W) -> (M, C, H//k, W//k)
    m, c, h, w = x.shape
    oh, ow = h // k, w // k
    return x[:, :, :oh * k, :ow * k].reshape(m, c, oh, k, ow, k).sum(axis=(3, 5))


def conv_ref(x, w, stride, pad):  # cross-correlation, explicit loops over the output
    m, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    kh, kw = w.shape[2:]
    oh = (h + 2 * pad[0] - kh) // stride[0] + 1
    ow = (wd + 2 * pad[1] - kw) // stride[1] + 1
    out = np.zeros((m, w.shape[0], oh, ow), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
            out[:, :, i, j] = np.einsum("mchw,ochw->mo", patch, w)
    return out


@pytest.mark.parametrize("hw,k,stride,pad", [((8, 8), 2, (1, 1), (1, 1)), ((9, 7), 3, (1, 1), (0, 0)),
                                             ((8, 12), 2, (2, 1), (0, 2))])
def test_pool_then_conv_composes_exactly(hw, k, stride, pad):
    rng = np.random.default_rng(1)
    c = 3
    w = rng.integers(-100, 100, (4, c, 3, 2))
    conv = Conv2d(w, stride=stride, padding=pad)
    pooled_shape = (c, hw[0] // k, hw[1] // k)
    op = compose([(SumPool2d(k), (c, *hw), "p"), (conv, pooled_shape, "c")])
    out_shape = conv.validate("c", pooled_shape)
    assert op.validate("composed", (c, *hw)) == out_shape
    x = spikes(rng, (5, c, *hw))
    expected = conv_ref(pool_ref(x.astype(np.int64), k), w, stride, pad).reshape(5, -1)
    got = _Synapse(op, (c, *hw), out_shape, "t")(x.reshape(5, -1)) / 2 ** F.ACT_SHIFT
    assert np.array_equal(got, expected) and np.abs(expected).max() > 0


def test_pool_then_flatten_then_dense_composes_exactly():
    rng = np.random.default_rng(2)
    w = rng.integers(-90, 90, (6, 2 * 3 * 2))
    op = compose([(SumPool2d(3), (2, 10, 7), "p"), (Flatten(), (2, 3, 2), "f"), (Dense(w, weight_exp=1), (12,), "d")])
    x = spikes(rng, (4, 2, 10, 7))
    expected = (pool_ref(x.astype(np.int64), 3).reshape(4, -1) @ Dense(w).effective_weight().T) << 1
    got = _Synapse(op, (2, 10, 7), (6,), "t")(x.reshape(4, -1)) / 2 ** F.ACT_SHIFT
    assert np.array_equal(got, expected)


def test_padded_conv_after_uneven_pool_is_refused():
    with pytest.raises(ValueError, match="padded convolution after 2x2 pooling"):
        compose([(SumPool2d(2), (1, 5, 5), "p"), (Conv2d(np.ones((1, 1, 3, 3), dtype=int), padding=(1, 1)),
                                                  (1, 2, 2), "c")])


# --- (3) the simulator against a reference from the equations ------------------------------------------

def reference(graph, x, timing="hardware", reset_interval=None, reset_offset=0):
    """One sample at a time, one neuron step at a time, int64 throughout (dense projections only)."""
    S, T = x.shape[:2]
    groups = graph.groups()
    depth = graph.depths()
    out = {g: np.zeros((S, T, graph.size(g)), dtype=np.int64) for g in groups}
    us = {g: np.zeros((S, T, graph.size(g)), dtype=np.int64) for g in groups}
    vs = {g: np.zeros((S, T, graph.size(g)), dtype=np.int64) for g in groups}
    comp_of = {n: i for i, comp in enumerate(graph.components()) for n in comp}
    stream = reset_interval is not None
    samples = [x.reshape(1, S * T, -1)] if stream else [x[s:s + 1] for s in range(S)]
    for si, xs in enumerate(samples):
        steps = xs.shape[1]
        spk = {g: np.zeros((steps, graph.size(g)), dtype=np.int64) for g in groups}
        spk["in"] = xs[0].astype(np.int64)
        u = {g: np.zeros(graph.size(g), dtype=np.int64) for g in groups}
        v = {g: np.zeros(graph.size(g), dtype=np.int64) for g in groups}
        rec = {k: {g: np.zeros((steps, graph.size(g)), dtype=np.int64) for g in groups} for k in "uv"}
        order = [n for comp in graph.components() for n in comp if n in groups]
        for t in range(steps):
            for g in order:
                n = graph.neurons(g)
                a = np.zeros(graph.size(g), dtype=np.int64)
                for p in graph.projections():
                    if p.dst != g:
                        continue
                    recurrent = comp_of[p.src] == comp_of[g]
                    late = timing == "hardware" or recurrent
                    ts = t - 1 if late else t
                    if ts < 0:
                        continue
                    w = p.op.effective_weight().astype(np.int64)
                    acc = w @ spk[p.src][ts]
                    e = int(p.op.weight_exp)
                    a += acc << e if e >= 0 else acc >> -e
                if stream and (t + 1) % reset_interval == (reset_offset + 1 + depth[g]) % reset_interval:
                    u[g][:] = 0
                    v[g][:] = 0
                shape = graph.shapes[g]
                du, dv = n.expand("du", shape), n.expand("dv", shape)
                prod = u[g] * (F.DECAY_UNITY - (du + 1))
                u[g] = np.sign(prod) * (np.abs(prod) >> F.DECAY_SHIFT) + (a << F.ACT_SHIFT)
                u[g] = np.where(u[g] > 2 ** 23, u[g] - 2 ** 24, u[g])
                u[g] = np.where(u[g] <= -2 ** 23, u[g] + 2 ** 24, u[g])
                prod = v[g] * (F.DECAY_UNITY - dv)
                bias = n.expand("bias_mant", shape) << n.expand("bias_exp", shape)
                v[g] = np.sign(prod) * (np.abs(prod) >> F.DECAY_SHIFT) + u[g] + bias
                v[g] = np.clip(v[g], -(2 ** 23 - 1), 2 ** 23 - 1)
                s = v[g] > (n.expand("vth", shape) << F.VTH_SHIFT)
                v[g][s] = 0
                spk[g][t] = s
                rec["u"][g][t], rec["v"][g][t] = u[g], v[g]
        for g in groups:
            sl = slice(None) if stream else slice(si, si + 1)
            out[g][sl] = spk[g].reshape(-1 if stream else 1, T, graph.size(g))
            us[g][sl] = rec["u"][g].reshape(out[g][sl].shape)
            vs[g][sl] = rec["v"][g].reshape(out[g][sl].shape)
    return out, us, vs


def recurrent(rng, per_neuron=False):
    def regs(n, **kw):
        if per_neuron:
            kw["du"] = rng.integers(0, 4096, n)
            kw["vth"] = rng.integers(10, 60, n)
        return Neurons(**kw)

    nodes = {"in": Input((9,)), "w": Dense(rng.integers(-60, 120, (8, 9))),
             "h": NeuronGroup((8,), regs(8, du=900, dv=200, vth=30, bias_mant=rng.integers(-30, 40, 8), bias_exp=3)),
             "r": Dense(rng.integers(-120, 80, (8, 8)), weight_exp=1),
             "o": Dense(rng.integers(-40, 110, (4, 8)), weight_exp=-1),
             "skip": Dense(rng.integers(-30, 90, (4, 9))),
             "out": NeuronGroup((4,), regs(4, du=4095, dv=700, vth=25)),
             "back": Dense(rng.integers(-50, 60, (8, 4))),
             "y": Output()}
    edges = [("in", "w"), ("w", "h"), ("h", "r"), ("r", "h"), ("h", "o"), ("o", "out"), ("in", "skip"),
             ("skip", "out"), ("out", "back"), ("back", "h"), ("out", "y")]
    return IntGraph(nodes, edges)


@pytest.mark.parametrize("timing", ["hardware", "ideal"])
@pytest.mark.parametrize("per_neuron", [False, True])
def test_simulator_equals_the_reference_on_recurrent_graphs(timing, per_neuron):
    rng = np.random.default_rng(3 + per_neuron)
    graph = recurrent(rng, per_neuron)
    x = spikes(rng, (5, 30, 9))
    ours = simulate(graph, x, timing=timing, record=True, batch_size=2)
    ref = reference(graph, x, timing)
    for g in graph.groups():
        assert np.array_equal(ours.spikes[g], ref[0][g]), g
        assert np.array_equal(ours.u[g], ref[1][g]) and np.array_equal(ours.v[g], ref[2][g]), g
        assert ours.spikes[g].any() and not ours.spikes[g].all()
    assert np.array_equal(ours.outputs["y"], ref[0]["out"])


def test_periodic_reset_stream_equals_the_reference():
    rng = np.random.default_rng(5)
    graph = recurrent(rng)
    x = spikes(rng, (3, 7, 9))
    ours = simulate(graph, x, record=True, reset_interval=7, reset_offset=2)
    ref = reference(graph, x, reset_interval=7, reset_offset=2)
    for g in graph.groups():
        assert np.array_equal(ours.spikes[g], ref[0][g]) and np.array_equal(ours.v[g], ref[2][g]), g
    # a stream is not the same as samples from rest (state and in-flight spikes carry over)
    assert not np.array_equal(ours.v["h"], simulate(graph, x, record=True).v["h"])


def test_chain_through_the_graph_path_matches_per_layer_results():
    rng = np.random.default_rng(6)
    net = IntNetwork((10,), (Layer(Dense(rng.integers(-50, 100, (7, 10))), Neurons(du=1000, dv=100, vth=20)),
                             Layer(Dense(rng.integers(-50, 100, (3, 7))), Neurons(dv=300, vth=15))))
    x = spikes(rng, (4, 12, 10))
    chain = simulate(net, x, record=True)
    graph = simulate(IntGraph.from_chain(net), x, record=True)
    assert np.array_equal(chain.output, graph.output)
    for i in range(2):
        assert np.array_equal(chain.v[i], graph.v[f"layer{i}"])
    assert IntGraph.from_chain(net).to_chain().layers[1].synapse.weight.shape == (3, 7)


# --- (4) records ------------------------------------------------------------------------------------

def test_npz_round_trip_of_every_node_type(tmp_path):
    rng = np.random.default_rng(7)
    nodes = {
        "in": Input((2, 6, 6), Neurons(du=4095, vth=50, bias_mant=rng.integers(0, 100, 72), bias_exp=6)),
        "c": Conv2d(rng.integers(-20, 40, (3, 2, 3, 3)), stride=(1, 1), padding=(1, 1), weight_exp=1),
        "g": NeuronGroup((3, 6, 6), Neurons(du=np.array([0, 2000, 4095]), dv=100, vth=20)),
        "p": SumPool2d(2), "f": Flatten(),
        "d": Dense(rng.integers(-100, 100, (5, 27)), weight_exp=-2, num_weight_bits=6, sign_mode="mixed"),
        "h": NeuronGroup((5,), Neurons(du=-1, dv=0, vth=10)),
        "r": Dense(rng.integers(-10, 10, (5, 5))), "y": Output()}
    edges = [("in", "c"), ("c", "g"), ("g", "p"), ("p", "f"), ("f", "d"), ("d", "h"), ("h", "r"), ("r", "h"),
             ("h", "y")]
    graph = IntGraph(nodes, edges, dt=1e-3, meta={"source": "test"})
    graph.save(tmp_path / "g.npz")
    back = load_record(tmp_path / "g.npz")
    assert isinstance(back, IntGraph) and list(back.nodes) == list(nodes) and back.edges == graph.edges
    assert back.dt == 1e-3 and back.meta == {"source": "test"}
    assert back.nodes["d"].sign_mode == "mixed" and back.nodes["d"].num_weight_bits == 6
    bias = rng.integers(0, 200, (2, 2, 6, 6))
    a = simulate(graph, input_bias=bias, steps=9, record=True)
    b = simulate(back, input_bias=bias, steps=9, record=True)
    for g in graph.groups():
        assert np.array_equal(a.v[g], b.v[g])
    assert a.spikes["h"].any()


def test_damaged_records_are_refused(tmp_path):
    graph = IntGraph(*small())
    graph.save(tmp_path / "g.npz")
    data = dict(np.load(tmp_path / "g.npz"))
    header = bytes(data["header"]).decode().replace('"dense"', '"teleport"')
    data["header"] = np.frombuffer(header.encode(), dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(ValueError, match="unknown node kind 'teleport'"):
        load_record(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"no zip")
    with pytest.raises(ValueError, match="not a spikeport integer network"):
        load_record(tmp_path / "junk.npz")


# --- (5) structure and protocol -------------------------------------------------------------------------

def test_components_depths_latency_and_chains():
    graph = recurrent(np.random.default_rng(8))
    assert graph.components() == [["in"], ["h", "out"]]
    assert graph.latency() == 1  # the skip edge: input -> out in one projection; h and out share a component
    with pytest.raises(ValueError, match="feed-forward chains only.*recurrence"):
        graph.to_chain("the chip model")


@pytest.mark.parametrize("kw,match", [
    (dict(steps=5), "no input for \\[.in.\\]: these inputs have no neurons"),
    (dict(x=np.zeros((2, 3, 9)), reset_offset=2), "reset offset needs a reset interval"),
    (dict(x=np.zeros((2, 3, 9)), reset_interval=0), "reset interval must be >= 1"),
    (dict(x=np.zeros((2, 3, 9)), input_bias=np.zeros((2, 9))), "inputs with neurons"),
    (dict(x=np.full((2, 3, 9), 2 ** 24)), "graded spike payload = 16777216 outside"),
    (dict(x=np.zeros((2, 3, 8))), "shape \\(samples, T, 9\\)"),
])
def test_protocol_errors_name_the_argument(kw, match):
    graph = recurrent(np.random.default_rng(9))
    with pytest.raises(ValueError, match=match):
        simulate(graph, **kw)


def test_graded_payload_into_sum_pooling_is_refused_clearly():
    """A convolution takes graded payloads (as Lava's Conv does, test_sdnn.py); sum pooling does
    not (Lava has no pooling process)."""
    nodes = {"in": Input((1, 4, 4)), "p": SumPool2d(2), "g": NeuronGroup((1, 2, 2)), "y": Output()}
    graph = IntGraph(nodes, [("in", "p"), ("p", "g"), ("g", "y")])
    with pytest.raises(ValueError, match="'p'.*graded"):
        simulate(graph, np.full((1, 2, 1, 4, 4), 3))
    assert math.prod(graph.shapes["g"]) == 4
    assert simulate(graph, np.ones((1, 2, 1, 4, 4), dtype=np.uint8)).outputs["y"].shape == (1, 2, 4)  # spikes pass


def test_consumers_of_lif_groups_refuse_every_other_kind_by_whitelist():
    """refuse_unless_lif: Neurons pass; sigma-delta, resonate-and-fire and a kind nobody knows yet
    are refused in one line naming the group and the kind."""
    from spikeport.sim.graph import Resonator, SigmaDelta, refuse_unless_lif

    class Later:  # a neuron kind added after the consumer was written
        def validate(self, where, shape):
            pass

    def graph_of(neurons):
        return IntGraph({"in": Input((3,)), "w": Dense(np.ones((2, 3), dtype=int)), "g": NeuronGroup((2,), neurons),
                         "y": Output()}, [("in", "w"), ("w", "g"), ("g", "y")])

    refuse_unless_lif(graph_of(Neurons()), "X")
    for neurons, kind in ((SigmaDelta(), "sigma-delta \\(SDNN\\)"), (Resonator(), "resonate-and-fire \\(RF, RF_IZ\\)")):
        with pytest.raises(ValueError, match=f"^X does not support {kind} groups \\(group 'g'\\)") as err:
            refuse_unless_lif(graph_of(neurons), "X")
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="^X does not support Later groups"):
        refuse_unless_lif(graph_of(Later()), "X")
