#!/usr/bin/env python
"""MNIST accuracy of the STBP 784-800-10 preset (``mnist-mlp``) next to the paper's 98.9 %.

Trains ``train.config.make_config("mnist-mlp", data_dir=..., overrides=...)`` with
``train.trainer.train(cfg, out, resume=True)``: an interrupted run continues from its checkpoint,
and running again with a larger ``--epochs`` extends it (the cosine schedule is stretched to the
new total). A run that already holds the requested epochs is just reported.

Usage::

    .venv/bin/python bench/mnist_accuracy.py                 # full preset (20 epochs)
    .venv/bin/python bench/mnist_accuracy.py --epochs 1      # one epoch on the 60k training set
    .venv/bin/python bench/mnist_accuracy.py --train-samples 6000 --epochs 2 --out bench/out/mnist-small
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAPER_ACCURACY = 0.989  # Wu et al. 2018 (STBP), 784-800-10 MLP on MNIST
PRESET = "mnist-mlp"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "datasets" / "mnist"),
                    help="folder with the MNIST IDX files (default: ../shared/datasets/mnist from the repo root)")
    ap.add_argument("--epochs", type=int, default=None, help="override optim.epochs (preset: 20)")
    ap.add_argument("--train-samples", type=int, default=None, help="use only the first N training samples")
    ap.add_argument("--test-samples", type=int, default=None, help="use only the first N test samples")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / PRESET), help="run directory (resumable)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import torch

    from spikeport.train.config import make_config
    from spikeport.train.trainer import METRICS, train

    overrides = {}
    if args.epochs is not None:
        overrides["optim.epochs"] = args.epochs
    if args.train_samples is not None:
        overrides["data.train_samples"] = args.train_samples
    if args.test_samples is not None:
        overrides["data.test_samples"] = args.test_samples
    cfg = make_config(PRESET, overrides=overrides, data_dir=args.data_dir)
    out = Path(args.out)
    print(f"# {PRESET}: {cfg.network}, T={cfg.data.T}, batch {cfg.optim.batch_size}, lr {cfg.optim.lr}, "
          f"{cfg.optim.epochs} epoch(s), train_samples={cfg.data.train_samples or 'all'}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; run dir {out}", flush=True)

    t0 = time.perf_counter()
    try:
        metrics = train(cfg, out, resume=True, progress=not args.no_progress)
    except ValueError as e:
        if "nothing to train" in str(e) and (out / METRICS).exists():
            print(f"# {out} already holds {cfg.optim.epochs} epoch(s); reporting it")
            metrics = json.loads((out / METRICS).read_text())
        else:
            print(f"error: {e}", file=sys.stderr)
            if "configuration differs" in str(e):
                print("(use another --out for a different configuration)", file=sys.stderr)
            return 2
    wall = time.perf_counter() - t0

    epochs = metrics["epochs"]
    last = epochs[-1]
    print(f"{'epoch':>5s}{'train acc':>11s}{'test acc':>10s}{'seconds':>9s}{'samples/s':>11s}")
    for e in epochs:
        sps = e.get("samples_per_s") or 0.0
        print(f"{e['epoch']:>5d}{100 * e['train_accuracy']:>10.2f}%{100 * e['test_accuracy']:>9.2f}%"
              f"{e['seconds']:>9.1f}{sps:>11.0f}")
    acc = metrics["test_accuracy"]
    print(f"test accuracy {100 * acc:.2f}% after {last['epoch']} epoch(s) on {metrics['train_samples']} training "
          f"samples ({metrics['test_samples']} test)  |  paper (STBP, 784-800-10): {100 * PAPER_ACCURACY:.1f}%  "
          f"|  gap {100 * (acc - PAPER_ACCURACY):+.2f} points")
    print(f"wall time of this invocation {wall:.1f} s (includes data loading and evaluation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
