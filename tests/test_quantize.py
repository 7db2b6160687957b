"""Tests for export.quantize: layer scales, block quantization, network export, QAT and float-vs-int."""
import copy
import math

import numpy as np
import pytest
import torch

from spikeport.export.quantize import (QuantSpec, attach_fake_quant, block_weight, detach_fake_quant, layer_scale,
                             neuron_floats, quantize_block, quantize_network)
from spikeport.sim import formats as F
from spikeport.sim.network import Conv2d, Dense
from spikeport.sim.simulator import simulate
from spikeport.train.layers import Linear as TorchLinear
from spikeport.train.layers import Pool2d
from spikeport.train.network import NeuronSpec, build_network
from spikeport.train.neurons import CUBA

torch.set_num_threads(1)
VTH_MAX = 2 ** 17 - 1


def _round(x: float) -> int:
    return int(round(x))


def _representable_bias():
    return np.unique(np.array([m << e for e in range(8) for m in range(-4096, 4096)], dtype=np.int64))


# -------------------------------------------------------------------------------- layer_scale

def test_layer_scale_rules():
    rng = np.random.default_rng(0)
    spec = QuantSpec()
    n_exp_positive = 0
    for _ in range(300):
        w_max = float(10 ** rng.uniform(-2, 1))
        vth_max = float(10 ** rng.uniform(-2, 1.5))
        target = int(rng.integers(1, 5000))
        lam, e = layer_scale(w_max, vth_max, QuantSpec(target_vth=target))
        lam0 = 254 / w_max
        if lam0 * vth_max > VTH_MAX:  # overflow branch: threshold fits exactly at the top
            assert e == 0 and lam == pytest.approx(VTH_MAX / vth_max, rel=1e-12)
            continue
        assert 0 <= e <= 7
        assert lam * w_max == pytest.approx(254 * 2 ** e, rel=1e-12)  # largest weight -> mantissa 254
        if e < 7:
            assert lam * vth_max >= target * (1 - 1e-12)               # enough threshold resolution
        if e > 0:
            assert lam / 2 * vth_max < target                           # and e is the smallest such
            n_exp_positive += 1
    assert n_exp_positive > 20
    # the documented special cases
    lam, e = layer_scale(0.5, 0.0, spec)
    assert (lam, e) == (254 / 0.5, 0)
    lam, e = layer_scale(0.0, 2.0, spec)  # no weights: lam0 = 1, e capped at weight_exp's maximum 7
    assert (lam, e) == (2.0 ** min(math.ceil(math.log2(spec.target_vth / 2.0)), 7), min(math.ceil(
        math.log2(spec.target_vth / 2.0)), 7))
    lam, e = layer_scale(0.0, 100.0, spec)
    assert lam == 2 ** e and lam * 100.0 >= spec.target_vth > lam / 2 * 100.0
    lam, e = layer_scale(1e-4, 1.0, spec)  # 254e4 * 1.0 > 131071
    assert (lam, e) == (VTH_MAX / 1.0, 0)


def test_quant_spec_validation():
    for kw in ({"num_weight_bits": 0}, {"num_weight_bits": 9}, {"rounding": "up"}, {"target_vth": 0},
               {"target_vth": VTH_MAX + 1}):
        with pytest.raises(ValueError):
            QuantSpec(**kw)


# ------------------------------------------------------------------------------ quantize_block

def _floats(rng, n, scalar_threshold=False):
    return {"decay_syn": np.array(0.37), "decay_mem": np.array(0.81),
            "v_threshold": np.array(0.6) if scalar_threshold else rng.uniform(0.2, 1.5, n),
            "bias": rng.normal(0, 0.3, n)}


@pytest.mark.parametrize("rounding,nb", [("nearest", 8), ("floor", 8), ("nearest", 5)])
def test_quantize_block_rules(rounding, nb):
    rng = np.random.default_rng(nb + len(rounding))
    w = rng.normal(0, 0.2, (6, 5))
    nf = _floats(rng, 6)
    spec = QuantSpec(num_weight_bits=nb, rounding=rounding, target_vth=900)
    q = quantize_block(w, nf, spec)
    lam, e = layer_scale(float(np.abs(w).max()), float(nf["v_threshold"].max()), spec)
    assert q.scale == lam and q.weight_exp == e
    # weights: onto Lava's grid at this exponent (the formats rules, tested in test_formats)
    m, _ = F.quantize_weights(w * lam, e, nb, rounding)
    assert np.array_equal(q.weight, m) and q.weight.shape == w.shape
    assert np.allclose(q.fake_weight, m * 2.0 ** e / lam, rtol=0, atol=0)
    # threshold: vth = round(lam * V_th)
    vth = np.asarray(q.neurons.vth)
    assert vth.tolist() == [_round(lam * t) for t in nf["v_threshold"].tolist()]
    assert np.array_equal(q.fake["v_threshold"], vth / lam)
    # bias: mant << exp is the representable value nearest to round(64 lam b)
    target = np.array([_round(64 * lam * b) for b in nf["bias"].tolist()], dtype=np.int64)
    got = np.asarray(q.neurons.bias_mant) << np.asarray(q.neurons.bias_exp)
    rep = _representable_bias()
    idx = np.clip(np.searchsorted(rep, target), 1, len(rep) - 1)
    nearest = np.minimum(np.abs(rep[idx] - target), np.abs(rep[idx - 1] - target))
    assert np.array_equal(np.abs(got - target), nearest)
    assert np.any(np.asarray(q.neurons.bias_exp) > 0)  # the split was exercised
    assert np.allclose(q.fake["bias"], got / (64 * lam), rtol=1e-15, atol=0)
    # decays (with the du offset)
    du, dv = int(np.asarray(q.neurons.du)[0]), int(np.asarray(q.neurons.dv)[0])
    assert du == _round((1 - 0.37) * 4096) - 1 and dv == _round((1 - 0.81) * 4096)
    assert float(q.fake["decay_syn"]) == 1 - (du + 1) / 4096
    assert float(q.fake["decay_mem"]) == 1 - dv / 4096
    # report
    assert q.report["scale"] == lam and q.report["weight_exp"] == e
    assert q.report["weights"]["rel_error"] == pytest.approx(
        math.sqrt(((q.fake_weight - w) ** 2).sum()) / math.sqrt((w ** 2).sum()), rel=1e-12)
    assert q.report["v_threshold"]["clipped"] == 0 and q.report["bias"]["clipped"] == 0


def test_quantize_block_stbp_lif_has_no_current():
    rng = np.random.default_rng(3)
    nf = _floats(rng, 4, scalar_threshold=True)
    nf["decay_syn"] = np.zeros(())
    q = quantize_block(rng.uniform(0, 1, (4, 3)), nf, QuantSpec())
    assert np.asarray(q.neurons.du).tolist() == [4095] and float(q.fake["decay_syn"]) == 0.0
    assert np.asarray(q.neurons.vth).size == 1


def test_negative_threshold_is_rejected():
    rng = np.random.default_rng(4)
    nf = _floats(rng, 3)
    nf["v_threshold"] = np.array([0.5, -0.1, 0.3])
    with pytest.raises(ValueError, match="negative threshold"):
        quantize_block(rng.normal(size=(3, 2)), nf, QuantSpec())
    model = build_network("5-3", NeuronSpec(v_threshold=-0.2))
    with pytest.raises(ValueError, match="negative threshold"):
        quantize_network(model)


# ---------------------------------------------------------------------------- quantize_network

def _model(spec, neuron=NeuronSpec(), seed=0):
    torch.manual_seed(seed)
    m = build_network(spec, neuron)
    with torch.no_grad():
        for nl in m.neuron_layers():
            nl.bias.normal_(0, 0.05)
    return m


def _check_block_integers(net_layer, syn_float, neuron_float, in_shape, report, spec=QuantSpec()):
    """The exported layer holds quantize_block's integers for the model's own floats."""
    q = quantize_block(block_weight(syn_float, in_shape), neuron_floats(neuron_float), spec)
    assert np.array_equal(net_layer.synapse.weight, q.weight)
    assert int(net_layer.synapse.weight_exp) == q.weight_exp
    for name in ("du", "dv", "vth", "bias_mant", "bias_exp"):
        assert np.array_equal(np.asarray(getattr(net_layer.neurons, name)).reshape(-1),
                              np.asarray(getattr(q.neurons, name)).reshape(-1)), name
    assert report["scale"] == q.scale


def test_quantize_dense_network():
    model = _model("16-12-4")
    net, reports = quantize_network(model, dt=1e-3, meta={"run": "t"})
    assert net.input_shape == (16,) and net.shapes == ((16,), (12,), (4,))
    assert all(isinstance(layer.synapse, Dense) for layer in net.layers)
    assert [r["kind"] for r in reports] == ["dense", "dense"]
    assert net.dt == 1e-3 and net.meta["run"] == "t" and net.meta["network"] == "16-12-4"
    for layer, (syn, neuron, in_shape, _), rep in zip(net.layers, model.blocks(), reports):
        _check_block_integers(layer, syn, neuron, in_shape, rep)
        assert np.asarray(layer.neurons.du).tolist() == [4095]                 # STBP LIF: no current
        assert np.asarray(layer.neurons.dv).tolist() == [_round((1 - 0.2) * 4096)]
        lam = rep["scale"]
        assert np.asarray(layer.neurons.vth).tolist() == [_round(lam * 0.5)]
        assert np.abs(layer.synapse.weight).max() == 254                       # largest weight -> 254
        assert np.all(layer.synapse.weight % 2 == 0)                           # mixed signs: even


@pytest.mark.parametrize("spec,kinds,pool_mode", [("6x6x2-3C3-P2-4", ["conv", "avgpool", "dense"], "avg"),
                                                  ("8x8-4C3-S2-5", ["conv", "sumpool", "dense"], "sum")])
def test_quantize_conv_pool_network(spec, kinds, pool_mode):
    model = _model(spec)
    net, reports = quantize_network(model)
    blocks = model.blocks()
    assert net.input_shape == model.input_shape
    assert net.shapes == (model.input_shape, *[b[3] for b in blocks])
    assert [r["kind"] for r in reports] == kinds
    assert [type(layer.synapse) for layer in net.layers] == [Conv2d, Conv2d, Dense]
    for layer, (syn, neuron, in_shape, _), rep in zip(net.layers, blocks, reports):
        _check_block_integers(layer, syn, neuron, in_shape, rep)
    # the pool is a stride-k convolution with one uniform kernel on the channel diagonal
    pool, (psyn, _, pin, _) = net.layers[1].synapse, blocks[1]
    assert isinstance(psyn, Pool2d) and psyn.mode == pool_mode
    k, c = psyn.kernel_size, pin[0]
    w = np.asarray(pool.weight)
    assert w.shape == (c, c, k, k) and tuple(pool.stride) == (k, k) and tuple(pool.padding) == (0, 0)
    diag = w[np.arange(c), np.arange(c)]
    assert np.all(diag == diag.flat[0]) and diag.flat[0] > 0
    off = w.copy()
    off[np.arange(c), np.arange(c)] = 0
    assert not off.any()
    lam, e = reports[1]["scale"], reports[1]["weight_exp"]
    tap = 1 / k ** 2 if pool_mode == "avg" else 1.0
    assert diag.flat[0] == _round(tap * lam / 2 ** e)
    # per-channel biases of conv layers are exported per channel
    assert np.asarray(net.layers[0].neurons.bias_mant).shape == (net.shapes[1][0],)
    # the record simulates
    assert simulate(net, np.ones((1, 3, *model.input_shape), dtype=np.int8)).output.shape == (1, 3, net.output_size)


def test_conv_stride_and_padding_are_exported():
    model = _model("8x8-4C3p1s2-5")
    net, _ = quantize_network(model)
    conv = net.layers[0].synapse
    assert tuple(conv.stride) == (2, 2) and tuple(conv.padding) == (1, 1)
    assert net.shapes == ((1, 8, 8), (4, 4, 4), (5,))


def test_cuba_decays_become_du_dv():
    model = _model("10-6-3", NeuronSpec(model="cuba", decay_syn=0.5, decay_mem=0.9, v_threshold=1.0))
    net, _ = quantize_network(model)
    for layer in net.layers:
        assert np.asarray(layer.neurons.du).tolist() == [_round(0.5 * 4096) - 1]
        assert np.asarray(layer.neurons.dv).tolist() == [_round((1 - 0.9) * 4096)]


def test_per_neuron_thresholds_are_exported_per_neuron():
    model = _model("10-6-3", NeuronSpec(per_neuron=True, learn_threshold=True))
    with torch.no_grad():
        model.neuron_layers()[0].v_threshold.uniform_(0.3, 0.9)
    net, reports = quantize_network(model)
    th = model.neuron_layers()[0].v_threshold.detach().double().numpy()
    lam = reports[0]["scale"]
    assert np.asarray(net.layers[0].neurons.vth).tolist() == [_round(lam * t) for t in th.tolist()]


# ------------------------------------------------------------------------------------------ QAT

def _fake_copy(model, spec=QuantSpec()):
    """A plain float model whose weights and neuron parameters ARE the fake-quantized values."""
    plain = copy.deepcopy(model)
    plain.fake_quant = None
    for syn, neuron, in_shape, _ in plain.blocks():
        q = quantize_block(block_weight(syn, in_shape), neuron_floats(neuron), spec)
        with torch.no_grad():
            if not isinstance(syn, Pool2d):
                syn.weight.copy_(torch.as_tensor(q.fake_weight))
            if isinstance(neuron, CUBA):
                neuron.decay_syn.copy_(torch.as_tensor(q.fake["decay_syn"]))
            neuron.decay_mem.copy_(torch.as_tensor(q.fake["decay_mem"]))
            neuron.v_threshold.copy_(torch.as_tensor(q.fake["v_threshold"]))
            neuron.bias.copy_(torch.as_tensor(q.fake["bias"]))
    return plain


def _input(model, T=12, B=3, p=0.4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((T, B, *model.input_shape), generator=g) < p).float()


@pytest.mark.parametrize("spec,neuron", [("16-12-4", NeuronSpec(v_threshold=0.3)),
                                         ("6x6x2-3C3-P2-4", NeuronSpec(model="cuba", v_threshold=0.3))])
def test_qat_forward_uses_the_fake_quantized_values(spec, neuron):
    model = _model(spec, neuron, seed=1)
    x = _input(model)
    float_out, float_rec = model(x, record=True)
    plain = _fake_copy(model)
    attach_fake_quant(model)
    qat_out, qat_rec = model(x, record=True)
    ref_out, ref_rec = plain(x, record=True)
    assert all(r.any() for r in ref_rec)  # activity in every layer
    for a, b in zip(qat_rec, ref_rec):
        assert torch.equal(a, b)
    # fake quantization changes the values (else the comparison above proves nothing) ...
    w_float = [s.weight for s in model.modules() if isinstance(s, TorchLinear)]
    w_fake = [s.weight for s in plain.modules() if isinstance(s, TorchLinear)]
    assert all(not torch.equal(a, b) for a, b in zip(w_float, w_fake))
    # ... and the output of at least one layer
    assert any(not torch.equal(a, b) for a, b in zip(qat_rec, float_rec)) or not torch.equal(qat_out, float_out)
    detach_fake_quant(model)
    back_out, back_rec = model(x, record=True)
    assert model.fake_quant is None
    assert torch.equal(back_out, float_out)
    for a, b in zip(back_rec, float_rec):
        assert torch.equal(a, b)


def test_qat_gradients_flow_straight_through():
    model = attach_fake_quant(_model("16-12-4", NeuronSpec(v_threshold=0.3, learn_threshold=True), seed=2))
    out = model(_input(model, p=0.5))
    (out.sum() + 0.0).backward()
    for syn, neuron, *_ in model.blocks():
        assert syn.weight.grad is not None and torch.count_nonzero(syn.weight.grad) > 0
        assert neuron.bias.grad is not None and torch.count_nonzero(neuron.bias.grad) > 0
        assert neuron.v_threshold.grad is not None and neuron.v_threshold.grad.abs().sum() > 0


def test_qat_values_are_what_export_produces():
    model = attach_fake_quant(_model("6x6x2-3C3-P2-4", NeuronSpec(model="cuba", v_threshold=0.4), seed=3))
    net, reports = quantize_network(model)
    for i, ((syn, neuron, _, _), layer, rep) in enumerate(zip(model.blocks(), net.layers, reports)):
        w_fake, p_fake, _ = model.fake_quant(i, syn, neuron)
        lam, e = rep["scale"], rep["weight_exp"]
        nr = layer.neurons
        # the float equivalents of the exported integers ...
        w_int = np.asarray(layer.synapse.weight) * 2.0 ** e / lam
        vth = np.asarray(nr.vth) / lam
        bias = (np.asarray(nr.bias_mant) << np.asarray(nr.bias_exp)) / (64 * lam)
        decay_syn = 1 - (np.asarray(nr.du) + 1) / 4096
        decay_mem = 1 - np.asarray(nr.dv) / 4096
        # ... are the values the QAT forward pass used (up to float32 storage)
        if w_fake is not None:
            assert np.allclose(w_fake.detach().double().numpy(), w_int, rtol=1e-6, atol=0)
        assert np.allclose(p_fake.v_threshold.detach().double().numpy().reshape(-1), vth, rtol=1e-6, atol=0)
        assert np.allclose(p_fake.bias.detach().double().numpy().reshape(-1), bias, rtol=1e-6, atol=1e-9)
        assert np.allclose(p_fake.decay_syn.detach().double().numpy(), decay_syn, rtol=1e-6, atol=0)
        assert np.allclose(p_fake.decay_mem.detach().double().numpy(), decay_mem, rtol=1e-6, atol=0)


def test_fake_quantized_values_export_with_no_further_rounding():
    # a model whose floats already ARE fake-quantized values exports to the very same integers
    model = _model("6x6x2-3C3-P2-4", NeuronSpec(model="cuba", v_threshold=0.4), seed=4)
    net_a, rep_a = quantize_network(model)
    net_b, rep_b = quantize_network(_fake_copy(model))
    for la, lb, ra, rb in zip(net_a.layers, net_b.layers, rep_a, rep_b):
        assert np.array_equal(la.synapse.weight, lb.synapse.weight)
        assert la.synapse.weight_exp == lb.synapse.weight_exp
        for name in ("du", "dv", "vth", "bias_mant", "bias_exp"):
            assert np.array_equal(np.asarray(getattr(la.neurons, name)), np.asarray(getattr(lb.neurons, name)))
        assert rb["weights"]["clipped"] == 0 and rb["v_threshold"]["clipped"] == 0
        assert rb["scale"] == pytest.approx(ra["scale"], rel=1e-6)


# ------------------------------------------------------------------------- float vs integer

@pytest.mark.parametrize("neuron", [NeuronSpec(decay=0.2, v_threshold=0.5),
                                    NeuronSpec(model="cuba", decay_syn=0.3, decay_mem=0.7, v_threshold=0.8)],
                         ids=["lif", "cuba"])
def test_integer_simulation_agrees_with_float_forward(neuron):
    torch.manual_seed(5)
    model = build_network("24-16-8", neuron)
    with torch.no_grad():
        for syn, *_ in model.blocks():
            syn.weight.uniform_(0.0, 0.12)  # positive weights: excitatory, full 8-bit mantissas
        for nl in model.neuron_layers():
            nl.bias.uniform_(-0.05, 0.05)
    x = _input(model, T=30, B=4, p=0.3, seed=6)
    _, rec = model(x, record=True)
    net, _ = quantize_network(model)
    assert all(np.asarray(layer.synapse.weight).min() >= 0 for layer in net.layers)
    res = simulate(net, x.numpy().transpose(1, 0, 2).astype(np.int8), timing="ideal", record=True)
    for li, r in enumerate(rec):
        fl = r.detach().numpy().transpose(1, 0, 2).astype(np.int8)  # (B, T, N)
        agree = float(np.mean(fl == res.spikes[li]))
        assert 0.05 < fl.mean() < 0.95  # informative: neither silent nor saturated
        assert agree >= 0.95, f"layer {li}: {agree:.3f} agreement"
