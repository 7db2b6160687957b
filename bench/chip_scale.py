"""Time and peak memory of the chip model on a large vision graph, next to the simulator's.

The graph (issue 11): input 3 x 448 x 448 spikes, ten 3 x 3 convolutions (stride 2 where the map
halves, padding 1), 1,908,688 neurons in all; random even weights (seeded), thresholds that keep
activity sparse. Each phase runs in its own process so that its peak resident memory
(``ru_maxrss``) is its own:

- ``simulate``: ``simulate(graph, x)`` (no recording), what ``spikeport simulate`` does;
- ``map``: ``map_network(graph, "loihi2")``;
- ``traffic``: ``simulate(..., record=True)`` + ``map_network`` + ``count_traffic``, what
  ``spikeport traffic`` does before writing its report.

    OMP_NUM_THREADS=1 .venv/bin/python bench/chip_scale.py [--steps 8] [--samples 1]

Prints one table (markdown) and writes ``bench/out/chip_scale.json``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# (out channels, stride) of the ten convolutions: 12x224x224, 32x112x112, 16x112x112, 64x56x56, 64x56x56,
# 128x28x28, 128x28x28, 256x14x14, 256x14x14, 10x14x14
CONVS = ((12, 2), (32, 2), (16, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (10, 1))
IN_SHAPE = (3, 448, 448)


def build_graph(seed: int = 0):
    from spikeport.sim.graph import Input, IntGraph, NeuronGroup, Output
    from spikeport.sim.network import Conv2d, Neurons, conv_output_shape

    rng = np.random.default_rng(seed)
    nodes, edges, prev, shape = {"input": Input(IN_SHAPE)}, [], "input", IN_SHAPE
    for i, (c_out, s) in enumerate(CONVS):
        w = rng.integers(-3, 5, (c_out, shape[0], 3, 3)) * 2
        op = Conv2d(w, stride=(s, s), padding=(1, 1))
        shape = conv_output_shape(shape, c_out, (3, 3), (s, s), (1, 1))
        name = f"conv{i + 1}"
        nodes[name + "_w"], nodes[name] = op, NeuronGroup(shape, Neurons(vth=shape[0] + 8))
        edges += [(prev, name + "_w"), (name + "_w", name)]
        prev = name
    nodes["output"] = Output()
    edges.append((prev, "output"))
    return IntGraph(nodes, tuple(edges))


def _phase(name: str, steps: int, samples: int) -> dict:
    from spikeport.sim.chip import count_traffic, map_network
    from spikeport.sim.simulator import simulate

    graph = build_graph()
    x = (np.random.default_rng(1).random((samples, steps) + IN_SHAPE) < 0.1).astype(np.int8)
    t0 = time.perf_counter()
    out = {"phase": name}
    if name == "simulate":
        simulate(graph, x)
    elif name == "map":
        m = map_network(graph, "loihi2")
        out.update(cores=m.n_cores, chips=m.n_chips)
    else:
        rec = simulate(graph, x, record=True)
        t1 = time.perf_counter()
        m = map_network(graph, "loihi2")
        t2 = time.perf_counter()
        tr = count_traffic(graph, m, rec.spikes, x)
        out.update(simulate_s=t1 - t0, map_s=t2 - t1, count_s=time.perf_counter() - t2, cores=m.n_cores,
                   synops_per_inference=float(tr.synops.sum() / samples),
                   messages_per_inference=float(tr.messages.sum() / samples))
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--phase", choices=["simulate", "map", "traffic"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phase:
        print(json.dumps(_phase(args.phase, args.steps, args.samples)))
        return 0
    graph = build_graph()
    n = sum(graph.size(g) for g in graph.groups())
    rows = []
    for phase in ("simulate", "map", "traffic"):
        res = subprocess.run([sys.executable, __file__, "--phase", phase, "--steps", str(args.steps),
                              "--samples", str(args.samples)], capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"graph: input {IN_SHAPE}, {len(CONVS)} convolutions, {n:,} neurons; {args.samples} sample(s) x "
          f"{args.steps} steps")
    print("| phase | seconds | peak RSS (MB) | notes |\n|---|---|---|---|")
    for r in rows:
        notes = ""
        if r["phase"] == "map":
            notes = f"{r['cores']} cores on {r['chips']} chips"
        elif r["phase"] == "traffic":
            notes = (f"simulate (recording) {r['simulate_s']:.1f} s + map {r['map_s']:.1f} s + count "
                     f"{r['count_s']:.1f} s; {r['synops_per_inference']:.3g} synops, "
                     f"{r['messages_per_inference']:.3g} messages per inference")
        print(f"| {r['phase']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {notes} |")
    out = Path(__file__).with_name("out")
    out.mkdir(exist_ok=True)
    (out / "chip_scale.json").write_text(json.dumps({"neurons": n, "steps": args.steps, "samples": args.samples,
                                                     "phases": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
