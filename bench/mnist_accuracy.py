#!/usr/bin/env python
"""The papers' tables: accuracy of a preset's run next to the published figure, float, QAT-integer and Lava-checked.

Trains ``train.config.make_config(PRESET, data_dir=..., overrides=...)`` with
``train.trainer.train(cfg, out, resume=True)`` (QAT attached as ``spikeport train`` does): an
interrupted run continues from its checkpoint, and running again with a larger ``--epochs``
extends it (the cosine schedule is stretched to the new total). A run that already holds the
requested epochs is just reported. ``--report-only`` trains nothing: it reports the run in
``--out`` as it stands (a run still training, or stopped early: the epochs reached are printed).

``--validate`` then runs ``spikeport.pipeline.validate`` on the run (as ``spikeport validate``):
float model, fake-quantized model (the QAT forward pass), the integer network in the bit-accurate
simulator, and Lava ``fixed_pt`` on the first ``--lava-samples`` test samples; it writes
``validation.json`` into the run and prints one Markdown row for ``bench/RESULTS.md``.

Published figures (``PAPERS``): STBP, Wu et al. 2018 (Front. Neurosci. 12:331): 98.89% for
784-800-10 and 99.42% for 28x28-15C5-P2-40C5-P2-300-10 on MNIST, 98.78% for 34x34x2-800-10 on
N-MNIST. SLAYER, Shrestha & Orchard 2018 (NeurIPS): 99.20% for 34x34x2-12c5-2a-64c5-2a-10o on
N-MNIST. The N-MNIST figures are for all 60k/10k samples; the
``nmnist-small`` folder here holds 1,000/100 (``shared/datasets/README.md``).

Usage::

    .venv/bin/python bench/mnist_accuracy.py                              # mnist-mlp, 20 epochs
    .venv/bin/python bench/mnist_accuracy.py --epochs 1                   # one epoch on the 60k training set
    .venv/bin/python bench/mnist_accuracy.py --preset mnist-conv --set quant.qat=true --set init_gain=2.0 \\
        --out runs/paper-mnist-conv --validate --lava-samples 100
    .venv/bin/python bench/mnist_accuracy.py --preset mnist-mlp --out runs/paper-mnist-mlp --report-only --validate
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
# preset: (published accuracy, source, default data folder)
PAPERS = {
    "mnist-mlp": (0.9889, "STBP (Wu et al. 2018), 784-800-10", DATASETS / "mnist"),
    "mnist-conv": (0.9942, "STBP (Wu et al. 2018), 15C5-P2-40C5-P2-300", DATASETS / "mnist"),
    "nmnist-mlp": (0.9878, "STBP (Wu et al. 2018), 34x34x2-800-10, full N-MNIST", DATASETS / "nmnist-small"),
    "nmnist-conv": (0.9920, "SLAYER (Shrestha & Orchard 2018), 12c5-2a-64c5-2a-10o, full N-MNIST",
                    DATASETS / "nmnist-small"),
}


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="mnist-mlp", choices=sorted(PAPERS), help="preset (default mnist-mlp)")
    ap.add_argument("--data-dir", help="dataset folder (default: ../shared/datasets/mnist or nmnist-small)")
    ap.add_argument("--epochs", type=int, default=None, help="override optim.epochs")
    ap.add_argument("--train-samples", type=int, default=None, help="use only the first N training samples")
    ap.add_argument("--test-samples", type=int, default=None, help="use only the first N test samples")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="configuration override, e.g. quant.qat=true (repeatable)")
    ap.add_argument("--out", help="run directory (resumable; default bench/out/PRESET)")
    ap.add_argument("--report-only", action="store_true", help="train nothing: report the run in --out as it is")
    ap.add_argument("--validate", action="store_true",
                    help="float / fake-quantized / integer / Lava table of the run (spikeport validate)")
    ap.add_argument("--samples", type=int, default=None, help="test samples for --validate (default: all)")
    ap.add_argument("--lava-samples", type=int, default=200, help="samples run in Lava for --validate (default 200)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import torch

    from spikeport.train.config import Config, make_config, parse_set
    from spikeport.train.trainer import CHECKPOINT, CONFIG, METRICS, read_checkpoint, train

    paper, source, default_data = PAPERS[args.preset]
    data_dir = args.data_dir or str(default_data)
    out = Path(args.out or REPO / "bench" / "out" / args.preset)
    t0 = time.perf_counter()
    if args.report_only:
        if not (out / CONFIG).exists() or not (out / CHECKPOINT).exists():
            print(f"error: {out} is not a training run ({CONFIG} or {CHECKPOINT} missing)", file=sys.stderr)
            return 2
        cfg = Config.from_dict(json.loads((out / CONFIG).read_text()))
        state = read_checkpoint(out / CHECKPOINT)
        metrics = json.loads((out / METRICS).read_text()) if (out / METRICS).exists() else None
        print(f"# {out}: checkpoint at epoch {state['epoch']}, step {state['step']} of {cfg.optim.epochs} epochs")
    else:
        overrides = parse_set(args.set)
        if args.epochs is not None:
            overrides["optim.epochs"] = args.epochs
        if args.train_samples is not None:
            overrides["data.train_samples"] = args.train_samples
        if args.test_samples is not None:
            overrides["data.test_samples"] = args.test_samples
        cfg = make_config(args.preset, overrides=overrides, data_dir=data_dir)
        print(f"# {args.preset}: {cfg.network}, T={cfg.data.T}, batch {cfg.optim.batch_size}, lr {cfg.optim.lr}, "
              f"{cfg.optim.epochs} epoch(s), qat={cfg.quant.qat}, train_samples={cfg.data.train_samples or 'all'}; "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads; run dir {out}", flush=True)
        from spikeport.export.quantize import attach_fake_quant
        from spikeport.pipeline import quant_spec

        try:
            metrics = train(cfg, out, resume=True, progress=not args.no_progress,
                            fake_quant=lambda m: attach_fake_quant(m, quant_spec(cfg)))
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

    epochs = metrics["epochs"] if metrics else []
    if epochs:
        print(f"{'epoch':>5s}{'train acc':>11s}{'test acc':>10s}{'seconds':>9s}{'samples/s':>11s}")
        for e in epochs:
            sps = e.get("samples_per_s") or 0.0
            print(f"{e['epoch']:>5d}{100 * e['train_accuracy']:>10.2f}%{100 * e['test_accuracy']:>9.2f}%"
                  f"{e['seconds']:>9.1f}{sps:>11.0f}")
        acc = metrics["test_accuracy"]
        print(f"test accuracy {100 * acc:.2f}% after {epochs[-1]['epoch']} of {cfg.optim.epochs} epoch(s) on "
              f"{metrics['train_samples']} training samples ({metrics['test_samples']} test)  |  paper ({source}): "
              f"{100 * paper:.2f}%  |  gap {100 * (acc - paper):+.2f} points")
    else:
        print("no finished epoch yet")
    train_seconds = sum(e["seconds"] for e in epochs)
    print(f"training time of the epochs reached {train_seconds:.0f} s; wall time of this invocation {wall:.1f} s")
    if not args.validate:
        return 0

    from spikeport.pipeline import format_validation, validate, write_json

    t1 = time.perf_counter()
    res = validate(out, samples=args.samples, lava_samples=args.lava_samples, data_dir=data_dir,
                   progress=not args.no_progress)
    res["seconds"] = time.perf_counter() - t1
    write_json(out / "validation.json", res)
    print(format_validation(res))
    print(f"validation took {res['seconds']:.0f} s")
    rows = res["accuracy"]
    integer = next(v for k, v in rows.items() if k.startswith("integer sim (") and "first" not in k)
    lava_key = next((k for k in rows if k.startswith("Lava fixed_pt")), None)
    n_lava = min(args.lava_samples, res["samples"])
    lava = (f"{_pct(rows[lava_key])} ({n_lava}; {res['lava_mismatches']} spike mismatches vs sim)"
            if lava_key else res.get("lava_error", "n/a"))
    print("\n| preset | epochs | float | fake-quant (QAT) | integer sim | Lava fixed_pt (samples) | paper | train time |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| `{args.preset}` | {epochs[-1]['epoch'] if epochs else 0}/{cfg.optim.epochs} | {_pct(rows['float'])} | "
          f"{_pct(rows['fake-quantized'])} | {_pct(integer)} | {lava} | {100 * paper:.2f}% | "
          f"{train_seconds / 60:.0f} min |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
