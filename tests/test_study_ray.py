"""``spikeport study quant --ray``: points as Ray tasks in a local Ray runtime, resumed after a kill,
equal to the serial sweep; and the one-line errors (ray missing, address unreachable or malformed)."""
import json
import sys

import pytest

from spikeport.cli import main as cli_main
from spikeport.study import POINTS_FILE, Grid, read_points, run_quant_study

GRID_ARGS = ["--weight-bits", "8", "--qat-weight-bits", "8", "--mode", "ptq,qat", "--decay-bits", "12",
             "--vth-bits", "17", "--exponent", "per-layer", "--rounding", "nearest", "--T", "8",
             "--samples", "60", "--qat-epochs", "1", "--no-progress"]
COMPARED = ("accuracy", "output_agreement", "output_agreement_fake_quant", "clipped_total", "layers", "point")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from spikeport.train.config import make_config
    from spikeport.train.trainer import train

    cfg = make_config("digits-mlp", overrides={"network": "64-32-10", "optim.epochs": 2,
                                               "data.train_samples": 300, "data.T": 8})
    run = tmp_path_factory.mktemp("run") / "digits"
    train(cfg, run, progress=False, log=lambda s: None)
    return run


def _same(a: dict, b: dict) -> None:
    for k in COMPARED:
        assert a[k] == b[k], (a["id"], k)


def test_ray_sweep_equals_serial_and_resumes(tiny_run, tmp_path, capsys):
    serial = run_quant_study(tiny_run, Grid(weight_bits=(8,), qat_weight_bits=(8,), modes=("ptq", "qat"),
                                            decay_bits=(12,), vth_bits=(17,), exponent=("per-layer",),
                                            rounding=("nearest",), T=(8,)),
                             tmp_path / "serial", samples=60, qat_epochs=1, progress=False, log=lambda s: None)
    ref = {r["id"]: r for r in serial.rows}
    assert len(ref) == 2 and not serial.errors

    out = tmp_path / "ray"
    cmd = ["study", "quant", str(tiny_run), "--out", str(out), *GRID_ARGS, "--ray", "local", "--workers", "2"]
    assert cli_main(cmd) == 0
    assert "2 points (2 evaluated, 0 reused)" in capsys.readouterr().out
    manifest = json.loads((out / "study.json").read_text())
    assert manifest["ray"] == "local" and manifest["workers"] == 2  # the local runtime's CPUs
    assert "on Ray (`--ray local`)" in (out / "report.md").read_text()
    done = read_points(out / POINTS_FILE)
    assert sorted(done) == sorted(ref)
    for i, rec in done.items():
        _same(rec, ref[i])
    # the QAT point trained in a Ray worker, into this study's qat/ folder (absolute path)
    qat_id = next(i for i in done if i.startswith("qat-"))
    assert (out / "qat" / qat_id / "checkpoint.pt").exists()

    # a sweep killed after its first point: the file holds one line. Mark that record so that a
    # re-evaluation would show, then resume through Ray: only the other point is evaluated.
    lines = (out / POINTS_FILE).read_text().splitlines()
    kept = json.loads(lines[0])
    kept["seconds"] = 12345.0
    (out / POINTS_FILE).write_text(json.dumps(kept, sort_keys=True) + "\n")
    assert cli_main(cmd + ["--resume"]) == 0
    assert "2 points (1 evaluated, 1 reused)" in capsys.readouterr().out
    rows = {r["id"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows[kept["id"]]["seconds"] == 12345.0  # read back, not recomputed
    assert rows[kept["id"]] == kept
    for i, rec in rows.items():
        _same(rec, ref[i])
    assert len((out / POINTS_FILE).read_text().splitlines()) == 2

    # nothing left: no Ray task at all, the file is untouched
    before = (out / POINTS_FILE).read_bytes()
    assert cli_main(cmd + ["--resume"]) == 0
    assert "2 points (0 evaluated, 2 reused)" in capsys.readouterr().out
    assert (out / POINTS_FILE).read_bytes() == before


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_ray_missing_unreachable_or_malformed_is_one_line(tiny_run, tmp_path, capsys, monkeypatch):
    import ray

    assert not ray.is_initialized()
    cmd = ["study", "quant", str(tiny_run), *GRID_ARGS]
    # a closed local port: refused at once, before anything is written
    assert cli_main(cmd + ["--out", str(tmp_path / "a"), "--ray", "127.0.0.1:1"]) == 2
    assert "cannot reach the Ray cluster at '127.0.0.1:1'" in _one_line_error(capsys)
    assert not (tmp_path / "a" / POINTS_FILE).exists() and not ray.is_initialized()
    for bad in ("nohost", "host:port", "host:70000", "ray://"):
        assert cli_main(cmd + ["--out", str(tmp_path / "b"), "--ray", bad]) == 2
        assert f"--ray must be local, auto, HOST:PORT or ray://HOST:PORT, got {bad!r}" in _one_line_error(capsys)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert cli_main(cmd + ["--out", str(tmp_path / "c"), "--ray", "local"]) == 2
    assert "--ray needs the ray package, which is not installed (pip install ray)" in _one_line_error(capsys)
