#!/usr/bin/env python
"""The built-in spike-pattern task (preset ``digits-patterns``): train with QAT, deploy, report.

Each digit asks the ten output neurons for its own spike pattern; the run reports the van Rossum
distance reached (float, fake-quantized, integer simulator, Lava ``fixed_pt``), spikes emitted at
the right step or within one, and simulator-vs-Lava mismatches (``spikeport/pattern_task.py``).
The run directory is resumable; a finished run is only evaluated again.

Usage::

    .venv/bin/python bench/spike_patterns.py                       # 100 epochs, 50 samples in Lava
    .venv/bin/python bench/spike_patterns.py --set optim.epochs=20 --out bench/out/patterns-20
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "patterns"), help="run directory (resumable)")
    ap.add_argument("--lava-samples", type=int, default=50, help="test samples run in Lava (default 50)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the preset")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    import torch

    from spikeport.pattern_task import format_report, run_pattern_task
    from spikeport.train.config import parse_set

    torch.set_num_threads(args.threads)
    res = run_pattern_task(args.out, overrides=parse_set(args.set) or None, lava_samples=args.lava_samples,
                           log=lambda s: print(s, flush=True))
    print(format_report(res))
    print(f"training {res['train_seconds']:.0f} s; evaluation and Lava {res['seconds']:.0f} s; "
          f"torch {torch.__version__}, {args.threads} thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
