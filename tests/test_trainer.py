"""Trainer: exact resume, data-parallel equivalence, metrics, command line, and the digits accuracy bar."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import spikeport.train.trainer as trainer
from spikeport.cli import main as cli_main
from spikeport.train.config import make_config

ROOT = Path(__file__).resolve().parents[1]

SMALL = {"data.train_samples": 192, "data.test_samples": 64, "data.T": 6, "optim.epochs": 2,
         "optim.batch_size": 32, "optim.checkpoint_every": 2, "network": "64-40-10"}


def small_config(**extra):
    return make_config("digits-mlp", overrides={**SMALL, **extra})


def weights(run_dir):
    return trainer.read_checkpoint(Path(run_dir) / trainer.CHECKPOINT)["model"]


def test_resume_after_interruption_gives_identical_weights(tmp_path, monkeypatch):
    cfg = small_config()
    trainer.train(cfg, tmp_path / "full", progress=False, log=lambda *_: None)

    # Kill the second run right after its 4th checkpoint write (mid-epoch 2: steps_per_epoch = 6,
    # checkpoints at steps 2, 4, end of epoch 1, then step 2 of epoch 2).
    real_write, writes = trainer._atomic_write_bytes, []

    def write_then_die(path, fn):
        real_write(path, fn)
        if path.name == trainer.CHECKPOINT:
            writes.append(path)
            if len(writes) == 4:
                raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(trainer, "_atomic_write_bytes", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(cfg, tmp_path / "killed", progress=False, log=lambda *_: None)
    monkeypatch.setattr(trainer, "_atomic_write_bytes", real_write)
    state = trainer.read_checkpoint(tmp_path / "killed" / trainer.CHECKPOINT)
    assert (state["epoch"], state["step"]) == (1, 2)  # the kill really happened mid-epoch

    trainer.train(cfg, tmp_path / "killed", resume=True, progress=False, log=lambda *_: None)
    a, b = weights(tmp_path / "full"), weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_refuses_a_changed_configuration(tmp_path):
    trainer.train(small_config(**{"optim.epochs": 1}), tmp_path, progress=False, log=lambda *_: None)
    with pytest.raises(ValueError, match="optim.lr"):
        trainer.train(small_config(**{"optim.lr": 0.5}), tmp_path, resume=True, progress=False)


def test_resume_can_extend_epochs_and_metrics_are_written(tmp_path):
    trainer.train(small_config(**{"optim.epochs": 1}), tmp_path, progress=False, log=lambda *_: None)
    m = trainer.train(small_config(**{"optim.epochs": 2}), tmp_path, resume=True, progress=False,
                      log=lambda *_: None)
    saved = json.loads((tmp_path / trainer.METRICS).read_text())
    assert [e["epoch"] for e in saved["epochs"]] == [1, 2]
    assert saved["test_accuracy"] == m["test_accuracy"] == saved["epochs"][-1]["test_accuracy"]
    assert 0.0 <= saved["test_accuracy"] <= 1.0


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        trainer.train(small_config(**{"optim.epochs": 1, "optim.seed": seed}), tmp_path / name,
                      progress=False, log=lambda *_: None)
    a, b, c = (weights(tmp_path / n) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def _cli_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_torchrun_two_processes_match_single_process(tmp_path):
    args = ["-m", "spikeport", "train", "--preset", "digits-mlp", "--no-progress"]
    for k, v in SMALL.items():
        args += ["--set", f"{k}={v}"]
    single = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], env=_cli_env(),
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          *args, "--out", str(tmp_path / "two")], env=_cli_env(), capture_output=True,
                         text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    assert not torch.equal(a["layers.0.weight"], trainer.make_model(small_config(), (64,)).layers[0].weight)


def test_cli_train_then_evaluate_agree(tmp_path, capsys):
    run = tmp_path / "run"
    sets = sum((["--set", f"{k}={v}"] for k, v in SMALL.items()), [])
    assert cli_main(["train", "--preset", "digits-mlp", *sets, "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert cli_main(["evaluate", str(run), "--json", "--no-progress"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["accuracy"] == json.loads((run / trainer.METRICS).read_text())["test_accuracy"]
    assert res["samples"] == SMALL["data.test_samples"]


def test_cli_reports_bad_input_clearly(tmp_path, capsys):
    assert cli_main(["train", "--set", "optim.nope=1", "--out", str(tmp_path)]) == 2
    assert "optim.nope" in capsys.readouterr().err
    assert cli_main(["train", "--preset", "mnist-mlp", "--data-dir", str(tmp_path / "none"),
                     "--out", str(tmp_path)]) == 2
    assert "train-images-idx3-ubyte" in capsys.readouterr().err
    assert cli_main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "checkpoint.pt" in capsys.readouterr().err


def test_digits_preset_reaches_95_percent(tmp_path):
    metrics = trainer.train(make_config("digits-mlp"), tmp_path, progress=False, log=lambda *_: None)
    assert metrics["test_samples"] == 450
    assert metrics["test_accuracy"] >= 0.95
