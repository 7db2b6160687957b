"""Checkpoints are read as data (never as code) and checked; run directories are never clobbered."""
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch

import spikeport.train.trainer as trainer
from spikeport.cli import main as cli_main
from spikeport.train.config import make_config

TINY = {"data.train_samples": 64, "data.test_samples": 32, "data.T": 4, "optim.epochs": 1,
        "optim.batch_size": 32, "network": "64-20-10"}


def tiny_config(**extra):
    return make_config("digits-mlp", overrides={**TINY, **extra})


def quiet_train(cfg, out, **kw):
    return trainer.train(cfg, out, progress=False, log=lambda *_: None, **kw)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    quiet_train(tiny_config(), out)
    return out


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


class _RunsCode:
    """Unpickling this calls ``os.system`` (the classic malicious-pickle payload)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plant_malicious_checkpoint(run: Path, marker: Path) -> None:
    state = torch.load(run / trainer.CHECKPOINT, weights_only=True)
    state["history"] = [_RunsCode(marker)]
    torch.save(state, run / trainer.CHECKPOINT)


# ----------------------------------------------------------------- malicious and corrupt checkpoints


@pytest.mark.parametrize("command", [
    ["evaluate", "{run}", "--no-progress"],
    ["simulate", "{run}", "--dataset", "digits", "--samples", "4", "--no-progress"],
    ["export", "{run}", "--format", "npz", "--out", "{tmp}/net.npz"],
    ["train", "--out", "{run}", "--resume", "--no-progress"],
])
def test_malicious_checkpoint_is_refused_and_runs_nothing(run_dir, tmp_path, capsys, command):
    run = tmp_path / "run"
    run.mkdir()
    for name in trainer.RUN_FILES:
        (run / name).write_bytes((run_dir / name).read_bytes())
    marker = tmp_path / "marker"
    plant_malicious_checkpoint(run, marker)
    argv = [a.format(run=run, tmp=tmp_path) for a in command]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert not marker.exists()
    assert str(run / trainer.CHECKPOINT) in err and "system" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_weights_only_checkpoint_round_trip(run_dir):
    state = trainer.read_checkpoint(run_dir / trainer.CHECKPOINT)
    assert (state["epoch"], state["step"]) == (1, 0) and len(state["history"]) == 1
    assert state["config"] == tiny_config().to_dict()


def _tampered(run_dir, tmp_path, change):
    run = tmp_path / "tampered"
    run.mkdir()
    state = torch.load(run_dir / trainer.CHECKPOINT, weights_only=True)
    change(state)
    torch.save(state, run / trainer.CHECKPOINT)
    return run


@pytest.mark.parametrize("change,match", [
    (lambda s: s["model"]["layers.0.weight"].view(-1).__setitem__(3, float("nan")), "NaN or infinite"),
    (lambda s: s["model"]["layers.0.weight"].view(-1).__setitem__(0, float("inf")), "NaN or infinite"),
    (lambda s: s["model"].__setitem__("layers.0.weight", torch.zeros(3, 3)), "does not fit"),
    (lambda s: s["model"].pop("layers.0.weight"), "does not fit"),
    (lambda s: s.__setitem__("epoch", 7), "outside the saved run"),
    (lambda s: s.__setitem__("epoch", "1"), "'epoch' must be a int"),
    (lambda s: s.__setitem__("step", -1), "outside the saved run"),
    (lambda s: s.__setitem__("history", []), "one record per finished epoch"),
    (lambda s: s.pop("optimizer"), "'optimizer'"),
    (lambda s: s["config"]["optim"].__setitem__("lr", float("nan")), "'optim.lr'"),
    (lambda s: s["config"].__setitem__("colour", "red"), "colour"),
])
def test_tampered_checkpoint_is_refused(run_dir, tmp_path, change, match):
    run = _tampered(run_dir, tmp_path, change)
    with pytest.raises(ValueError, match=match) as err:
        trainer.load_run(run)
    assert "\n" not in str(err.value) and str(run / trainer.CHECKPOINT) in str(err.value)


def test_checkpoint_that_is_not_a_torch_zip_is_refused(tmp_path):
    path = tmp_path / trainer.CHECKPOINT
    for content in (b"", b"not a checkpoint", b"PK\x03\x04" + bytes(40)):
        path.write_bytes(content)
        with pytest.raises(ValueError, match="not a spikeport checkpoint") as err:
            trainer.read_checkpoint(path)
        assert "\n" not in str(err.value)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00." * 100)
    with pytest.raises(ValueError, match="compressed"):
        trainer.read_checkpoint(path)


def test_checkpoint_declaring_more_than_the_budget_is_refused(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "MAX_CHECKPOINT_BYTES", 1000)
    with pytest.raises(ValueError, match="MAX_CHECKPOINT_BYTES"):
        trainer.read_checkpoint(run_dir / trainer.CHECKPOINT)


# ----------------------------------------------------------------- run directories


def test_unrelated_directory_is_left_untouched(tmp_path, capsys):
    out = tmp_path / "project"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"name": "someone else's"}))
    (out / "metrics.json").write_text("{}")
    (out / "notes.txt").write_text("keep me")
    before = snapshot(out)
    assert cli_main(["train", "--set", "data.T=4", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert snapshot(out) == before
    with pytest.raises(ValueError, match="not a spikeport run configuration"):
        quiet_train(tiny_config(), out, resume=True)
    assert snapshot(out) == before


def test_directory_with_other_files_only_is_refused_unless_resumed(tmp_path):
    out = tmp_path / "study-point"
    out.mkdir()
    (out / "train.log").write_text("")
    with pytest.raises(ValueError, match="not a spikeport run"):
        quiet_train(tiny_config(), out)
    quiet_train(tiny_config(), out, resume=True)  # a study's QAT folder: its own files stay
    assert (out / "train.log").exists() and (out / trainer.CHECKPOINT).exists()


def test_run_of_another_configuration_needs_resume_or_overwrite(run_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in trainer.RUN_FILES:
        (out / name).write_bytes((run_dir / name).read_bytes())
    (out / "notes.txt").write_text("keep me")
    before = snapshot(out)
    other = tiny_config(**{"optim.lr": 0.01})
    with pytest.raises(ValueError, match="optim.lr: saved 0.002, now 0.01"):
        quiet_train(other, out)
    with pytest.raises(ValueError, match="cannot resume"):
        quiet_train(other, out, resume=True)
    assert snapshot(out) == before
    quiet_train(other, out, overwrite=True)
    assert json.loads((out / trainer.CONFIG).read_text())["optim"]["lr"] == 0.01
    assert trainer.read_checkpoint(out / trainer.CHECKPOINT)["config"]["optim"]["lr"] == 0.01
    assert (out / "notes.txt").read_text() == "keep me"


def test_same_configuration_may_run_again(run_dir, tmp_path):
    out = tmp_path / "run"
    quiet_train(tiny_config(), out)
    quiet_train(tiny_config(), out)
    a = trainer.read_checkpoint(run_dir / trainer.CHECKPOINT)["model"]
    b = trainer.read_checkpoint(out / trainer.CHECKPOINT)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="optim.epochs: saved 1, now 2"):
        quiet_train(tiny_config(**{"optim.epochs": 2}), out)


def test_config_json_is_written_with_the_first_checkpoint(run_dir, tmp_path, monkeypatch):
    # A new run killed before its first checkpoint leaves nothing behind.
    fresh = tmp_path / "fresh"

    def killed(*args, **kw):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(trainer, "evaluate_model", killed)  # runs after the epoch, before the checkpoint
    with pytest.raises(KeyboardInterrupt):
        quiet_train(tiny_config(), fresh)
    assert not fresh.exists() or not any(fresh.iterdir())
    # Overwriting another run and killed while writing its first checkpoint: the new config.json is
    # never left beside the old checkpoint.
    monkeypatch.undo()
    out = tmp_path / "old"
    out.mkdir()
    for name in trainer.RUN_FILES:
        (out / name).write_bytes((run_dir / name).read_bytes())
    real_write = trainer._atomic_write_bytes

    def die_on_checkpoint(path, fn):
        if path.name == trainer.CHECKPOINT:
            raise KeyboardInterrupt("killed")
        real_write(path, fn)

    monkeypatch.setattr(trainer, "_atomic_write_bytes", die_on_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        quiet_train(tiny_config(**{"optim.lr": 0.01}), out, overwrite=True)
    assert not (out / trainer.CHECKPOINT).exists() and not (out / trainer.METRICS).exists()
    assert json.loads((out / trainer.CONFIG).read_text())["optim"]["lr"] == 0.01


def test_cli_resume_reads_the_checkpoint_when_config_json_is_missing(run_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / trainer.CHECKPOINT).write_bytes((run_dir / trainer.CHECKPOINT).read_bytes())
    assert cli_main(["train", "--out", str(out), "--resume", "--set", "optim.epochs=2", "--no-progress"]) == 0
    assert trainer.read_checkpoint(out / trainer.CHECKPOINT)["epoch"] == 2


def test_zero_steps_and_empty_splits_are_refused(tmp_path):
    with pytest.raises(ValueError, match="nothing to train"):
        quiet_train(tiny_config(**{"optim.epochs": 0}), tmp_path / "a")
    with pytest.raises(ValueError, match="smaller than one batch"):
        quiet_train(tiny_config(**{"data.train_samples": 8}), tmp_path / "b")
    with pytest.raises(ValueError, match="'data.train_samples'"):
        tiny_config(**{"data.train_samples": 0})
    import pickle

    import numpy as np

    cifar = tmp_path / "cifar"
    cifar.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (cifar / name).write_bytes(pickle.dumps({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}))
    cfg = make_config(overrides={"data.dataset": "cifar10", "data.data_dir": str(cifar), "network": "32x32x3-10",
                                 "data.T": 2, "optim.epochs": 1})
    with pytest.raises(ValueError, match="training split is empty"):
        quiet_train(cfg, tmp_path / "c")
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
