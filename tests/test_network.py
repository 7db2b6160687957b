"""Tests for train.layers and train.network: spec parsing, shapes, forward, pooling, dropout, errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from spikeport.train.layers import Conv2d, Dropout, Flatten, Linear, Pool2d
from spikeport.train.network import NeuronSpec, SpikingNetwork, build_network, parse_input_shape
from spikeport.train.neurons import CUBA, LIF

# ----------------------------------------------------------------- reference shape arithmetic


def conv_out(size, k, pad=0, stride=1):
    """Output size of a convolution, floor((size + 2 pad - k) / stride) + 1."""
    return (size + 2 * pad - k) // stride + 1


def expected_shapes(spec):
    """Feature shape after each layer, derived independently from the grammar in the module docstring."""
    tokens = spec.split("-")
    dims = [int(d) for d in tokens[0].split("x")]
    if len(dims) == 1:
        shape = (dims[0],)
    else:
        h, w = dims[0], dims[1]
        c = dims[2] if len(dims) == 3 else 1
        shape = (c, h, w)
    shapes = [shape]
    for tok in tokens[1:]:
        if tok[0] in "PS":
            k = int(tok[1:])
            shape = (shape[0], shape[1] // k, shape[2] // k)
        elif "C" in tok:
            c_out, rest = tok.split("C")
            k, pad, stride = rest, "0", "1"
            if "s" in k:
                k, stride = k.split("s")
            if "p" in k:
                k, pad = k.split("p")
            shape = (int(c_out), conv_out(shape[1], int(k), int(pad), int(stride)),
                     conv_out(shape[2], int(k), int(pad), int(stride)))
        elif tok.startswith("D"):
            continue
        else:
            if len(shape) != 1:
                shape = (math.prod(shape),)
                shapes.append(shape)  # the flatten before a dense layer
            shape = (int(tok),)
        shapes.append(shape)
    return shapes


def neuron_shapes(spec):
    """Output shape of each neuron layer: one per dense, conv or pooling token (not flatten or dropout)."""
    shapes = expected_shapes(spec)
    tokens = [t for t in spec.split("-")[1:] if not t.startswith("D")]
    out, i = [], 1
    for tok in tokens:
        if tok.isdigit() and len(shapes[i - 1]) == 3:
            i += 1  # skip the flatten entry
        out.append(shapes[i])
        i += 1
    return out


SPECS = [
    "784-800-10",
    "28x28-15C5-P2-40C5-P2-300-10",
    "34x34x2-12C5-P2-64C5-P2-10",
]


def test_reference_shapes_match_docstring_example():
    # The module docstring lists the shapes of the STBP conv net; the reference arithmetic agrees.
    assert expected_shapes("28x28-15C5-P2-40C5-P2-300-10") == [
        (1, 28, 28), (15, conv_out(28, 5), conv_out(28, 5)), (15, conv_out(28, 5) // 2, conv_out(28, 5) // 2),
        (40, conv_out(12, 5), conv_out(12, 5)), (40, 4, 4), (40 * 4 * 4,), (300,), (10,)]


@pytest.mark.parametrize("token,shape", [("784", (784,)), ("28x28", (1, 28, 28)), ("34x34x2", (2, 34, 34)),
                                         ("5x7", (1, 5, 7))])
def test_parse_input_shape(token, shape):
    assert parse_input_shape(token) == shape


@pytest.mark.parametrize("token", ["28x", "x28", "28*28", "a", ""])
def test_parse_input_shape_rejects_bad_tokens(token):
    with pytest.raises(ValueError, match="bad input shape"):
        parse_input_shape(token)


@pytest.mark.parametrize("spec", SPECS)
def test_spec_shapes_and_layers(spec):
    net = build_network(spec, NeuronSpec())
    want = expected_shapes(spec)
    assert [tuple(s) for s in net.shapes] == want
    assert net.input_shape == want[0]
    assert net.n_out == math.prod(want[-1])
    # One neuron layer per dense, conv or pooling token, each sized like the layer's output.
    n_syn = len(spec.split("-")) - 1
    neurons = net.neuron_layers()
    assert len(neurons) == n_syn
    assert all(isinstance(m, LIF) for m in neurons)
    syn = [m for m in net.layers if isinstance(m, (Linear, Conv2d, Pool2d))]
    assert len(syn) == n_syn
    for layer, neuron in zip(syn, neurons):
        idx = list(net.layers).index(layer)
        assert net.layers[idx + 1] is neuron
    # Parameter shapes: per-neuron (N,) for dense layers, per-channel (C, 1, 1) for conv and pooling.
    out_shapes = []
    for tok, layer in zip(spec.split("-")[1:], syn):
        if isinstance(layer, Linear):
            out_shapes.append((layer.out_features,))
            assert (layer.out_features,) == (int(tok),)
        elif isinstance(layer, Conv2d):
            out_shapes.append((layer.out_channels, 1, 1))
            assert layer.bias is None
        else:
            assert layer.mode == "avg" and layer.kernel_size == int(tok[1:])
    conv_dense = [n for n, layer in zip(neurons, syn) if not isinstance(layer, Pool2d)]
    assert [n.param_shape for n in conv_dense] == out_shapes


def test_weights_have_conv_arithmetic_shapes():
    net = build_network("34x34x2-12C5-P2-64C5-P2-10", NeuronSpec())
    convs = [m for m in net.layers if isinstance(m, Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [(12, 2, 5, 5), (64, 12, 5, 5)]
    (dense,) = [m for m in net.layers if isinstance(m, Linear)]
    h = conv_out(conv_out(34, 5) // 2, 5) // 2
    assert tuple(dense.weight.shape) == (10, 64 * h * h)
    assert any(isinstance(m, Flatten) for m in net.layers)


@pytest.mark.parametrize("spec", SPECS + ["6x6x2-4C3p1s2-S2-5"])
@pytest.mark.parametrize("model", ["lif", "cuba"])
def test_forward_output_shape_and_binary(spec, model):
    torch.manual_seed(0)
    net = build_network(spec, NeuronSpec(model=model, v_threshold=0.05))
    T, B = 3, 2
    x = (torch.rand(T, B, *net.input_shape) < 0.5).float()
    out = net(x)
    assert out.shape == (T, B, net.n_out)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    out2, spikes = net(x, record=True)
    assert torch.equal(out, out2)
    assert len(spikes) == len(net.neuron_layers())
    assert [tuple(s.shape) for s in spikes] == [(T, B, *shape) for shape in neuron_shapes(spec)]
    for s in spikes:
        assert set(s.unique().tolist()) <= {0.0, 1.0}
    assert spikes[0].sum() > 0  # the binary check is not vacuous
    assert spikes[-1].reshape(T, B, -1).equal(out)
    assert all(isinstance(m, CUBA if model == "cuba" else LIF) for m in net.neuron_layers())


def test_flat_spec_accepts_image_shaped_inputs():
    net = build_network("784-800-10", NeuronSpec(), input_shape=(1, 28, 28))
    x = torch.rand(2, 3, 1, 28, 28)
    assert net(x).shape == (2, 3, 10)
    assert torch.equal(net(x), net(x.reshape(2, 3, 784)))


def test_wrong_input_shape_raises():
    net = build_network("28x28-4C5-10", NeuronSpec())
    with pytest.raises(ValueError, match="expects inputs"):
        net(torch.rand(2, 1, 784))
    with pytest.raises(ValueError, match=r"\(1, 28, 27\)"):
        build_network("784-10", NeuronSpec(), input_shape=(1, 28, 27))


def test_padding_and_stride_tokens():
    for tok, (c, k, pad, stride) in {"8C3p1s2": (8, 3, 1, 2), "8C3p1": (8, 3, 1, 1), "8C3s2": (8, 3, 0, 2),
                                     "5C4p2s3": (5, 4, 2, 3)}.items():
        net = build_network(f"9x11x3-{tok}-4", NeuronSpec())
        conv = next(m for m in net.layers if isinstance(m, Conv2d))
        assert (conv.out_channels, conv.kernel_size, conv.padding, conv.stride) == (c, (k, k), (pad, pad),
                                                                                     (stride, stride))
        want = (c, conv_out(9, k, pad, stride), conv_out(11, k, pad, stride))
        assert net.shapes[1] == want
        x = torch.rand(2, 1, 3, 9, 11)
        assert conv(x).shape == (2, 1, *want)


def test_pool_tokens_and_dropout_token():
    net = build_network("8x8-2C3-S2-D0.25-P3-D.5-6", NeuronSpec())
    pools = [m for m in net.layers if isinstance(m, Pool2d)]
    assert [(p.kernel_size, p.mode) for p in pools] == [(2, "sum"), (3, "avg")]
    drops = [m for m in net.layers if isinstance(m, Dropout)]
    assert [d.p for d in drops] == [0.25, 0.5]
    assert net.shapes == expected_shapes("8x8-2C3-S2-D0.25-P3-D.5-6")


def test_sum_pool_is_four_times_avg_pool():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, 2, 4, 6, 7, generator=gen, dtype=torch.float64)  # odd width: the last column is dropped
    s = Pool2d(2, "sum")(x)
    a = Pool2d(2, "avg")(x)
    assert s.shape == (3, 2, 4, 3, 3)
    torch.testing.assert_close(s, 4 * a, rtol=1e-15, atol=1e-15)
    # And against an explicit sum over each 2 x 2 window.
    ref = x[..., 0:6:2, 0:6:2] + x[..., 1:6:2, 0:6:2] + x[..., 0:6:2, 1:6:2] + x[..., 1:6:2, 1:6:2]
    torch.testing.assert_close(s, ref, rtol=1e-14, atol=1e-14)


def test_pool_mode_validation():
    with pytest.raises(ValueError, match="max"):
        Pool2d(2, "max")


def test_time_batched_layers_equal_per_step_application():
    gen = torch.Generator().manual_seed(2)
    T, B = 4, 3
    torch.manual_seed(0)
    lin = Linear(5, 7).double()
    x = torch.randn(T, B, 5, generator=gen, dtype=torch.float64)
    per_step = torch.stack([x[t] @ lin.weight.T for t in range(T)])
    torch.testing.assert_close(lin(x), per_step, rtol=1e-12, atol=1e-12)
    assert lin.bias is None

    conv = Conv2d(2, 3, 3, stride=2, padding=1).double()
    xi = torch.randn(T, B, 2, 7, 6, generator=gen, dtype=torch.float64)
    per_step = torch.stack([F.conv2d(xi[t], conv.weight, stride=2, padding=1) for t in range(T)])
    torch.testing.assert_close(conv(xi), per_step, rtol=1e-12, atol=1e-12)

    pool = Pool2d(3, "avg")
    per_step = torch.stack([F.avg_pool2d(xi[t], 3) for t in range(T)])
    torch.testing.assert_close(pool(xi), per_step, rtol=1e-14, atol=1e-14)

    flat = Flatten()(xi)
    assert flat.shape == (T, B, 2 * 7 * 6)
    assert torch.equal(flat[1, 2], xi[1, 2].flatten())


def test_dropout_mask_is_shared_across_time():
    torch.manual_seed(3)
    p = 0.4
    d = Dropout(p).train()
    T, B, N = 6, 8, 50
    x = torch.rand(T, B, N) + 0.5  # no zeros in the input itself
    y = d(x)
    ratio = y / x  # the mask value per (t, b, n)
    kept = ratio[0] != 0
    # Every (b, n) is either dropped at every step or kept, with scale 1/(1-p), at every step.
    assert torch.equal(ratio == 0, kept.logical_not().expand(T, B, N))
    torch.testing.assert_close(ratio[:, kept], torch.full_like(ratio[:, kept], 1 / (1 - p)))
    n_drop = int((~kept).sum())
    assert 0 < n_drop < B * N
    # The dropped fraction is plausible for p = 0.4 (binomial, 5 standard deviations).
    std = math.sqrt(B * N * p * (1 - p))
    assert abs(n_drop - p * B * N) < 5 * std
    # Also in a conv layout: the mask is (B, C, H, W), shared over T.
    xc = torch.ones(5, 2, 3, 4, 4)
    yc = Dropout(0.5).train()(xc)
    assert torch.equal(yc, yc[0].expand_as(yc))


def test_dropout_is_identity_in_eval_and_validates_p():
    d = Dropout(0.5).eval()
    x = torch.rand(3, 2, 4)
    assert d(x) is x
    assert Dropout(0.0).train()(x) is x
    for p in (1.0, -0.1):
        with pytest.raises(ValueError, match=repr(p)):
            Dropout(p)


@pytest.mark.parametrize("spec,token", [
    ("784", "784"),
    ("28x28-3C30-10", "3C30"),
    ("784-P2-10", "P2"),
    ("784-10-X3", "X3"),
    ("784-4C3-10", "4C3"),
    ("4x4-P5-10", "P5"),
    ("28x-10", "28x"),
    ("784-10-D0.2", "784-10-D0.2"),
])
def test_bad_specs_name_the_offending_token(spec, token):
    with pytest.raises(ValueError) as err:
        build_network(spec, NeuronSpec())
    assert repr(token) in str(err.value)


def test_unknown_neuron_model():
    with pytest.raises(ValueError, match="izhikevich"):
        build_network("4-2", NeuronSpec(model="izhikevich"))


def test_neuron_spec_is_passed_to_every_layer():
    spec = NeuronSpec(model="cuba", decay_syn=0.3, decay_mem=0.7, v_threshold=0.9, surrogate="gaussian",
                      surrogate_width=0.4, per_neuron=True, learn_decay=True, learn_threshold=True,
                      learn_bias=False, detach_reset=True)
    net = build_network("6x6-2C3-P2-3", spec)
    for m in net.neuron_layers():
        assert isinstance(m, CUBA)
        assert m.surrogate.name == "gaussian" and m.surrogate.a == 0.4 and m.detach_reset
        assert m.decay_syn.shape == m.param_shape
        assert torch.allclose(m.decay_syn, torch.full(m.param_shape, 0.3))
        assert torch.allclose(m.decay_mem, torch.full(m.param_shape, 0.7))
        assert torch.allclose(m.v_threshold, torch.full(m.param_shape, 0.9))
        assert {n for n, _ in m.named_parameters()} == {"decay_syn", "decay_mem", "v_threshold"}
    assert [m.param_shape for m in net.neuron_layers()] == [(2, 1, 1), (2, 1, 1), (3,)]
    assert isinstance(net, SpikingNetwork) and net.spec == "6x6-2C3-P2-3"


@pytest.mark.parametrize("spec,match", [
    ("784-0-10", "at least 1 neuron"),
    ("0-10", "at least 1"),
    ("28x28-0C5-10", "at least 1"),
    ("28x28-4C0-10", "at least 1"),
    ("28x28-4C5s0-10", "at least 1"),
    ("28x28-P0-10", "at least 1"),
    ("784-99999999-10", "MAX_PARAMETERS"),
    ("1000x1000x3-4096C9-10", "MAX_PARAMETERS"),
])
def test_plan_refuses_empty_layers_and_oversized_networks_without_building(spec, match):
    import time

    from spikeport.train.network import plan_network

    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        plan_network(spec)
    with pytest.raises(ValueError, match=match):
        build_network(spec, NeuronSpec())
    assert time.perf_counter() - t0 < 1.0  # refused before any weight is allocated


def test_plan_lists_the_layers_build_makes():
    from spikeport.train.network import plan_network

    plan = plan_network("8x8-2C3p1s2-S2-D0.25-6")
    assert [(k, a) for k, a, _ in plan] == [("input", ()), ("conv", (1, 2, 3, 2, 1)), ("pool", (2, "sum")),
                                            ("dropout", (0.25,)), ("flatten", ()), ("dense", (8, 6))]
    net = build_network("8x8-2C3p1s2-S2-D0.25-6", NeuronSpec())
    assert [tuple(s) for s in net.shapes] == [shape for kind, _, shape in plan if kind != "dropout"]
