"""``spikeport study labels``: label coding over time steps -- rate vs van Rossum vs Hamming.

A study trains one run per point of a grid ``coding x T x seed`` from one preset (the network,
neuron, data and optimiser stay the preset's; only the label coding and ``T`` change)::

    coding   rate_mse     STBP: the output firing rate against the one-hot label
             count_ce     cross-entropy on spike counts
             van_rossum   the second seed: the label as a target spike train, van Rossum distance
             hamming      the same target train, Hamming distance
    T        time steps (the input encoding and the target trains follow)
    seed     optim.seed (weights, sample order, encoding)

Per point: test accuracy (decoded as the coding's loss does), output spikes per test sample, and
for sequence codings the mean distance to the label's target train; training time.

Files in ``DIR``: ``study.json`` (what was asked, versions), ``runs/<coding>-T<T>-s<seed>/`` (normal,
resumable run directories: a finished run is reused, an interrupted one resumed), ``results.json``,
``results.csv``, ``accuracy_vs_T.png``, ``output_spikes_vs_T.png``, ``report.md``.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from spikeport.study import _list  # the comma-separated list arguments of every study
from spikeport.train.losses import LOSSES

DEFAULT_CODINGS = ("rate_mse", "van_rossum", "hamming")
CODING_LABEL = {"rate_mse": "rate (STBP MSE)", "count_ce": "spike-count CE", "van_rossum": "van Rossum",
                "hamming": "Hamming"}


@dataclass(frozen=True)
class LabelPoint:
    coding: str
    T: int
    seed: int = 0

    @property
    def id(self) -> str:
        return f"{self.coding}-T{self.T}-s{self.seed}"


def grid_points(codings, Ts, seeds) -> list:
    """Every point, in a stable order; bad values give a ``ValueError`` naming them."""
    codings, Ts, seeds = tuple(codings), tuple(Ts), tuple(seeds)
    if not codings or not Ts or not seeds:
        raise ValueError("a label study needs at least one coding, one T and one seed")
    for c in codings:
        if c not in LOSSES:
            raise ValueError(f"unknown coding {c!r}; choose from {', '.join(LOSSES)}")
    for T in Ts:
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be a positive integer, got {T!r}")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"seed must be a non-negative integer, got {s!r}")
    pts = [LabelPoint(c, T, s) for c in codings for T in Ts for s in seeds]
    return list(dict.fromkeys(pts))


def point_config(preset: str, point: LabelPoint, overrides: Optional[dict] = None, data_dir=None):
    from spikeport.train.config import make_config

    over = dict(overrides or {})
    over.update({"loss.name": point.coding, "data.T": point.T, "optim.seed": point.seed})
    return make_config(preset, overrides=over, data_dir=data_dir)


def evaluate_run(run_dir, cfg) -> dict:
    """Accuracy, output spikes per sample and (sequence codings) mean distance to the target, on
    the test split encoded as ``spikeport evaluate`` encodes it."""
    import torch

    from spikeport.train.trainer import derived_seed, encode_batch, load_run, load_test_split

    _, model = load_run(run_dir)
    model.eval()
    split = load_test_split(cfg)
    n, bs = len(split), cfg.optim.eval_batch_size
    correct, spikes, dist = 0, 0.0, 0.0
    with torch.no_grad():
        for k, start in enumerate(range(0, n, bs)):
            idx = torch.arange(start, min(start + bs, n))
            inputs, labels = split.batch(idx)
            out = model(encode_batch(cfg, inputs, derived_seed(cfg.optim.seed, 0xE7A1, k)))  # (T, B, C)
            correct += int((cfg.loss.decode(out) == labels).sum())
            spikes += float(out.sum())
            if cfg.loss.is_sequence:
                T, _, C = out.shape
                dist += float(cfg.loss.distance(out, cfg.loss.target(labels, T, C)).sum())
    return {"accuracy": correct / n, "output_spikes_per_sample": spikes / n,
            "distance_to_target": dist / n if cfg.loss.is_sequence else None, "samples": n}


def run_labels_study(preset: str, out_dir, codings=DEFAULT_CODINGS, Ts=(4, 8, 16), seeds=(0,), *,
                     overrides: Optional[dict] = None, data_dir=None, progress: bool = False,
                     command: Optional[str] = None, log=print) -> list:
    """Train and evaluate every point (reusing finished runs); write results, plots and report.
    Returns the result rows in grid order."""
    from spikeport.study import versions
    from spikeport.train.trainer import METRICS, train

    out = Path(out_dir)
    points = grid_points(codings, Ts, seeds)
    cfgs = {p: point_config(preset, p, overrides, data_dir) for p in points}  # all checked before any training
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest = {"kind": "labels", "preset": preset, "overrides": overrides or {}, "codings": list(codings),
                "T": list(Ts), "seeds": list(seeds), "command": command, "updated": now,
                "versions": versions()}
    (out / "study.json").write_text(json.dumps(manifest, indent=2))
    rows = []
    for p in points:
        cfg, run = cfgs[p], out / "runs" / p.id
        metrics_path = run / METRICS
        done = metrics_path.exists() and len(json.loads(metrics_path.read_text())["epochs"]) >= cfg.optim.epochs
        if done:
            log(f"{p.id}: finished run found, reused")
        else:
            log(f"{p.id}: training {cfg.optim.epochs} epochs into {run}")
            train(cfg, run, resume=run.exists(), progress=progress, log=lambda s: None)
        metrics = json.loads(metrics_path.read_text())
        ev = evaluate_run(run, cfg)
        rows.append({"id": p.id, "coding": p.coding, "T": p.T, "seed": p.seed, **ev,
                     "epochs": cfg.optim.epochs, "train_seconds": sum(e["seconds"] for e in metrics["epochs"]),
                     "neuron": cfg.neuron.model, "network": cfg.network, "dataset": cfg.data.dataset})
        log(f"{p.id}: accuracy {100 * ev['accuracy']:.2f}%, {ev['output_spikes_per_sample']:.1f} output spikes/sample")
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plots = make_plots(out, rows, codings, Ts)
    (out / "report.md").write_text(report_markdown(rows, manifest, cfgs[points[0]], plots))
    return rows


def _mean_by(rows, coding, T, key):
    vals = [r[key] for r in rows if r["coding"] == coding and r["T"] == T and r[key] is not None]
    return (sum(vals) / len(vals), min(vals), max(vals)) if vals else (None, None, None)


def make_plots(out: Path, rows: list, codings, Ts) -> list:
    """Accuracy and output spikes vs T, one line per coding (mean over seeds, min-max bars)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    made = []
    for key, name, ylabel, caption in (
            ("accuracy", "accuracy_vs_T.png", "test accuracy (%)", "Test accuracy vs time steps per label coding"),
            ("output_spikes_per_sample", "output_spikes_vs_T.png", "output spikes per test sample",
             "Output-layer spikes per test sample vs time steps per label coding")):
        fig = Figure(figsize=(6.4, 4.2))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        scale = 100.0 if key == "accuracy" else 1.0
        for i, c in enumerate(codings):
            stats = [_mean_by(rows, c, T, key) for T in Ts]
            xs = [T for T, s in zip(Ts, stats) if s[0] is not None]
            m = [scale * s[0] for s in stats if s[0] is not None]
            lo = [scale * (s[0] - s[1]) for s in stats if s[0] is not None]
            hi = [scale * (s[2] - s[0]) for s in stats if s[0] is not None]
            ax.errorbar(xs, m, yerr=[lo, hi], fmt="o-", color=f"C{i}", capsize=3, label=CODING_LABEL.get(c, c))
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(Ts))
        ax.set_xticklabels([str(T) for T in Ts])
        ax.set_xlabel("time steps T")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(caption, fontsize=10)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        made.append((name, caption))
    return made


def report_markdown(rows: list, manifest: dict, cfg, plots: list) -> str:
    v = manifest["versions"]
    codings, Ts = manifest["codings"], manifest["T"]
    L = ["# Label-coding study", "",
         f"- updated: {manifest['updated']}",
         f"- preset `{manifest['preset']}`" + (f" with overrides `{json.dumps(manifest['overrides'])}`"
                                               if manifest["overrides"] else ""),
         f"- network `{cfg.network}`, neuron `{cfg.neuron.model}` (surrogate {cfg.neuron.surrogate} "
         f"a = {cfg.neuron.surrogate_width}), dataset `{cfg.data.dataset}` (encoder `{cfg.data.encoder}`), "
         f"{cfg.optim.epochs} epochs; van Rossum tau {cfg.loss.tau} steps, target rate {cfg.loss.target_rate}",
         f"- seeds {manifest['seeds']}; test samples {rows[0]['samples']}",
         f"- software: Python {v['python']}, torch {v['torch']}, spikeport {v['spikeport']}, git {v['git']}; "
         f"{v['platform']}, {v['cpus']} CPUs"]
    if manifest.get("command"):
        L.append(f"- command: `{manifest['command']}`")
    L += ["", "## Test accuracy (%), mean over seeds", "",
          "| coding | " + " | ".join(f"T = {T}" for T in Ts) + " |", "|---|" + "---|" * len(Ts)]
    for c in codings:
        cells = [_mean_by(rows, c, T, "accuracy")[0] for T in Ts]
        L.append(f"| {CODING_LABEL.get(c, c)} | " + " | ".join("" if x is None else f"{100 * x:.2f}" for x in cells) + " |")
    L += ["", "## Output spikes per test sample, mean over seeds", "",
          "| coding | " + " | ".join(f"T = {T}" for T in Ts) + " |", "|---|" + "---|" * len(Ts)]
    for c in codings:
        cells = [_mean_by(rows, c, T, "output_spikes_per_sample")[0] for T in Ts]
        L.append(f"| {CODING_LABEL.get(c, c)} | " + " | ".join("" if x is None else f"{x:.1f}" for x in cells) + " |")
    for name, caption in plots:
        L += ["", f"![{name}]({name})", "", f"*{caption}*"]
    L += ["", "## All points", "", "| id | accuracy | output spikes | distance to target | training s |",
          "|---|---|---|---|---|"]
    for r in rows:
        d = "" if r["distance_to_target"] is None else f"{r['distance_to_target']:.4f}"
        L.append(f"| `{r['id']}` | {100 * r['accuracy']:.2f} | {r['output_spikes_per_sample']:.1f} | {d} | "
                 f"{r['train_seconds']:.1f} |")
    return "\n".join(L) + "\n"


def _cmd_study_labels(args) -> int:
    from spikeport.train.config import parse_set

    overrides = parse_set(args.set) or {}
    if args.epochs is not None:
        overrides["optim.epochs"] = args.epochs
    rows = run_labels_study(args.preset, args.out, args.codings, args.T, args.seeds, overrides=overrides or None,
                            data_dir=args.data_dir, progress=not args.no_progress,
                            command="spikeport " + " ".join(sys.argv[1:]) if sys.argv[1:] else None,
                            log=lambda s: print(s, file=sys.stderr))
    print(f"{len(rows)} points -> {Path(args.out) / 'report.md'}")
    return 0


def add_labels_parser(sub) -> None:
    """Register ``spikeport study labels`` on the ``study`` subparsers."""
    p = sub.add_parser("labels", help="label coding (rate vs van Rossum vs Hamming) over time steps T",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", help="preset to vary (e.g. digits-seq, nmnist-seq)")
    p.add_argument("--out", required=True, help="study directory (runs, results, plots, report)")
    p.add_argument("--codings", type=_list(str), default=DEFAULT_CODINGS, metavar="C,...",
                   help=f"label codings, from {', '.join(LOSSES)} (default rate_mse,van_rossum,hamming)")
    p.add_argument("--T", type=_list(int), default=(4, 8, 16), metavar="T,...", help="time steps (default 4,8,16)")
    p.add_argument("--seeds", type=_list(int), default=(0,), metavar="S,...", help="seeds (default 0)")
    p.add_argument("--epochs", type=int, help="training epochs per point (default: the preset's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="configuration override for every point (repeatable)")
    p.add_argument("--data-dir", help="dataset folder")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_study_labels)
