"""Skip connections (merges) in spec-string networks end to end: the ``N+j`` grammar and its errors,
the float forward against a hand-written step loop, gradients into the skip weights, QAT values
equal to the exported integers (one scale per group, an exponent per edge), NIR round trip, the
simulator against Lava with 0 mismatches, and the ``digits-skip`` preset learning.
"""
import numpy as np
import pytest
import torch

from spikeport.export.nir import read_graph, read_nir, write_nir
from spikeport.export.qat import edge_exponent
from spikeport.export.quantize import QuantSpec, attach_fake_quant, quantize_network
from spikeport.sim.graph import IntGraph
from spikeport.sim.simulator import simulate
from spikeport.targets.lava import run_lava
from spikeport.train.config import make_config
from spikeport.train.network import NeuronSpec, build_network, plan_network
from spikeport.train.neurons import cuba_step, lif_step
from spikeport.train.trainer import train

SPEC = "6-8-8-8+1+0-3"  # layer 3 also hears layer 1 and the input


def skip_model(seed=0, model="lif", delay=False, spec=SPEC):
    torch.manual_seed(seed)
    net = build_network(spec, NeuronSpec(model=model, decay=0.5, decay_syn=0.3, decay_mem=0.6, v_threshold=0.5),
                        synaptic_delay=delay)
    with torch.no_grad():
        for syn, neuron, *_ in net.blocks():
            syn.weight.mul_(2.5)
            neuron.bias.uniform_(-0.05, 0.05)
        net.skips[0].weight.mul_(2.0)
        net.skips[1].weight.mul_(0.3)  # smaller weights: this edge gets a smaller exponent
    return net.eval()


def spikes(seed, shape, p=0.4):
    return (np.random.default_rng(seed).random(shape) < p).astype(np.int8)


@pytest.mark.parametrize("spec, message", [
    ("6-8+1-3", "+1 is not an earlier layer"),
    ("6-8-8+1-3", "+1 already feeds layer 2"),
    ("6-8+0-3", "+0 already feeds layer 1"),
    ("6-8-8-8+a-3", "bad skip source '+a'"),
    ("6-8-8-8+-3", "bad skip source '+'"),
    ("6x6-8-8-2C3+1-3", "enter dense layers only (N or NR), not '2C3'"),
    ("6-8-8-8+0+0-3", "a skip source is repeated"),
    ("6-8-8-8+5-3", "+5 is not an earlier layer"),
])
def test_spec_errors_name_the_token(spec, message):
    with pytest.raises(ValueError) as err:
        plan_network(spec)
    token = next(t for t in spec.split("-") if "+" in t)
    assert message in str(err.value) and repr(token) in str(err.value), str(err.value)


def test_spec_grammar_plan_and_parameters():
    plan = plan_network("6-8-D0.1-8-8R+1+0-3")  # dropout is not a layer number
    assert [k for k, *_ in plan] == ["input", "dense", "dropout", "dense", "rdense", "skip", "skip", "dense"]
    assert plan[5][1] == (1, 8, 8) and plan[6][1] == (0, 6, 8)
    net = build_network("4x4x2-3C3-P2-16-8+1+0-5", NeuronSpec())  # skips from a feature map and a 2-d input
    assert [(s.source, s.target, tuple(s.weight.shape)) for s in net.skips] == [(1, 3, (8, 12)), (0, 3, (8, 32))]
    assert len(net.blocks()) == 5 and net.skips_into(3) == list(net.skips) and net.skips_into(2) == []
    n_main = sum(p.numel() for p in net.layers.parameters())
    assert sum(p.numel() for p in net.parameters()) == n_main + 8 * 12 + 8 * 32
    out = net((torch.rand(4, 2, 2, 4, 4) < 0.5).float())
    assert tuple(out.shape) == (4, 2, 5)
    assert not any("skips" in k for k in build_network("6-8-3", NeuronSpec()).state_dict())  # chains unchanged


def hand_loop(net, x, delay):
    """The network step by step with the step functions: every layer's input at step t is its main
    synapse of the previous layer's spikes plus each skip of its source's spikes (step t - 1 with
    the synaptic delay, zero at step 0)."""
    blocks = net.blocks()
    T = x.shape[0]
    trains = {0: x.reshape(T, x.shape[1], -1)}  # spec layer number -> spikes (T, B, N)
    for k, (syn, neuron, *_) in enumerate(blocks):
        edges = [(syn.weight, trains[k])] + [(s.weight, trains[s.source]) for s in net.skips_into(k)]
        state, out, p = None, [], neuron.params()
        step = cuba_step if neuron.kind == "cuba" else lif_step
        for t in range(T):
            src_t = t - 1 if delay else t
            a = sum(s[src_t] @ w.t() if src_t >= 0 else torch.zeros(x.shape[1], w.shape[0], dtype=x.dtype)
                    for w, s in edges)
            o, state = step(a, state, p, neuron.surrogate)
            out.append(o)
        trains[k + 1] = torch.stack(out)
    return trains[len(blocks)]


@pytest.mark.parametrize("model, delay", [("lif", False), ("cuba", True)])
def test_float_forward_and_gradients_equal_a_hand_loop(model, delay):
    net = skip_model(1, model, delay).double()
    forward_and_gradients_equal(net, torch.as_tensor(spikes(2, (9, 5, 6)), dtype=torch.float64),
                                lambda n, x: hand_loop(n, x, delay))


def forward_and_gradients_equal(net, x, loop):
    """``net(x)`` equals ``loop(net, x)`` (a hand-written step loop), the skips change the answer,
    and STBP through the fused kernel gives the gradients of autograd through the step functions
    for both skip weights and the source layer (also used by test_skip_conv)."""
    out = net(x)
    assert out.sum() > 0 and torch.equal(out, loop(net, x))
    with torch.no_grad():  # the skips change the answer (they are not ignored)
        saved = [s.weight.clone() for s in net.skips]
        for s in net.skips:
            s.weight.zero_()
        assert not torch.equal(net(x), out)
        for s, w in zip(net.skips, saved):
            s.weight.copy_(w)
    readout = torch.linspace(-1, 1, out.shape[-1], dtype=torch.float64)
    params = [net.skips[0].weight, net.skips[1].weight, net.blocks()[0][0].weight]
    g_net = torch.autograd.grad((net(x) * readout).sum(), params)
    g_ref = torch.autograd.grad((loop(net, x) * readout).sum(), params)
    for a, b in zip(g_net, g_ref):
        assert a.abs().sum() > 0 and torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_edge_exponent():
    assert edge_exponent(2.0, 3, 127.0 * 8) == 3   # the largest edge: the group's exponent
    assert edge_exponent(2.0, 3, 127.0) == 0       # 254 fits the mantissa as it is
    assert edge_exponent(2.0, 3, 130.0) == 1
    assert edge_exponent(2.0, 3, 127.0 * 32) == 3  # never above the group's


def test_qat_export_nir_round_trip_simulator_and_lava(tmp_path):
    model = skip_model(3, "cuba", delay=True)
    attach_fake_quant(model)
    net, report = quantize_network(model)
    assert isinstance(net, IntGraph)
    skips = {"layer2_skip_layer0": "layer0", "layer2_skip_input": "input"}
    for name, src in skips.items():
        assert (src, name) in net.edges and (name, "layer2") in net.edges
    assert [len(c) for c in net.components()] == [1] * 5  # feed-forward: input and four groups
    assert net.latency() == 4  # the longest path, not the skips, sets the delay
    # one scale per group, an exponent per edge: the small skip keeps more mantissa bits
    rep = report[2]
    e_group = rep["group_weight_exp"]
    e_in = net.nodes["layer2_skip_input"].weight_exp
    assert rep["skips"]["layer2_skip_input"]["weight_exp"] == e_in < e_group
    assert max(net.nodes["layer2_synapse"].weight_exp, net.nodes["layer2_skip_layer0"].weight_exp) == e_group
    assert_fake_skips_are_the_integers(model, net, report)
    # QAT values are the exported integers: the integer network in hardware timing is the
    # fake-quantized float model (synaptic delay), step by step
    x = spikes(4, (16, 20, 6))
    with torch.no_grad():
        fq = model(torch.as_tensor(x, dtype=torch.float32).transpose(0, 1)).transpose(0, 1).numpy()
    ours = simulate(net, x, timing="hardware", record=True)
    assert ours.output.any() and (ours.output == fq).mean() >= 0.99
    # NIR: the merge is in the file's graph and reads back exactly
    write_nir(tmp_path / "s.nir", model, net, 1e-3)
    g = read_graph(tmp_path / "s.nir")
    assert {("input", "layer2_skip_input"), ("layer2_skip_input", "layer2")} <= {tuple(e) for e in g.edges}
    back, info = read_nir(tmp_path / "s.nir")
    assert info["source"] == "spikeport metadata"
    assert set(back.nodes) == set(net.nodes) and set(back.edges) == set(net.edges)
    for name in skips:
        assert np.array_equal(back.nodes[name].weight, net.nodes[name].weight)
        assert back.nodes[name].weight_exp == net.nodes[name].weight_exp
    hw = simulate(back, x, record=True)
    for name in net.groups():
        assert np.array_equal(hw.spikes[name], ours.spikes[name])
    # Lava (fixed_pt) runs the read-back graph: every group's spikes and v, 0 mismatches
    lava = run_lava(back, x, record=True)
    for name in back.groups():
        assert hw.spikes[name].any(), name
        assert np.count_nonzero(lava.v[name] != hw.v[name]) == 0, name
        assert np.count_nonzero(lava.spikes[name] != hw.spikes[name]) == 0, name


def assert_fake_skips_are_the_integers(model, net, report):
    """The skip weights the QAT forward uses are the exported integers in the group's unit."""
    names = {"layer2_skip_layer0": 0, "layer2_skip_input": 1}
    fakes = model.fake_quant.skip_weights(2)
    for name, k in names.items():
        node = net.nodes[name]
        ints = node.effective_weight() * 2.0 ** node.weight_exp / report[2]["scale"]
        assert np.allclose(fakes[k].detach().double().numpy(), ints, rtol=1e-6, atol=0)
        assert not np.allclose(model.skips[k].weight.detach().double().numpy(), ints, rtol=1e-6, atol=0)


@pytest.mark.parametrize("options", [dict(shared_exponent=True), dict(num_weight_bits=4, rounding="floor")])
def test_reduced_precision_qat_equals_the_integers(options):
    """Other quantizer options keep QAT values == exported integers on merged groups; with
    ``shared_exponent`` every edge, skips included, carries the network's one exponent."""
    model = skip_model(5, "lif", delay=False)
    spec = QuantSpec(**options)
    attach_fake_quant(model, spec)
    net, report = quantize_network(model, spec)
    exps = {n: node.weight_exp for n, node in net.nodes.items() if hasattr(node, "weight_exp")}
    if spec.shared_exponent:
        assert len(set(exps.values())) == 1 and {r["weight_exp"] for r in report} == set(exps.values())
    assert_fake_skips_are_the_integers(model, net, report)
    x = spikes(6, (16, 20, 6))
    with torch.no_grad():
        fq = model(torch.as_tensor(x, dtype=torch.float32).transpose(0, 1)).transpose(0, 1).numpy()
    ours = simulate(net, x, timing="ideal")
    assert ours.output.any() and (ours.output == fq).mean() >= 0.99


def test_digits_skip_preset_learns(tmp_path):
    """The preset trains (QAT, synaptic delay) well above chance (10%) in a few epochs; measured
    accuracies with and without the skip: README, "The integer graph"."""
    cfg = make_config("digits-skip", overrides={"optim.epochs": 2, "optim.seed": 1})
    assert cfg.quant.qat and "skip" in [k for k, *_ in plan_network(cfg.network)]
    metrics = train(cfg, tmp_path / "run", progress=False, log=lambda *_: None,
                    fake_quant=lambda m: attach_fake_quant(m))
    assert metrics["test_accuracy"] >= 0.6
