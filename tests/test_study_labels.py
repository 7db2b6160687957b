"""``spikeport study labels``: the grid, files, plots, report, reuse of finished runs, bad input."""
import json
import os

import pytest

from spikeport.cli import main as cli_main
from spikeport.study_labels import LabelPoint, grid_points, run_labels_study
from spikeport.train.trainer import CHECKPOINT

TINY = {"network": "64-16-10", "data.train_samples": 96, "data.test_samples": 64, "optim.epochs": 1,
        "optim.batch_size": 32}


def test_grid_points_and_validation():
    pts = grid_points(["rate_mse", "hamming"], [4, 8], [0, 1])
    assert len(pts) == 8 and pts[0] == LabelPoint("rate_mse", 4, 0) and pts[-1] == LabelPoint("hamming", 8, 1)
    assert pts[0].id == "rate_mse-T4-s0"
    assert len(grid_points(["hamming", "hamming"], [4], [0])) == 1
    with pytest.raises(ValueError, match="'l1'"):
        grid_points(["l1"], [4], [0])
    with pytest.raises(ValueError, match="T must be a positive integer, got 0"):
        grid_points(["hamming"], [0], [0])
    with pytest.raises(ValueError, match="-1"):
        grid_points(["hamming"], [4], [-1])


def test_study_writes_results_plots_report_and_reuses_runs(tmp_path):
    out = tmp_path / "study"
    logs = []
    rows = run_labels_study("digits-seq", out, ["rate_mse", "van_rossum", "hamming"], [2, 4], [0],
                            overrides=TINY, log=logs.append)
    assert [r["id"] for r in rows] == [f"{c}-T{T}-s0" for c in ("rate_mse", "van_rossum", "hamming") for T in (2, 4)]
    for r in rows:
        metrics = json.loads((out / "runs" / r["id"] / "metrics.json").read_text())
        # the study's own evaluation agrees with the trainer's (same encoding, same decoder)
        assert r["accuracy"] == metrics["test_accuracy"]
        assert r["samples"] == 64 and r["output_spikes_per_sample"] >= 0
        assert (r["distance_to_target"] is None) == (r["coding"] == "rate_mse")
        cfg = json.loads((out / "runs" / r["id"] / "config.json").read_text())
        assert (cfg["loss"]["name"], cfg["data"]["T"], cfg["network"]) == (r["coding"], r["T"], "64-16-10")
    for name in ("study.json", "results.json", "results.csv", "accuracy_vs_T.png", "output_spikes_vs_T.png",
                 "report.md"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "| van Rossum |" in report and "T = 4" in report
    assert len((out / "results.csv").read_text().splitlines()) == 1 + len(rows)

    # a second call reuses every finished run (no training: checkpoints untouched)
    stamps = {r["id"]: os.stat(out / "runs" / r["id"] / CHECKPOINT).st_mtime_ns for r in rows}
    logs.clear()
    again = run_labels_study("digits-seq", out, ["rate_mse", "van_rossum", "hamming"], [2, 4], [0],
                             overrides=TINY, log=logs.append)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]
    assert sum("reused" in line for line in logs) == len(rows)
    assert stamps == {r["id"]: os.stat(out / "runs" / r["id"] / CHECKPOINT).st_mtime_ns for r in rows}


def test_cli_bad_coding_is_one_line(tmp_path, capsys):
    rc = cli_main(["study", "labels", "digits-seq", "--out", str(tmp_path / "s"), "--codings", "rate_mse,l1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "'l1'" in err[0]
    assert not (tmp_path / "s").exists()  # refused before any work
