#!/usr/bin/env python
"""Spike-sequence labels (the second seed) next to rate-coded STBP: every row of issue 13's table.

Each row is one training run (``train.trainer.train``) in its own resumable directory under
``--out``; finished runs are reported, not retrained. Results go to ``--out/results.json`` and a
markdown table ``--out/results.md`` (the table in ``README.md`` and ``bench/RESULTS.md``).

Rows (``--group``):

- ``digits``: issue 13's digits rows, 15 epochs each, as filed (``digits-mlp`` with the loss and
  neuron switched by ``--set``: STBP's neuron settings) and with the ``digits-seq`` preset; the
  presets at their own epochs.
- ``nmnist-table``: issue 13's N-MNIST rows, 4 epochs on the 1k/100 subset: ``nmnist-seq`` as
  filed (threshold 0.5, rectangular surrogate, target rate 0.5) and as it is now, ``nmnist-conv``,
  ``nmnist-mlp``.
- ``nmnist-compare``: the seed's comparison on the subset: ``nmnist-rate50`` (rate-coded STBP,
  T = 50) against ``nmnist-seq`` (T = 25) with van Rossum and with Hamming; same network, epochs.
  ``nmnist-compare-seed1``: the same three runs with ``optim.seed = 1``.

Usage::

    .venv/bin/python bench/seq_labels.py --group digits
    .venv/bin/python bench/seq_labels.py --group nmnist-table --group nmnist-compare   # long on a CPU
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NMNIST = REPO.parent / "shared" / "datasets" / "nmnist-small"

STBP_CUBA = {"neuron.model": "cuba"}  # digits-mlp's neuron settings (V_th 0.5, rectangular a = 1) on CUBA
FILED_NMNIST_SEQ = {"neuron.v_threshold": 0.5, "neuron.surrogate": "rectangular", "loss.target_rate": 0.5}

ROWS = {
    "digits": [
        ("digits-mlp, rate MSE (LIF)", "digits-mlp", {"optim.epochs": 15}),
        ("van Rossum, LIF", "digits-mlp", {"optim.epochs": 15, "loss.name": "van_rossum"}),
        ("van Rossum, CUBA with STBP's settings, target rate 1.0", "digits-mlp",
         {"optim.epochs": 15, "loss.name": "van_rossum", **STBP_CUBA}),
        ("van Rossum, CUBA with STBP's settings, target rate 0.5", "digits-mlp",
         {"optim.epochs": 15, "loss.name": "van_rossum", "loss.target_rate": 0.5, **STBP_CUBA}),
        ("Hamming, LIF, target rate 1.0", "digits-mlp", {"optim.epochs": 15, "loss.name": "hamming"}),
        ("Hamming, LIF, target rate 0.5", "digits-mlp",
         {"optim.epochs": 15, "loss.name": "hamming", "loss.target_rate": 0.5}),
        ("Hamming, CUBA with STBP's settings, target rate 1.0", "digits-mlp",
         {"optim.epochs": 15, "loss.name": "hamming", **STBP_CUBA}),
        ("Hamming, CUBA with STBP's settings, target rate 0.5", "digits-mlp",
         {"optim.epochs": 15, "loss.name": "hamming", "loss.target_rate": 0.5, **STBP_CUBA}),
        ("digits-seq (CUBA, van Rossum), 15 epochs", "digits-seq", {"optim.epochs": 15}),
        ("digits-seq, Hamming, 15 epochs", "digits-seq", {"optim.epochs": 15, "loss.name": "hamming"}),
        ("digits-seq, van Rossum, target rate 0.5, 15 epochs", "digits-seq",
         {"optim.epochs": 15, "loss.target_rate": 0.5}),
        ("digits-seq (preset: 40 epochs), van Rossum", "digits-seq", {}),
        ("digits-seq (preset: 40 epochs), Hamming", "digits-seq", {"loss.name": "hamming"}),
    ],
    "nmnist-table": [
        ("nmnist-seq as filed (V_th 0.5, rectangular, target rate 0.5), 4 epochs", "nmnist-seq",
         {"optim.epochs": 4, **FILED_NMNIST_SEQ}),
        ("nmnist-seq (CUBA, van Rossum, T = 25), 4 epochs", "nmnist-seq", {"optim.epochs": 4}),
        ("nmnist-seq, Hamming, 4 epochs", "nmnist-seq", {"optim.epochs": 4, "loss.name": "hamming"}),
        ("nmnist-conv (rate STBP, T = 30), 4 epochs", "nmnist-conv", {"optim.epochs": 4}),
        ("nmnist-mlp (rate STBP, T = 30), 4 epochs", "nmnist-mlp", {"optim.epochs": 4}),
    ],
    "nmnist-compare": [
        ("nmnist-rate50 (LIF, rate MSE, T = 50)", "nmnist-rate50", {}),
        ("nmnist-seq (CUBA, van Rossum, T = 25)", "nmnist-seq", {}),
        ("nmnist-seq (CUBA, Hamming, T = 25)", "nmnist-seq", {"loss.name": "hamming"}),
    ],
    "nmnist-compare-seed1": [
        ("nmnist-rate50 (LIF, rate MSE, T = 50), seed 1", "nmnist-rate50", {"optim.seed": 1}),
        ("nmnist-seq (CUBA, van Rossum, T = 25), seed 1", "nmnist-seq", {"optim.seed": 1}),
        ("nmnist-seq (CUBA, Hamming, T = 25), seed 1", "nmnist-seq", {"loss.name": "hamming", "optim.seed": 1}),
    ],
}


def slug(text: str) -> str:
    keep = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(p for p in keep.split("-") if p)[:80]


def run_row(name: str, preset: str, overrides: dict, out: Path, data_dir, progress: bool) -> dict:
    from spikeport.train.config import make_config
    from spikeport.train.trainer import METRICS, train

    cfg = make_config(preset, overrides=overrides or None,
                      data_dir=None if preset.startswith("digits") else data_dir)
    run = out / slug(name)
    done = run / METRICS
    t0 = time.perf_counter()
    if done.exists() and len(json.loads(done.read_text())["epochs"]) >= cfg.optim.epochs:
        metrics = json.loads(done.read_text())
    else:
        metrics = train(cfg, run, resume=run.exists(), progress=progress, log=lambda s: print(f"  {s}", flush=True))
    return {"row": name, "preset": preset, "overrides": overrides, "run": str(run),
            "dataset": cfg.data.dataset, "T": cfg.data.T, "epochs": cfg.optim.epochs,
            "train_samples": metrics["train_samples"], "test_samples": metrics["test_samples"],
            "test_accuracy": metrics["test_accuracy"],
            "train_seconds": sum(e["seconds"] for e in metrics["epochs"]),
            "wall_seconds_this_call": time.perf_counter() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", action="append", choices=list(ROWS), help="rows to run (repeatable; default digits)")
    ap.add_argument("--data-dir", default=str(NMNIST), help="N-MNIST folder (default ../shared/datasets/nmnist-small)")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "seq-labels"))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared 2-core machine more threads spin and slow down)")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for group in args.group or ["digits"]:
        for name, preset, over in ROWS[group]:
            print(f"[{group}] {name}", flush=True)
            r = run_row(name, preset, over, out, args.data_dir, args.progress)
            r["group"] = group
            results[name] = r
            print(f"  -> {100 * r['test_accuracy']:.2f}% ({r['test_samples']} test samples, "
                  f"{r['train_seconds']:.0f} s training)", flush=True)
            path.write_text(json.dumps(results, indent=2))
    lines = [f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads", "",
             "| run | data | T | epochs | test accuracy | training time |", "|---|---|---|---|---|---|"]
    for r in results.values():
        data = ("digits (1347/450)" if r["dataset"] == "digits"
                else f"N-MNIST subset ({r['train_samples']}/{r['test_samples']})")
        lines.append(f"| {r['row']} | {data} | {r['T']} | {r['epochs']} | {100 * r['test_accuracy']:.2f}% | "
                     f"{r['train_seconds']:.0f} s |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
