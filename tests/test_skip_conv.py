"""Skip connections into convolution layers (``<n>C<k>+j``) end to end: the grammar, the stride rule
and its one-line refusals, the float forward against a step-by-step loop, gradients into the 1x1
skip kernel, QAT values equal to the exported integers (one scale per group, an exponent per edge),
float (fake-quantized) against the integer simulator on the briefly trained ``digits-conv-skip``
preset, NIR write and read back, and the simulator against Lava ``fixed_pt`` (every group's spikes,
u and v: 0 mismatches) and the ONNX graph step model.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikeport.export.nir import read_graph, read_nir, write_nir
from spikeport.export.quantize import QuantSpec, attach_fake_quant, quantize_network
from spikeport.pipeline import encode_split
from spikeport.sim import graph as G
from spikeport.sim.simulator import simulate
from spikeport.train.config import make_config
from spikeport.train.layers import ConvSkip, Linear
from spikeport.train.network import NeuronSpec, build_network, conv_skip_stride, plan_network
from spikeport.train.neurons import cuba_step, lif_step
from spikeport.train.trainer import load_run, train

sys.path.insert(0, str(Path(__file__).parent))
from test_graph_vs_lava import equal_everywhere  # noqa: E402  (the same Lava comparison for every graph test)
from test_onnx_graph import equal_to_simulator  # noqa: E402  (the ONNX graph step model's comparison)
from test_skip_merge import forward_and_gradients_equal, spikes  # noqa: E402  (the same checks and inputs)
from test_skip_merge import skip_model as dense_skip_model  # noqa: E402

# layer 3 (6C3p1 on layer 2's 6x3x3) also hears layer 1 (4x6x6) and the input (2x6x6): both through a
# 1x1 convolution of stride 2, the shortcut of a ResNet block that halves the map (layer 2, s2)
SPEC = "6x6x2-4C3p1-6C3p1s2-6C3p1+1+0-5"


def ceil_div(a, b):
    return -(-a // b)


def skip_model(seed=0, model="lif", delay=False, spec=SPEC):
    return dense_skip_model(seed, model, delay, spec)  # test_skip_merge's model, with this file's spec


@pytest.mark.parametrize("spec, source, target", [
    (SPEC, (4, 6, 6), (6, 3, 3)),
    ("8x8-4C3p1-P2-8C3p1+1-10", (4, 8, 8), (8, 4, 4)),       # a source before pooling: the pooling factor
    ("7x7-4C3p1-4C3p1s2-4C3p1+1-3", (4, 7, 7), (4, 4, 4)),   # odd size: ceil(7 / 2) = 4
    ("8x8-4C3p1-4C3p1-8C3p1+1-10", (4, 8, 8), (8, 8, 8)),    # same size: stride 1
])
def test_plan_build_and_forward_shapes(spec, source, target):
    plan = plan_network(spec)
    skip = [(a, out) for kind, a, out in plan if kind == "conv_skip"][0]
    src, c_src, c_out, stride = skip[0]
    assert (c_src, c_out, skip[1]) == (source[0], target[0], target)
    # the rule, from the equation: the stride is ceil(H_j / H) and gives exactly H rows (and W across)
    assert stride == tuple(ceil_div(a, b) for a, b in zip(source[1:], target[1:]))
    assert all(ceil_div(n_src, s) == n for n_src, s, n in zip(source[1:], stride, target[1:]))
    assert conv_skip_stride(source, target) == stride
    net = build_network(spec, NeuronSpec())
    s = net.skips[0]
    assert isinstance(s, ConvSkip) and (s.source, tuple(s.stride), tuple(s.weight.shape)) == (
        src, stride, (c_out, c_src, 1, 1))
    assert net.skips_into(s.target)[0] is s and tuple(net.blocks()[s.target][3]) == target
    n_main = sum(p.numel() for p in net.layers.parameters())
    n_skip = sum(a[1] * a[2] for kind, a, _ in plan if kind == "conv_skip")  # C_j x C per 1x1 kernel
    assert sum(p.numel() for p in net.parameters()) == n_main + n_skip
    x = (torch.rand(3, 2, *net.input_shape) < 0.5).float()
    out, rec = net(x, record=True)
    assert tuple(out.shape) == (3, 2, net.n_out) and tuple(rec[s.target].shape) == (3, 2, *target)


@pytest.mark.parametrize("spec, shapes", [
    ("8x8-4C3-8C3p1+0-10", ("1x8x8", "8x6x6")),           # 8 rows cannot become 6 (stride 1: 8, 2: 4)
    ("5x5-4C3p1-4C2+0-3", ("1x5x5", "4x4x4")),            # 5 -> 4: no stride
    ("8x8-4C3p1s2-4C3p1-8C3p3+1-10", ("4x4x4", "8x8x8")),  # a skip cannot upsample
])
def test_a_source_that_cannot_reach_the_target_is_one_line_naming_both_shapes(spec, shapes):
    with pytest.raises(ValueError) as err:
        plan_network(spec)
    msg = str(err.value)
    token = next(t for t in spec.split("-") if "+" in t)
    assert "\n" not in msg and repr(token) in msg and all(s in msg for s in shapes), msg
    with pytest.raises(ValueError, match="no 1x1 convolution"):
        build_network(spec, NeuronSpec())


@pytest.mark.parametrize("spec, message", [
    ("8x8-4C3p1-P2+0-10", "enter dense or convolution layers only"),  # pooling has no weights of its own
    ("6x6-8-8-2C3+1-3", "skip source +1 is flat (8,)"),               # a dense layer's spikes have no map
])
def test_other_refusals(spec, message):
    with pytest.raises(ValueError) as err:
        plan_network(spec)
    assert message in str(err.value) and "\n" not in str(err.value)


def hand_loop(net, x, delay):
    """The network step by step with the step functions: every layer's input at step t is its main
    synapse on the previous layer's spikes plus, for each skip, the 1x1 convolution of its source's
    spike map with the stride of the rule (step t - 1 with the synaptic delay, zero at step 0)."""
    T, B = x.shape[:2]
    trains = {0: x}  # spec layer number -> spikes (T, B, *shape)
    for k, (syn, neuron, _, out_shape) in enumerate(net.blocks()):
        if isinstance(syn, Linear):
            def main(s, w=syn.weight):
                return F.linear(s.reshape(B, -1), w)
        else:
            def main(s, c=syn):
                return F.conv2d(s, c.weight, stride=c.stride, padding=c.padding)
        edges = [(main, trains[k])]
        for sk in net.skips_into(k):
            stride = conv_skip_stride(tuple(trains[sk.source].shape[2:]), tuple(out_shape))
            edges.append((lambda s, w=sk.weight, st=stride: F.conv2d(s, w, stride=st), trains[sk.source]))
        state, out, p = None, [], neuron.params()
        step = cuba_step if neuron.kind == "cuba" else lif_step
        for t in range(T):
            src_t = t - 1 if delay else t
            a = sum(f(s[src_t]) if src_t >= 0 else torch.zeros(B, *out_shape, dtype=x.dtype) for f, s in edges)
            o, state = step(a, state, p, neuron.surrogate)
            out.append(o)
        trains[k + 1] = torch.stack(out)
    return trains[len(net.blocks())]


@pytest.mark.parametrize("model, delay", [("lif", False), ("cuba", True)])
def test_float_forward_and_gradients_equal_a_hand_loop(model, delay):
    net = skip_model(1, model, delay).double()
    forward_and_gradients_equal(net, torch.as_tensor(spikes(2, (9, 5, 2, 6, 6)), dtype=torch.float64),
                                lambda n, x: hand_loop(n, x, delay))


SKIPS = {"layer2_skip_layer0": ("layer0", 0), "layer2_skip_input": ("input", 1)}


def assert_fake_skips_are_the_integers(model, net, report):
    """The 1x1 kernels the QAT forward uses are the exported integers in the group's unit (a
    convolution's exponent folded into its weights: ``effective_weight`` = ``weight << weight_exp``)."""
    fakes = model.fake_quant.skip_weights(2)
    for name, (_, k) in SKIPS.items():
        ints = net.nodes[name].effective_weight() / report[2]["scale"]
        assert np.allclose(fakes[k].detach().double().numpy(), ints, rtol=1e-6, atol=0)
        assert not np.allclose(model.skips[k].weight.detach().double().numpy(), ints, rtol=1e-6, atol=0)


def test_qat_export_is_a_conv_merge_with_one_scale_and_edge_exponents():
    model = skip_model(3, "cuba", delay=True)
    attach_fake_quant(model)
    net, report = quantize_network(model)
    assert isinstance(net, G.IntGraph)
    for name, (src, k) in SKIPS.items():
        node = net.nodes[name]
        assert (src, name) in net.edges and (name, "layer2") in net.edges
        assert isinstance(node, G.Conv2d) and node.weight.shape == (6, model.skips[k].in_channels, 1, 1)
        assert tuple(node.stride) == (2, 2) and tuple(node.padding) == (0, 0)
    assert [len(c) for c in net.components()] == [1] * 5 and net.latency() == 4
    # one scale per group, an exponent per edge: the small skip keeps more mantissa bits
    e_group, skips = report[2]["group_weight_exp"], report[2]["skips"]
    assert skips["layer2_skip_input"]["weight_exp"] == net.nodes["layer2_skip_input"].weight_exp < e_group
    assert max(net.nodes["layer2_synapse"].weight_exp, net.nodes["layer2_skip_layer0"].weight_exp) == e_group
    assert_fake_skips_are_the_integers(model, net, report)
    # QAT values are the exported integers: the integer network in hardware timing is the
    # fake-quantized float model (synaptic delay), step by step, in every group
    x = spikes(4, (16, 20, 2, 6, 6))
    with torch.no_grad():
        _, rec = model(torch.as_tensor(x, dtype=torch.float32).transpose(0, 1), record=True)
    groups_equal_qat(net, x, rec)


def groups_equal_qat(net, x, rec):
    """The integer network in hardware timing against the fake-quantized model's recorded spikes
    ``rec``: every group fires, and >= 99% of its spikes are equal step by step."""
    ours = simulate(net, x, timing="hardware", record=True)
    for k, name in enumerate(net.groups()):
        fq = rec[k].transpose(0, 1).reshape(ours.spikes[name].shape).numpy()
        assert ours.spikes[name].any() and (ours.spikes[name] == fq).mean() >= 0.99, name
    return ours


@pytest.mark.parametrize("options", [dict(shared_exponent=True), dict(num_weight_bits=4, rounding="floor")])
def test_reduced_precision_qat_equals_the_integers(options):
    model = skip_model(5, "lif", delay=False)
    spec = QuantSpec(**options)
    attach_fake_quant(model, spec)
    net, report = quantize_network(model, spec)
    if spec.shared_exponent:
        assert len({node.weight_exp for node in net.nodes.values() if hasattr(node, "weight_exp")}) == 1
    assert_fake_skips_are_the_integers(model, net, report)
    x = spikes(6, (16, 20, 2, 6, 6))
    with torch.no_grad():
        fq = model(torch.as_tensor(x, dtype=torch.float32).transpose(0, 1)).transpose(0, 1).numpy()
    ours = simulate(net, x, timing="ideal")
    assert ours.output.any() and (ours.output == fq).mean() >= 0.99


def assert_same_record(x, y, name):
    arr_x, arr_y = {}, {}
    dx, dy = G.node_to_dict(x, arr_x, name), G.node_to_dict(y, arr_y, name)
    assert dx == dy and arr_x.keys() == arr_y.keys(), name
    for key in arr_x:
        assert np.array_equal(arr_x[key], arr_y[key]), (name, key)


def assert_same_graph(a, b):
    """The same integer network: inputs and groups (every register), and the same projections (the
    lowered graph every runner uses: source, target and operator with every field). NIR adds a
    Flatten node before a Dense that reads a map (``graph_to_nir``); lowering drops it again."""
    assert a.inputs() == b.inputs() and sorted(a.groups()) == sorted(b.groups()) and a.outputs() == b.outputs()
    for name in a.inputs() + a.groups():
        assert_same_record(a.nodes[name], b.nodes[name], name)
    pa, pb = ({p.name: p for p in g.projections()} for g in (a, b))
    assert pa.keys() == pb.keys()
    for name, p in pa.items():
        assert (p.src, p.dst) == (pb[name].src, pb[name].dst), name
        assert_same_record(p.op, pb[name].op, name)


def test_nir_round_trip_and_lava(tmp_path):
    model = skip_model(3, "cuba", delay=True)
    attach_fake_quant(model)
    net, _ = quantize_network(model)
    write_nir(tmp_path / "s.nir", model, net, 1e-3)
    g = read_graph(tmp_path / "s.nir")  # the file's own graph: a Conv2d node from the source into the group
    for name, (src, _) in SKIPS.items():
        assert type(g.nodes[name]).__name__ == "Conv2d" and tuple(g.nodes[name].stride) == (2, 2)
        assert {(src, name), (name, "layer2")} <= {tuple(e) for e in g.edges}
    back, info = read_nir(tmp_path / "s.nir")
    assert info["source"] == "spikeport metadata"
    assert_same_graph(back, net)
    x = spikes(7, (3, 14, 2, 6, 6))
    ours = equal_everywhere(back, x=x)  # Lava fixed_pt: spikes, u and v of every group, 0 mismatches
    original = simulate(net, x, record=True)
    for name in net.groups():
        assert np.array_equal(ours.spikes[name], original.spikes[name])
    equal_to_simulator(net, tmp_path, x=x)  # and the ONNX step model (Conv nodes merging into one group)


def test_the_preset_briefly_trained_float_integer_nir_and_lava(tmp_path):
    """``digits-conv-skip`` (QAT, synaptic delay; 8x8 digits, built in) trained for 2 of its 10
    epochs learns, its fake-quantized float model and the integer simulator agree step by step,
    and the exported NIR runs in Lava exactly as in the simulator. Accuracies of the full preset,
    with and without its skips: its comment in train/config.py."""
    cfg = make_config("digits-conv-skip", overrides={"optim.epochs": 2, "optim.seed": 1})
    assert cfg.quant.qat and cfg.quant.synaptic_delay
    assert [a[0] for kind, a, _ in plan_network(cfg.network) if kind == "conv_skip"] == [1, 3]
    train(cfg, tmp_path / "run", progress=False, log=lambda *_: None, fake_quant=lambda m: attach_fake_quant(m))
    _, model = load_run(tmp_path / "run")
    attach_fake_quant(model)
    net, _ = quantize_network(model)
    assert all(isinstance(net.nodes[n], G.Conv2d) for n in ("layer4_skip_layer0", "layer4_skip_layer2"))
    x, labels = encode_split(cfg, 120)
    with torch.no_grad():
        out, rec = model(torch.as_tensor(x, dtype=torch.float32).transpose(0, 1), record=True)
    ours = groups_equal_qat(net, x, rec)
    pred_f = out.sum(0).argmax(-1).numpy()
    pred_i = ours.output.sum(1).argmax(-1)
    assert (pred_f == labels).mean() >= 0.6  # it learns (chance: 0.1; measured 0.82 on these 120 digits)
    assert (pred_f == pred_i).mean() >= 0.95
    write_nir(tmp_path / "t.nir", model, net, 1e-3)
    back, _ = read_nir(tmp_path / "t.nir")
    assert_same_graph(back, net)
    equal_everywhere(back, x=x[:4])
