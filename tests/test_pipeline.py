"""Pipeline and command line: export/simulate/deploy agree, validation bars on the digits model."""
import json

import numpy as np
import pytest

from spikeport.cli import main as cli
from spikeport.pipeline import load_network, validate
from spikeport.train.config import make_config
from spikeport.train.trainer import train

SMALL = {"data.train_samples": 256, "data.test_samples": 60, "data.T": 8, "optim.epochs": 2,
         "network": "64-40-10"}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(make_config("digits-mlp", overrides=SMALL), out, progress=False, log=lambda *_: None)
    return out


def test_export_simulate_deploy_agree_through_nir_npz_and_run_dir(small_run, tmp_path, capsys):
    x = (np.random.default_rng(0).random((3, 8, 1, 8, 8)) < 0.3).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    assert cli(["export", str(small_run), "--out", str(tmp_path / "n.nir")]) == 0
    assert cli(["export", str(small_run), "--format", "npz", "--out", str(tmp_path / "n.npz")]) == 0
    outs = {}
    for name, args in {"run": ["simulate", str(small_run)], "nir": ["simulate", str(tmp_path / "n.nir")],
                       "npz": ["simulate", str(tmp_path / "n.npz")],
                       "lava": ["deploy", str(tmp_path / "n.nir"), "--target", "lava"]}.items():
        y = tmp_path / f"{name}.npy"
        assert cli([*args, "--input", str(tmp_path / "x.npy"), "--output", str(y), "--no-progress"]) == 0
        outs[name] = np.load(y)
        said = capsys.readouterr().out  # the summary line: who ran, shape, spike count
        who = "Lava fixed_pt" if name == "lava" else "simulator (numpy, hardware timing)"
        assert f"{who}: output spikes (3, 8, 10) (samples, T, outputs) in " in said, said
        assert f": {int(outs[name].sum())} spikes, " in said, said
    assert outs["run"].shape == (3, 8, 10) and outs["run"].dtype == np.int8
    for name in ("nir", "npz", "lava"):
        assert np.array_equal(outs["run"], outs[name]), name


def test_simulate_on_a_dataset_reports_accuracy(small_run, capsys):
    assert cli(["simulate", str(small_run), "--dataset", "digits", "--samples", "40", "--timing", "ideal",
                "--no-progress"]) == 0
    out = capsys.readouterr().out
    acc = float(out.split("accuracy:")[1].split("%")[0])
    assert 0.0 <= acc <= 100.0 and "40 samples" in out


def test_record_writes_every_layer(small_run, tmp_path):
    x = (np.random.default_rng(1).random((2, 8, 64)) < 0.3).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    assert cli(["simulate", str(small_run), "--input", str(tmp_path / "x.npy"), "--record", str(tmp_path / "rec"),
                "--no-progress"]) == 0
    layer0 = np.load(tmp_path / "rec" / "layer0.npz")
    assert layer0["spikes"].shape == (2, 8, 40) and layer0["u"].shape == (2, 8, 40)


def test_bad_inputs_are_reported_not_crashed(small_run, tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.ones((2, 8, 63), dtype=np.int8))
    assert cli(["simulate", str(small_run), "--input", str(tmp_path / "bad.npy")]) == 2
    assert "(samples, T, 64)" in capsys.readouterr().err
    np.save(tmp_path / "graded.npy", np.full((2, 8, 64), 3, dtype=np.int8))  # graded payloads run
    assert cli(["simulate", str(small_run), "--input", str(tmp_path / "graded.npy"), "--no-progress"]) == 0
    capsys.readouterr()
    np.save(tmp_path / "fraction.npy", np.full((2, 8, 64), 0.5))
    assert cli(["simulate", str(small_run), "--input", str(tmp_path / "fraction.npy")]) == 2
    assert "must be integers, got 0.5" in capsys.readouterr().err
    assert cli(["simulate", str(tmp_path / "nothing.nir"), "--input", str(tmp_path / "bad.npy")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("qat,bound", [(False, 0.01), (True, 0.003)])
def test_digits_validation_bars(tmp_path, qat, bound):
    """The issue's bars: integer accuracy within 1 point of float after PTQ, 0.3 after QAT; Lava equal."""
    cfg = make_config("digits-mlp", overrides={"quant.qat": qat})
    from spikeport.export.quantize import attach_fake_quant
    from spikeport.pipeline import quant_spec

    train(cfg, tmp_path, progress=False, log=lambda *_: None, fake_quant=lambda m: attach_fake_quant(m, quant_spec(cfg)))
    res = validate(tmp_path, lava_samples=30)
    acc = res["accuracy"]
    assert res["samples"] == 450
    assert abs(acc["float"] - acc["integer sim (ideal)"]) <= bound + 1e-9, acc
    assert res["lava_mismatches"] == 0
    assert min(res["rate_correlation"]) > 0.95
    json.dumps(res)  # the table is JSON-serialisable (written to validation.json)


def test_load_network_errors(tmp_path):
    with pytest.raises(ValueError, match="neither a training run"):
        load_network(tmp_path)
    (tmp_path / "x.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="expected a run directory"):
        load_network(tmp_path / "x.onnx")


def test_netx_export_simulates_exactly_as_netx_runs_in_lava(small_run, tmp_path):
    from spikeport.targets.netx import run_netx

    assert cli(["export", str(small_run), "--format", "netx", "--out", str(tmp_path / "n.net")]) == 0
    x = (np.random.default_rng(2).random((2, 8, 64)) < 0.3).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    assert cli(["simulate", str(tmp_path / "n.net"), "--input", str(tmp_path / "x.npy"),
                "--output", str(tmp_path / "y.npy"), "--no-progress"]) == 0
    ours = np.load(tmp_path / "y.npy")
    assert np.array_equal(ours, run_netx(tmp_path / "n.net", x).output)


def test_validate_with_the_deployment_protocol(small_run, tmp_path, capsys):
    """validate --reset-interval / --input: simulator and Lava compared under netx's stream protocol."""
    assert cli(["validate", str(small_run), "--samples", "12", "--lava-samples", "4", "--reset-interval", "9",
                "--reset-offset", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "under the deployment protocol (reset interval 9 (offset 2); 4 samples x 10 steps" in out  # T 8 + 2 layers
    assert out.rstrip().count("0 mismatches") >= 2
    res = json.loads((small_run / "validation.json").read_text())
    assert res["protocol"]["spikes"] > 0 and not any(res["protocol"]["mismatches"].values())
    np.save(tmp_path / "x.npy", (np.random.default_rng(4).random((3, 10, 64)) < 0.4).astype(np.int8))
    assert cli(["validate", str(small_run), "--samples", "6", "--lava-samples", "3", "--input",
                str(tmp_path / "x.npy"), "--no-progress"]) == 0
    assert "under the deployment protocol (spikes; 3 samples x 10 steps" in capsys.readouterr().out
