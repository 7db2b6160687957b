"""NIR export and import: exact round trip of our files, other tools' conventions, clear refusals."""
import nir
import numpy as np
import pytest
import torch

from spikeport.export.nir import (META_KEY, decay_tau_euler, nir_to_model, read_graph, read_nir, tau_decay_euler,
                                  write_nir)
from spikeport.export.quantize import quantize_network
from spikeport.sim.simulator import simulate
from spikeport.pipeline import load_network
from spikeport.targets.lava import run_lava
from spikeport.train.network import NeuronSpec, build_network

DT = 1e-3


def trained_like(spec, neuron, seed=0):
    """A network with non-trivial parameters (random weights, biases, per-neuron thresholds)."""
    torch.manual_seed(seed)
    model = build_network(spec, neuron)
    with torch.no_grad():
        for n in model.neuron_layers():
            n.bias.uniform_(-0.05, 0.1)
            n.v_threshold.fill_(neuron.v_threshold)
        for syn, *_ in model.blocks():
            if hasattr(syn, "weight"):
                syn.weight.mul_(2.0)
    return model.eval()


def spikes(seed, shape):
    return (np.random.default_rng(seed).random(shape) < 0.35).astype(np.int8)


@pytest.mark.parametrize("spec,neuron", [
    ("64-30-10", NeuronSpec(model="lif", decay=0.2, v_threshold=0.5)),
    ("8x8x2-4C3p1-P2-S2-6", NeuronSpec(model="cuba", decay_syn=0.3, decay_mem=0.7, v_threshold=0.4)),
])
def test_round_trip_recovers_the_integer_network_exactly(tmp_path, spec, neuron):
    model = trained_like(spec, neuron)
    net, _ = quantize_network(model)
    write_nir(tmp_path / "n.nir", model, net, DT)
    back, info = read_nir(tmp_path / "n.nir")
    back = back.to_chain()
    assert info["source"] == "spikeport metadata" and info["dt"] == DT and back.input_shape == net.input_shape
    for a, b in zip(net.layers, back.layers):
        assert a.synapse.kind == b.synapse.kind
        if a.synapse.kind != "sumpool":
            assert np.array_equal(a.synapse.weight, b.synapse.weight) and a.synapse.weight_exp == b.synapse.weight_exp
        for f in ("du", "dv", "vth", "bias_mant", "bias_exp"):
            assert np.array_equal(np.ravel(getattr(a.neurons, f)), np.ravel(getattr(b.neurons, f))), f
    x = spikes(1, (3, 10, *net.input_shape))
    assert np.array_equal(simulate(net, x).output, simulate(back, x).output)


@pytest.mark.parametrize("spec,neuron", [
    ("64-30-10", NeuronSpec(model="lif", decay=0.2, v_threshold=0.5)),
    ("8x8x2-4C3p1-P2-6", NeuronSpec(model="cuba", decay_syn=0.3, decay_mem=0.7, v_threshold=0.4)),
])
def test_float_parameters_alone_reproduce_the_float_model(tmp_path, spec, neuron):
    """A reader that ignores our metadata (as other NIR tools do) gets the same float network."""
    model = trained_like(spec, neuron)
    net, _ = quantize_network(model)
    write_nir(tmp_path / "n.nir", model, net, DT)
    graph = read_graph(tmp_path / "n.nir")
    for node in graph.nodes.values():
        node.metadata = {}
    rebuilt, notes = nir_to_model(graph, DT)
    assert notes == []
    x = torch.as_tensor(spikes(2, (12, 4, *model.input_shape)), dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))


def test_euler_time_constants_round_trip():
    decays = np.array([0.0, 0.2, 0.5, 0.95])
    tau = tau_decay_euler(decays, DT)
    assert np.allclose(tau, DT / (1 - decays))
    assert np.allclose(decay_tau_euler(tau, DT, "x"), decays)
    assert np.isinf(tau_decay_euler(1.0, DT))
    with pytest.raises(ValueError, match="shorter than the time step"):
        decay_tau_euler(0.5 * DT, DT, "node 'lif1'")


def snn_torch_style_graph(tau=5e-3, dt=1e-4, r=None, v_leak=0.0, bias=0.1, scalar=False, batch_dim=False):
    """A graph the way snnTorch/Norse write one: Affine with bias, LIF with r and v_leak, optional
    0-d (broadcast) parameters and an input type with a batch dimension."""
    rng = np.random.default_rng(5)
    w1, w2 = rng.normal(0, 0.6, (7, 5)), rng.normal(0, 0.8, (3, 7))

    def p(v, n):
        return np.array(v, dtype=np.float32) if scalar else np.full(n, v, dtype=np.float32)

    r_val = tau / dt if r is None else r
    nodes = {
        "in": nir.Input(input_type={"input": np.array([1, 5] if batch_dim else [5])}),
        "fc1": nir.Affine(weight=w1.astype(np.float32), bias=np.full(7, bias, dtype=np.float32)),
        "lif1": nir.LIF(tau=p(tau, 7), r=p(r_val, 7), v_leak=p(v_leak, 7), v_threshold=p(1.0, 7)),
        "fc2": nir.Linear(weight=torch.tensor(w2, dtype=torch.float32)),  # torch tensors happen too
        "lif2": nir.LIF(tau=p(tau, 3), r=p(r_val, 3), v_leak=p(0.0, 3), v_threshold=p(1.0, 3)),
        "out": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), (w1, w2)


def euler_reference(x, w1, w2, tau, dt, r, v_leak, bias):
    """Forward-Euler LIF chain written from the NIR equations (independent of our neurons)."""
    a = dt / tau
    outs = []
    for w, b, vl in ((w1, bias, v_leak), (w2, 0.0, 0.0)):
        T, B, _ = x.shape
        v = np.zeros((B, w.shape[0]))
        o = np.zeros((T, B, w.shape[0]))
        for t in range(T):
            current = x[t] @ w.T + b
            v = (1 - a) * v + a * vl + a * r * current
            o[t] = v > 1.0
            v = np.where(o[t] > 0, 0.0, v)
        x = o
        outs.append(o)
    return outs[-1]


@pytest.mark.parametrize("scalar,batch_dim,r,v_leak", [(False, False, None, 0.0), (True, True, None, 0.0),
                                                        (False, False, 30.0, 0.4)])
def test_foreign_graph_float_behaviour_matches_nir_equations(scalar, batch_dim, r, v_leak):
    tau, dt = 5e-3, 1e-3
    graph, (w1, w2) = snn_torch_style_graph(tau, dt, r=r, v_leak=v_leak, scalar=scalar, batch_dim=batch_dim)
    model, _ = nir_to_model(graph, dt)
    x = spikes(3, (20, 6, 5)).astype(np.float64)
    ref = euler_reference(x, w1, w2, tau, dt, tau / dt if r is None else r, v_leak, 0.1)
    with torch.no_grad():
        ours = model(torch.as_tensor(x, dtype=torch.float32)).numpy()
    assert (ours == ref).mean() > 0.995  # float32 vs float64 threshold crossings may differ rarely
    assert ref.sum() > 0


def test_foreign_file_needs_dt_and_deploys_identically_in_sim_and_lava(tmp_path):
    graph, _ = snn_torch_style_graph(tau=5e-3)
    nir.write(str(tmp_path / "f.nir"), graph)
    with pytest.raises(ValueError, match="--dt"):
        load_network(tmp_path / "f.nir")
    loaded = load_network(tmp_path / "f.nir", dt=1e-3)
    assert loaded.report and list(loaded.report[0]["weights"]) == ["fc1"]
    x = spikes(4, (2, 12, 5))
    ours = simulate(loaded.net, x)
    lava = run_lava(loaded.net, x)
    assert np.array_equal(ours.output, lava.output)


def test_unsupported_and_unrepresentable_graphs_are_refused_with_the_node_name():
    graph, _ = snn_torch_style_graph()
    graph.nodes["lif1"].v_reset = np.full(7, 0.3, dtype=np.float32)
    with pytest.raises(ValueError, match="lif1.*v_reset"):
        nir_to_model(graph, 1e-4)

    graph, _ = snn_torch_style_graph()
    graph.nodes["fc2"] = nir.Scale(scale=np.ones(7))
    with pytest.raises(ValueError, match="fc2.*Scale"):
        nir_to_model(graph, 1e-4)

    graph, _ = snn_torch_style_graph()
    graph.edges.append(("lif2", "fc1"))  # a second input into an operator (recurrence goes through its own)
    with pytest.raises(ValueError, match="fc1.*exactly one"):
        nir_to_model(graph, 1e-4)

    graph, _ = snn_torch_style_graph()
    del graph.nodes["lif2"]
    graph.edges[:] = [e for e in graph.edges if "lif2" not in e] + [("fc2", "out")]
    with pytest.raises(ValueError, match="'out'.*Output needs exactly one incoming edge from a neuron group"):
        nir_to_model(graph, 1e-4)


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_nir(tmp_path / "missing.nir")
    (tmp_path / "junk.nir").write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="junk.nir"):
        read_nir(tmp_path / "junk.nir")


def test_metadata_key_is_documented_and_namespaced(tmp_path):
    model = trained_like("64-30-10", NeuronSpec())
    net, _ = quantize_network(model)
    write_nir(tmp_path / "n.nir", model, net, DT)
    g = read_graph(tmp_path / "n.nir")
    carrying = [n for n, node in g.nodes.items() if META_KEY in (node.metadata or {})]
    assert sorted(carrying) == ["fc0", "fc1", "lif0", "lif1"]
    assert g.metadata["spikeport.dt"] == DT
