"""Tests for the reduced-precision quantization options (export.quantize) and `spikeport study quant`."""
import argparse
import csv
import json
import math

import numpy as np
import pytest
import torch

from spikeport.export.quantize import (QuantSpec, attach_fake_quant, block_weight, decay_registers, layer_scale,
                             neuron_floats, quantize_block, quantize_network, spec_dict)
from spikeport.sim import formats as F
from spikeport.sim.network import Conv2d, Dense
from spikeport.train.layers import Pool2d
from spikeport.train.network import NeuronSpec, build_network

torch.set_num_threads(1)


def _round(x: float) -> int:  # numpy's (and Python's) half-to-even rounding
    return int(round(x))


def _model(spec, neuron=NeuronSpec(), seed=0, bias=0.05):
    torch.manual_seed(seed)
    m = build_network(spec, neuron)
    with torch.no_grad():
        for nl in m.neuron_layers():
            nl.bias.normal_(0, bias)
    return m


# ------------------------------------------------------------------------------ option validation

def test_new_options_validate_and_default_metadata_is_unchanged():
    for kw in ({"decay_bits": 0}, {"decay_bits": 13}, {"vth_bits": 0}, {"vth_bits": 18},
               {"shared_exponent": 1}, {"decay_bits": True}):
        with pytest.raises(ValueError):
            QuantSpec(**kw)
    assert QuantSpec() == QuantSpec(8, "nearest", 1024, 12, 17, False)
    # records exported with default options carry exactly the metadata they did before
    assert spec_dict(QuantSpec()) == {"num_weight_bits": 8, "rounding": "nearest", "target_vth": 1024}
    assert spec_dict(QuantSpec(vth_bits=9))["vth_bits"] == 9
    net, _ = quantize_network(_model("5-4-3"))
    assert net.meta["quantization"] == {"num_weight_bits": 8, "rounding": "nearest", "target_vth": 1024}


# --------------------------------------------------------------------- default = documented rules

def _documented_scale(w_max, vth_max, target=1024):
    """The module docstring: lam = 254 * 2**e / max|W|, e >= 0 the smallest giving >= target steps,
    lam lowered to fit 17 bits when even e = 0 overflows."""
    lam0 = 254 / w_max
    if lam0 * vth_max > 2 ** 17 - 1:
        return (2 ** 17 - 1) / vth_max, 0
    e = 0
    while e < 7 and lam0 * 2 ** e * vth_max < target:
        e += 1
    return lam0 * 2 ** e, e


@pytest.mark.parametrize("arch,neuron", [("12-9-4", NeuronSpec(v_threshold=0.4)),
                                         ("6x6x2-3C3-P2-4", NeuronSpec(model="cuba", decay_syn=0.37,
                                                                       decay_mem=0.81, v_threshold=0.7))])
def test_default_spec_is_bit_identical_to_the_documented_rules(arch, neuron):
    model = _model(arch, neuron, seed=7, bias=0.2)
    net, reports = quantize_network(model)
    for layer, (syn, nrn, in_shape, _), rep in zip(net.layers, model.blocks(), reports):
        w = block_weight(syn, in_shape)
        nf = neuron_floats(nrn)
        lam, e = _documented_scale(float(np.abs(w).max()), float(nf["v_threshold"].max()))
        assert rep["scale"] == pytest.approx(lam, rel=1e-12) and rep["weight_exp"] == e
        lam = rep["scale"]
        # weights: nearest even mantissa (mixed signs) or nearest integer (one sign), within 8 bits
        mixed = w.min() < 0 < w.max()
        step = 2 if mixed else 1
        expect = np.array([step * _round(v * lam / 2 ** e / step) for v in w.ravel().tolist()]).reshape(w.shape)
        assert np.array_equal(np.asarray(layer.synapse.weight), expect)
        if isinstance(layer.synapse, Dense):
            assert layer.synapse.num_weight_bits == 8
        nr = layer.neurons
        vth = np.ravel(nf["v_threshold"]).tolist()
        assert np.asarray(nr.vth).reshape(-1).tolist() == [_round(lam * v) for v in vth]
        bias = (np.asarray(nr.bias_mant) << np.asarray(nr.bias_exp)).reshape(-1)
        for got, b in zip(bias.tolist(), np.ravel(nf["bias"]).tolist()):
            target = _round(64 * lam * b)
            exp = next(k for k in range(8) if -4096 <= _round(target / 2 ** k) <= 4095)
            assert got == _round(target / 2 ** exp) * 2 ** exp
        ds = float(nf["decay_syn"])
        assert np.asarray(nr.du).tolist() == [min(max(_round((1 - ds) * 4096) - 1, 0), 4095)]
        assert np.asarray(nr.dv).tolist() == [min(_round((1 - float(nf["decay_mem"])) * 4096), 4095)]


def test_decay_registers_at_12_bits_are_the_formats_conversions():
    d = np.linspace(0, 1, 1001)
    du, dv = decay_registers(d, d, 12)
    assert np.array_equal(du, F.decay_to_du(d)) and np.array_equal(dv, F.decay_to_dv(d))


# ----------------------------------------------------------------------------- new options

@pytest.mark.parametrize("bits", [10, 8, 6, 4, 1])
def test_decay_bits_put_the_decrements_on_a_coarser_grid(bits):
    q, n = 2 ** (12 - bits), 2 ** bits
    d = np.array([0.0, 0.2, 0.37, 0.5, 0.81, 0.999, 1.0])
    du, dv = decay_registers(d, d, bits)
    for x, u, v in zip(d.tolist(), du.tolist(), dv.tolist()):
        ku = min(max(_round((1 - x) * n), 1), n)     # du + 1 = ku * q, du in [q - 1, 4095]
        kv = min(max(_round((1 - x) * n), 0), n - 1)  # dv = kv * q, dv in [0, 4096 - q]
        assert (u, v) == (ku * q - 1, kv * q)
        assert 0 <= u <= 4095 and 0 <= v <= 4095 and (u + 1) % q == 0 and v % q == 0
    assert du[0] == 4095  # decay 0 (STBP's LIF: no synaptic current) stays exact
    # worked example: decay_mem 0.81 with 8 bits -> dv = round(0.19 * 256) * 16 = 49 * 16
    if bits == 8:
        assert dv[4] == 784 and du[2] == 161 * 16 - 1
    # through quantize_block: registers and the fake (QAT) decays
    nf = {"decay_syn": np.array(0.37), "decay_mem": np.array(0.81), "v_threshold": np.array(0.5),
          "bias": np.zeros(3)}
    qb = quantize_block(np.full((3, 2), 0.1), nf, QuantSpec(decay_bits=bits))
    assert int(np.asarray(qb.neurons.du)[0]) == du[2] and int(np.asarray(qb.neurons.dv)[0]) == dv[4]
    assert float(qb.fake["decay_mem"]) == 1 - dv[4] / 4096 and float(qb.fake["decay_syn"]) == 1 - (du[2] + 1) / 4096


def test_vth_bits_limit_the_threshold_and_the_scale():
    # 10 bits: target min(1024, 2**9) = 512; lam0 = 508, lam0 * 0.5 = 254 -> e = 2, lam = 2032
    assert layer_scale(0.5, 0.5, QuantSpec()) == (4064.0, 3)
    assert layer_scale(0.5, 0.5, QuantSpec(vth_bits=10)) == (2032.0, 2)
    # 6 bits: 254 > 63 even at e = 0 -> lam = 63 / 0.5, weights then use fewer bits
    assert layer_scale(0.5, 0.5, QuantSpec(vth_bits=6)) == (126.0, 0)
    # a rounded threshold just past 2**bits - 1 lowers lam to fit (e kept)
    lam, e = layer_scale(254 / 255.925, 1.0, QuantSpec(vth_bits=10))
    assert (lam, e) == (1023.0, 2)
    rng = np.random.default_rng(0)
    w = rng.uniform(-0.5, 0.5, (5, 4))
    w[0, 0] = 0.5
    nf = {"decay_syn": np.zeros(()), "decay_mem": np.array(0.2), "v_threshold": np.array([0.5, 0.3, 0.1, 0.45, 0.5]),
          "bias": np.zeros(5)}
    for bits in (17, 12, 10, 8, 6, 3):
        q = quantize_block(w, nf, QuantSpec(vth_bits=bits))
        vth = np.asarray(q.neurons.vth)
        assert vth.max() <= 2 ** bits - 1 and q.report["v_threshold"]["clipped"] == 0
        assert vth.tolist() == [_round(q.scale * t) for t in nf["v_threshold"].tolist()]
    q6 = quantize_block(w, nf, QuantSpec(vth_bits=6))
    assert np.asarray(q6.neurons.vth).max() == 63 and np.abs(q6.weight).max() == 2 * _round(63 / 2)


def test_shared_exponent_uses_one_scale_for_all_layers():
    model = _model("10-8-3", NeuronSpec(v_threshold=0.5), seed=2)
    with torch.no_grad():
        model.blocks()[1][0].weight.mul_(0.25)  # the second layer's weights are smaller
    blocks = model.blocks()
    ws = [block_weight(s, shp) for s, _, shp, _ in blocks]
    net_l, rep_l = quantize_network(model)
    net_s, rep_s = quantize_network(model, QuantSpec(shared_exponent=True))
    lam, e = layer_scale(max(float(np.abs(w).max()) for w in ws), 0.5, QuantSpec())
    assert [r["scale"] for r in rep_s] == [lam, lam] and [r["weight_exp"] for r in rep_s] == [e, e]
    for layer, w in zip(net_s.layers, ws):
        m, _ = F.quantize_weights(w * lam, e)
        assert np.array_equal(np.asarray(layer.synapse.weight), m)
        assert np.asarray(layer.neurons.vth).tolist() == [_round(lam * 0.5)]
    # per layer: each layer's largest weight gets 254; shared: the smaller layer uses fewer bits
    assert [int(np.abs(la.synapse.weight).max()) for la in net_l.layers] == [254, 254]
    assert int(np.abs(net_s.layers[1].synapse.weight).max()) < 128
    assert rep_l[0]["scale"] == lam  # the layer with the largest weights is unchanged


def test_floor_rounding_of_weights():
    w = np.array([[0.9, -0.33, 0.51], [-1.0, 0.2, 0.0]])
    nf = {"decay_syn": np.zeros(()), "decay_mem": np.array(0.2), "v_threshold": np.array(0.5), "bias": np.zeros(2)}
    q = quantize_block(w, nf, QuantSpec(rounding="floor"))
    lam, e = q.scale, q.weight_exp
    assert q.weight.ravel().tolist() == [2 * math.floor(v * lam / 2 ** e / 2) for v in w.ravel().tolist()]


@pytest.mark.parametrize("nb", [8, 7, 6, 5, 4, 3, 2])
def test_weight_bits_records_give_lava_exactly_the_assumed_weights(nb):
    model = _model("6x6x2-3C3-P2-7-4", NeuronSpec(v_threshold=0.3), seed=nb)
    net, reports = quantize_network(model, QuantSpec(num_weight_bits=nb))
    for layer, (syn, _, in_shape, _), rep in zip(net.layers, model.blocks(), reports):
        m = np.asarray(layer.synapse.weight)
        w = block_weight(syn, in_shape)
        step = 2 ** (8 - nb + int(w.min() < 0 < w.max()))
        assert np.all(m % step == 0)  # the coarser grid, conv and pooling included
        if isinstance(layer.synapse, Dense):
            assert layer.synapse.num_weight_bits == nb
            assert np.array_equal(layer.synapse.effective_weight(), m)  # Lava drops only zero bits
        else:
            assert isinstance(layer.synapse, Conv2d)
            assert np.array_equal(layer.synapse.effective_weight(), m.astype(np.int64) << rep["weight_exp"])


def test_dense_weights_follow_lava_sign_mode_of_the_integers():
    # float mixed signs, but the positive weight rounds to 0: Lava sees an inhibitory matrix and
    # clips -256 to -255, then drops 8 - 4 = 4 bits: -240. The block must export that value.
    w = np.array([[-1.0, 0.001]])
    nf = {"decay_syn": np.zeros(()), "decay_mem": np.array(0.2), "v_threshold": np.array(0.5), "bias": np.zeros(1)}
    spec = QuantSpec(num_weight_bits=4)
    q = quantize_block(w, nf, spec)
    raw, _ = F.quantize_weights(w * q.scale, q.weight_exp, 4)
    assert raw.tolist() == [[-256, 0]]
    assert q.weight.tolist() == [[-240, 0]] and F.dense_effective_weights(q.weight, 4).tolist() == [[-240, 0]]
    assert q.report["weights"]["clipped"] >= 1
    assert np.array_equal(q.fake_weight, q.weight * 2.0 ** q.weight_exp / q.scale)


# ---------------------------------------------------------------------------------- QAT

NEW_SPECS = [QuantSpec(num_weight_bits=4, decay_bits=6, vth_bits=9, shared_exponent=True, rounding="floor"),
             QuantSpec(num_weight_bits=3, decay_bits=8, vth_bits=12),
             QuantSpec(num_weight_bits=2, shared_exponent=True)]


@pytest.mark.parametrize("spec", NEW_SPECS)
@pytest.mark.parametrize("arch,neuron", [("16-12-4", NeuronSpec(v_threshold=0.3)),
                                         ("6x6x2-3C3-P2-4", NeuronSpec(model="cuba", decay_syn=0.45,
                                                                       decay_mem=0.8, v_threshold=0.4))])
def test_qat_under_new_options_exports_with_no_further_rounding(spec, arch, neuron):
    model = attach_fake_quant(_model(arch, neuron, seed=3), spec)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):  # a few QAT steps move the weights off their initial values
        x = (torch.rand((6, 4, *model.input_shape), generator=g) < 0.4).float()
        loss = (model(x).mean(0) - 0.5).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net, reports = quantize_network(model, spec)
    for i, ((syn, nrn, in_shape, _), layer, rep) in enumerate(zip(model.blocks(), net.layers, reports)):
        w_fake, p, _ = model.fake_quant(i, syn, nrn)
        lam, e, nr = rep["scale"], rep["weight_exp"], layer.neurons
        w_int = np.asarray(layer.synapse.weight) * 2.0 ** e / lam
        c = 1.0
        if isinstance(syn, Pool2d):  # pooling: the tap factor moves into threshold and bias
            wf = block_weight(syn, in_shape)
            c = float(w_int[wf != 0].flat[0] / wf[wf != 0].flat[0])
        else:
            assert np.allclose(w_fake.detach().double().numpy(), w_int, rtol=1e-6, atol=0)
        vth = np.asarray(nr.vth) / lam / c
        bias = (np.asarray(nr.bias_mant) << np.asarray(nr.bias_exp)) / (64 * lam) / c
        assert np.allclose(p.v_threshold.detach().double().numpy().reshape(-1), vth, rtol=1e-6, atol=0)
        assert np.allclose(p.bias.detach().double().numpy().reshape(-1), bias, rtol=1e-6, atol=1e-9)
        dm = p.decay_mem if hasattr(p, "decay_mem") else p.decay
        assert np.allclose(dm.detach().double().numpy(), 1 - np.asarray(nr.dv) / 4096, rtol=1e-6, atol=0)
        if hasattr(p, "decay_syn"):
            assert np.allclose(p.decay_syn.detach().double().numpy(), 1 - (np.asarray(nr.du) + 1) / 4096,
                               rtol=1e-6, atol=0)
        # and the integers are within the options' limits
        assert np.asarray(nr.vth).max() <= 2 ** spec.vth_bits - 1
        q = 2 ** (12 - spec.decay_bits)
        assert np.all(np.asarray(nr.dv) % q == 0) and np.all((np.asarray(nr.du) + 1) % q == 0)
    if spec.shared_exponent:
        assert len({r["scale"] for r in reports}) == 1


def test_pool_factor_in_the_qat_forward_spikes_as_the_scaled_pool():
    # shared exponent: the pooling taps (0.25) are not on the conv layer's grid any more
    spec = QuantSpec(shared_exponent=True)
    model = _model("6x6x2-3C3-P2-4", NeuronSpec(v_threshold=0.3), seed=5)
    with torch.no_grad():
        model.blocks()[0][0].weight.mul_(3.0)
    net, reports = quantize_network(model, spec)
    tap = int(np.asarray(net.layers[1].synapse.weight)[0, 0, 0, 0])
    c = tap * 2.0 ** reports[1]["weight_exp"] / reports[1]["scale"] / 0.25
    assert abs(c - 1) > 1e-4
    attach_fake_quant(model, spec)
    syn, nrn, _, _ = model.blocks()[1]
    w, p, _ = model.fake_quant(1, syn, nrn)
    assert w is None
    assert np.allclose(p.v_threshold.detach().double().numpy(),
                       np.asarray(net.layers[1].neurons.vth) / reports[1]["scale"] / c, rtol=1e-6)


# ------------------------------------------------------------------------------------ the study

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from spikeport.train.config import make_config
    from spikeport.train.trainer import train

    cfg = make_config("digits-mlp", overrides={"network": "64-48-10", "optim.epochs": 5,
                                               "data.train_samples": 600, "data.T": 8})
    run = tmp_path_factory.mktemp("run") / "digits"
    train(cfg, run, progress=False, log=lambda s: None)
    return run


def _grid(**kw):
    from spikeport.study import Grid

    base = dict(weight_bits=(8, 4, 2), qat_weight_bits=(8,), decay_bits=(12, 6), vth_bits=(17, 8),
                exponent=("per-layer", "shared"), rounding=("nearest", "floor"), T=(8, 4), modes=("ptq", "qat"))
    base.update(kw)
    return Grid(**base)


@pytest.fixture(scope="module")
def tiny_study(tiny_run, tmp_path_factory):
    from spikeport.study import run_quant_study

    out = tmp_path_factory.mktemp("study") / "s"
    res = run_quant_study(tiny_run, _grid(), out, samples=120, workers=1, qat_epochs=1, progress=False,
                          log=lambda s: None)
    return out, res


def test_grid_points_axes_and_product():
    g = _grid().resolve(8)
    pts = g.points()
    ptq = [p for p in pts if p.mode == "ptq"]
    qat = [p for p in pts if p.mode == "qat"]
    assert len(ptq) == 3 * (1 + 5) and len(qat) == 1  # QAT: baseline of the other axes only
    assert len({p.id for p in pts}) == len(pts)
    assert qat[0].id == "qat-T8-w8-d12-v17-layer-nearest"
    assert len(_grid(design="product", modes=("ptq",)).resolve(8).points()) == 3 * 2 ** 5
    assert len(_grid(qat_axes=True).resolve(8).points()) == 18 + 6
    # defaults: PTQ 8..2, QAT 8 and 4 at the baseline, T = the run's and half
    from spikeport.study import Grid

    d = Grid().resolve(16)
    assert d.weight_bits == (8, 7, 6, 5, 4, 3, 2) and d.qat_weight_bits == (8, 4, 2) and d.T == (16, 8)
    assert len(d.points()) == 7 * (1 + 2 + 2 + 1 + 1 + 1) + 3
    with pytest.raises(ValueError):
        _grid(weight_bits=(9,)).resolve(8)
    with pytest.raises(ValueError):
        _grid(exponent=("global",)).resolve(8)


def test_study_writes_results_plots_and_report(tiny_study):
    out, res = tiny_study
    grid = _grid().resolve(8)
    assert not res.errors
    assert [r["id"] for r in res.rows] == [p.id for p in grid.points()] and len(res.evaluated) == 19
    for name in ("results.csv", "results.json", "report.md", "study.json", "points.jsonl",
                 "accuracy_vs_weight_bits.png", "rate_correlation.png", "axes.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "accuracy_vs_weight_bits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(open(out / "results.csv")))
    data = json.loads((out / "results.json").read_text())
    assert len(rows) == len(data["rows"]) == 19
    for r in data["rows"]:
        for v in r["accuracy"].values():
            assert 0.0 <= v <= 1.0
        assert 0.0 <= r["output_agreement"] <= 1.0 and r["samples"] == 120
        assert len(r["layers"]) == 2 and r["clipped_total"] >= 0
        for la in r["layers"]:
            assert 0.0 <= la["rate_float"] <= 1.0 and 0.0 <= la["rate_int"] <= 1.0
            assert 0.0 <= la["rate_fake_quant"] <= 1.0 and "rate_corr_fake_quant" in la
    by_id = {r["id"]: r for r in data["rows"]}
    base8 = by_id["ptq-T8-w8-d12-v17-layer-nearest"]
    assert abs(base8["accuracy"]["integer"] - base8["accuracy"]["float"]) <= 0.05
    assert base8["accuracy"]["float"] == base8["accuracy"]["base_float"] > 0.3
    assert base8["layers"][0]["rate_corr"] > 0.9
    qat = by_id["qat-T8-w8-d12-v17-layer-nearest"]
    assert qat["qat"]["epochs"] == 1 and (out / "qat" / qat["id"] / "checkpoint.pt").exists()
    spec = json.loads((out / "qat" / qat["id"] / "quant_spec.json").read_text())
    assert spec["num_weight_bits"] == 8 and spec["decay_bits"] == 12
    assert by_id["ptq-T4-w8-d12-v17-layer-nearest"]["samples"] == 120
    report = (out / "report.md").read_text()
    for needle in ("digits", "64-48-10", "test samples: 120", "torch", "numpy", "![accuracy_vs_weight_bits.png]",
                   "| weight bits |", "snapshot in `base/`", "seed"):
        assert needle in report, needle


def test_resume_skips_finished_points(tiny_run, tiny_study):
    from spikeport.study import POINTS_FILE, read_points, run_quant_study

    out, _ = tiny_study
    with pytest.raises(ValueError, match="--resume"):
        run_quant_study(tiny_run, _grid(), out, samples=120, qat_epochs=1, progress=False, log=lambda s: None)
    # an interrupted write leaves a torn last line: it is dropped, and appending continues cleanly
    with open(out / POINTS_FILE, "ab") as f:
        f.write(b'{"id": "ptq-T8-w6-d12-v17-layer-nearest", "accur')
    assert len(read_points(out / POINTS_FILE)) == 19
    # the same grid plus weight bits 6: only the 6 new PTQ points (one per setting) are evaluated
    res = run_quant_study(tiny_run, _grid(weight_bits=(8, 6, 4, 2)), out, samples=120, qat_epochs=1, resume=True,
                          progress=False, log=lambda s: None)
    assert len(res.evaluated) == 6 and len(res.skipped) == 19 and not res.errors
    assert all("-w6-" in i for i in res.evaluated)
    assert len(res.rows) == 25 and len(read_points(out / POINTS_FILE)) == 25
    res = run_quant_study(tiny_run, _grid(weight_bits=(8, 6, 4, 2)), out, samples=120, qat_epochs=1, resume=True,
                          progress=False, log=lambda s: None)
    assert res.evaluated == [] and len(res.rows) == 25
    with pytest.raises(ValueError, match="other settings"):
        run_quant_study(tiny_run, _grid(), out, samples=60, qat_epochs=1, resume=True, progress=False,
                        log=lambda s: None)


def test_two_workers_give_the_same_ptq_results(tiny_run, tiny_study, tmp_path):
    from spikeport.study import run_quant_study

    out, first = tiny_study
    grid = _grid(modes=("ptq",), decay_bits=(12,), vth_bits=(17, 8), exponent=("per-layer",), T=(8,))
    res = run_quant_study(tiny_run, grid, tmp_path / "w2", samples=120, workers=2, progress=False, log=lambda s: None)
    assert len(res.rows) == 9 and not res.errors
    ref = {r["id"]: r for r in first.rows}
    for r in res.rows:
        a = ref[r["id"]]
        for k in ("accuracy", "output_agreement", "output_agreement_fake_quant", "clipped_total"):
            assert r[k] == a[k], (r["id"], k)
        assert [la["rate_int"] for la in r["layers"]] == [la["rate_int"] for la in a["layers"]]
        assert [la["rate_corr"] for la in r["layers"]] == [la["rate_corr"] for la in a["layers"]]


def test_cli_parser():
    from spikeport.study import Grid, add_study_parser

    p = argparse.ArgumentParser()
    add_study_parser(p.add_subparsers(dest="command"))
    a = p.parse_args(["study", "quant", "digits-mlp", "--out", "x", "--weight-bits", "8,6,4,2", "--decay-bits",
                      "12,8", "--vth-bits", "17,10", "--exponent", "per-layer,shared", "--rounding", "nearest,floor",
                      "--mode", "ptq,qat", "--T", "16,8", "--samples", "50", "--workers", "2", "--resume"])
    assert a.weight_bits == (8, 6, 4, 2) and a.T == (16, 8) and a.mode == ("ptq", "qat") and a.resume
    assert a.workers == 2 and a.samples == 50 and callable(a.func)
    g = Grid(weight_bits=a.weight_bits, T=a.T, modes=a.mode).resolve(16)
    assert g.qat_weight_bits == (8, 6, 4, 2)  # given weight bits apply to QAT too
    with pytest.raises(SystemExit):
        p.parse_args(["study", "quant", "x", "--out", "y", "--weight-bits", "8,a"])
