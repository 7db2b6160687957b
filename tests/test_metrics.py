"""sim.metrics: NeuroBench's definitions on integer graphs, values derived from the definitions in code."""
import numpy as np
import pytest

from spikeport.sim.graph import Input, IntGraph, NeuronGroup, Output
from spikeport.sim.metrics import _fan_out, neurobench_metrics
from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons
from spikeport.sim.simulator import GraphResult, simulate


def _chain():
    rng = np.random.default_rng(1)
    w1 = np.where(rng.random((6, 8)) < 0.4, 0, 2 * rng.integers(1, 40, (6, 8)))
    w2 = np.where(rng.random((3, 6)) < 0.4, 0, 2 * rng.integers(1, 40, (3, 6)))
    return IntNetwork((8,), (Layer(Dense(w1), Neurons(vth=40)), Layer(Dense(w2), Neurons(vth=30))))


def test_chain_counts_follow_the_definitions():
    net, T = _chain(), 7
    x = (np.random.default_rng(2).random((5, T, 8)) < 0.5).astype(np.int8)
    rec = simulate(net, x, record=True)  # a chain's SimResult (lists)
    m = neurobench_metrics(net, rec, x)
    w = [layer.synapse.effective_weight() for layer in net.layers]
    ins = [x] + rec.spikes[:-1]
    # effective: pairs (input != 0, weight != 0); dense: every pair, every step; all spikes: ACs
    eff = sum(int(((i != 0).astype(int) @ (wi != 0).sum(0)).sum()) for i, wi in zip(ins, w))
    assert m.synaptic_operations == {"Effective_MACs": 0.0, "Effective_ACs": eff / 5,
                                     "Dense": T * sum(wi.size for wi in w)}
    assert m.connection_sparsity == round(sum(int((wi == 0).sum()) for wi in w) / sum(wi.size for wi in w), 4)
    spikes = np.concatenate([s.reshape(-1) for s in rec.spikes])
    assert m.activation_sparsity == pytest.approx(1 - spikes.sum() / spikes.size)
    changed = sum(int((v[:, 1:] != v[:, :-1]).sum()) for v in rec.v)
    assert m.membrane_updates == (5 * (6 + 3) + changed) / 5
    assert m.parameter_count == 6 * 8 + 3 * 6
    s = m.summary()
    assert [g["name"] for g in s["groups"]] == ["layer0", "layer1"] and s["samples"] == 5 and s["steps"] == T


@pytest.mark.parametrize("stride,padding", [((1, 1), (1, 1)), ((2, 2), (1, 0)), ((2, 1), (0, 2))])
def test_conv_fan_out_is_the_sum_over_outputs_of_one_hot_inputs(stride, padding):
    rng = np.random.default_rng(4)
    w = np.where(rng.random((3, 2, 3, 2)) < 0.3, 0, 1)
    conv = Conv2d(w, stride=stride, padding=padding)
    in_shape = (2, 5, 6)
    c_out, oh, ow = conv.validate("c", in_shape)
    fan = _fan_out(conv, in_shape, w != 0)
    expect = np.zeros(in_shape, dtype=int)  # brute force: each output reads its window of the padded map
    for o in range(c_out):
        for y in range(oh):
            for xx in range(ow):
                for c in range(2):
                    for i in range(3):
                        for j in range(2):
                            iy, ix = y * stride[0] + i - padding[0], xx * stride[1] + j - padding[1]
                            if 0 <= iy < 5 and 0 <= ix < 6 and w[o, c, i, j]:
                                expect[c, iy, ix] += 1
    assert np.array_equal(fan, expect.reshape(-1))


def _graded_graph(recurrent=False):
    nodes = {"in": Input((4,)), "fc": Dense(np.array([[2, 0, 4, 6], [0, 0, 2, 2]])),
             "g": NeuronGroup((2,), Neurons(vth=1000)), "out": Output()}
    edges = [("in", "fc"), ("fc", "g"), ("g", "out")]
    if recurrent:
        nodes["rec"] = Dense(np.array([[0, 2], [2, 0]]))
        edges += [("g", "rec"), ("rec", "g")]
    return IntGraph(nodes, edges)


def test_graded_calls_are_macs_and_batches_decide_together():
    g = _graded_graph()
    x = np.zeros((2, 3, 4), dtype=np.int64)
    x[0, 0] = [1, 0, 1, 0]     # spiking call: 1 + 2 pairs -> ACs
    x[0, 1] = [3, 0, 0, -1]    # graded: 1 + 2 pairs -> MACs
    x[1, 1] = [1, 0, 0, 0]     # spiking on its own, graded together with sample 0
    rec = simulate(g, x, record=True)
    one = neurobench_metrics(g, rec, x).synaptic_operations
    assert one == {"Effective_MACs": 3 / 2, "Effective_ACs": (3 + 1) / 2, "Dense": 3 * 8}
    two = neurobench_metrics(g, rec, x, batch_size=2).synaptic_operations
    assert two == {"Effective_MACs": (3 + 1) / 2, "Effective_ACs": 3 / 2, "Dense": 3 * 8}


def test_recurrent_operator_reads_the_previous_step():
    g = _graded_graph(recurrent=True)
    spikes = np.array([[[1, 0], [0, 1], [1, 1]]], dtype=np.int8)  # (1, T=3, 2), fabricated
    v = np.array([[[5, 0], [5, 0], [0, 7]]], dtype=np.int32)
    rec = GraphResult({"out": spikes}, {"g": spikes}, {"g": v}, {"g": v})
    m = neurobench_metrics(g, rec, np.zeros((1, 3, 4), dtype=np.int8))
    rec_op = next(o for o in m.operators if o.name == "rec")
    assert rec_op.recurrent and rec_op.acs == 1 + 1 and rec_op.dense == 3 * 4  # steps 0, 1 feed 1, 2
    assert m.membrane_updates == 2 + 0 + 2  # all at t = 0, then neurons whose v changed
    assert m.activation_sparsity == pytest.approx(2 / 6)


def test_bad_inputs_name_the_problem():
    g = _graded_graph()
    rec = simulate(g, np.ones((1, 2, 4), dtype=np.int8), record=True)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        neurobench_metrics(g, rec, batch_size=0)
    with pytest.raises(ValueError, match="reads input 'in': pass the run's input x"):
        neurobench_metrics(g, rec)
    with pytest.raises(ValueError, match="the metrics need a recorded run"):
        neurobench_metrics(g, simulate(g, np.ones((1, 2, 4), dtype=np.int8)))
    bad = GraphResult(rec.outputs, {"g": rec.spikes["g"][:, :, :1]}, rec.u, rec.v)
    with pytest.raises(ValueError, match=r"recorded spikes of group 'g' have shape \(1, 2, 1\)"):
        neurobench_metrics(g, bad)


def test_footprints_count_the_stored_registers():
    per_neuron = Neurons(vth=np.arange(1, 4), bias_mant=np.zeros(3, dtype=int))
    g = IntGraph({"in": Input((2,)), "fc": Dense(np.ones((3, 2), dtype=int) * 2), "g": NeuronGroup((3,), per_neuron),
                  "out": Output()}, [("in", "fc"), ("fc", "g"), ("g", "out")])
    x = np.ones((1, 2, 2), dtype=np.int8)
    m = neurobench_metrics(g, simulate(g, x, record=True), x)
    bits = 6 * 9 + 4 + (12 + 12 + 3 * 17 + 3 * 13 + 3)  # weights, weight_exp, du dv vth[3] bias_mant[3] bias_exp
    assert m.footprint_bytes == -(-bits // 8)
    assert m.float32_footprint_bytes == 4 * (6 + 1 + 1 + 3 + 3)
    assert m.summary()["state_bytes"] == 3 * 2 * 24 // 8


def test_merges_and_input_groups():
    rng = np.random.default_rng(6)
    w1, w2 = 2 * rng.integers(-2, 4, (3, 4)), 2 * rng.integers(-2, 4, (3, 4))
    g = IntGraph({"a": Input((4,), Neurons(vth=1, bias_mant=40)), "b": Input((4,)), "da": Dense(w1), "db": Dense(w2),
                  "g": NeuronGroup((3,), Neurons(vth=20)), "out": Output()},
                 [("a", "da"), ("b", "db"), ("da", "g"), ("db", "g"), ("g", "out")])
    xb = (rng.random((2, 5, 4)) < 0.5).astype(np.int8)
    xa = (rng.random((2, 5, 4)) < 0.5).astype(np.int8)
    rec = simulate(g, {"a": xa, "b": xb}, record=True)
    m = neurobench_metrics(g, rec, {"a": xa, "b": xb})
    assert [gr.name for gr in m.groups] == ["a", "g"]  # the input with neurons is an activation layer
    da, db = m.operators
    assert (da.source, db.source) == ("a", "b")  # da reads the input group's spikes, db the input itself
    assert da.acs == int(((rec.spikes["a"] != 0).astype(int) @ (w1 != 0).sum(0)).sum())
    assert db.acs == int(((xb != 0).astype(int) @ (w2 != 0).sum(0)).sum())
    assert m.synaptic_operations["Dense"] == 5 * (w1.size + w2.size)


def test_chunked_evaluation_gives_the_same_figures(monkeypatch):
    from spikeport.sim import metrics

    g = _graded_graph(recurrent=True)
    x = np.random.default_rng(7).integers(-1, 3, (5, 6, 4))
    rec = simulate(g, x, record=True)
    whole = [neurobench_metrics(g, rec, x, batch_size=b).summary() for b in (1, 2)]
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 3)  # one step of one batch per block, or less
    assert [neurobench_metrics(g, rec, x, batch_size=b).summary() for b in (1, 2)] == whole
    assert whole[0]["synaptic_operations"]["Effective_MACs"] > 0 and whole[0]["membrane_updates"] > 5 * 2
