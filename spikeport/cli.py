"""Command line: ``spikeport train | evaluate | presets``."""
from __future__ import annotations

import argparse
import json
import sys


def _cmd_train(args) -> int:
    from train.config import make_config, parse_set
    from train.trainer import CONFIG, train

    if args.resume and args.preset is None and args.config is None:
        # resume a run from its own saved configuration
        from pathlib import Path

        from train.config import Config

        saved = Path(args.out) / CONFIG
        if not saved.exists():
            raise ValueError(f"--resume: {saved} not found; give --preset/--config to start a new run")
        cfg = Config.from_dict(json.loads(saved.read_text())).with_overrides(parse_set(args.set))
    else:
        cfg = make_config(args.preset or "digits-mlp" if args.config is None else args.preset, args.config,
                          parse_set(args.set), args.data_dir)
    if args.device:
        cfg = cfg.with_overrides({"optim.device": args.device})
    metrics = train(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    if metrics:
        print(f"test accuracy: {100 * metrics['test_accuracy']:.2f}% "
              f"({metrics['test_samples']} {cfg.data.dataset} test samples) -> {args.out}")
    return 0


def _cmd_evaluate(args) -> int:
    from train.trainer import evaluate

    res = evaluate(args.run_dir, data_dir=args.data_dir, device=args.device or "auto",
                   progress=not args.no_progress)
    print(json.dumps(res) if args.json else
          f"test accuracy: {100 * res['accuracy']:.2f}%  loss {res['loss']:.4f}  ({res['samples']} samples)")
    return 0


def _cmd_presets(args) -> int:
    from train.config import PRESETS

    for name, p in PRESETS.items():
        d = p["data"]
        print(f"{name:12s} {p['network']:32s} {d['dataset']:8s} T={d['T']:<3d} "
              f"{p['neuron']['model']:5s} {p['loss']['name']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikeport", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a spiking network with STBP")
    t.add_argument("--preset", help="named configuration (see `spikeport presets`); default digits-mlp")
    t.add_argument("--config", help="YAML or TOML configuration file (applied over the preset)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one field, e.g. --set optim.lr=0.01 (repeatable)")
    t.add_argument("--data-dir", help="folder with the dataset's files")
    t.add_argument("--out", required=True, help="run directory (config, checkpoint, metrics)")
    t.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    t.add_argument("--device", help="cpu, cuda, cuda:N (default: auto)")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="test accuracy of a trained run")
    e.add_argument("run_dir")
    e.add_argument("--data-dir", help="dataset folder, if it moved since training")
    e.add_argument("--device")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=_cmd_evaluate)

    s = sub.add_parser("presets", help="list the named configurations")
    s.set_defaults(func=_cmd_presets)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # bad input: one clear line, no traceback
        print(f"spikeport {args.command}: error: {err}", file=sys.stderr)
        return 2
