"""Bit-accurate simulator vs Lava fixed_pt: wall time on the same network and inputs.

Network: 784-800-10 (STBP LIF, decay 0.2, threshold 0.5) quantized by spikeport's post-training
quantizer (weights as initialised, or trained if --run is given); inputs: Bernoulli-coded MNIST
test images (T = 20) from --data-dir, or random 0/1 spikes at rate 0.15 when the data is absent.

Prints, measured in this run:
  Lava          ms per time step (one sample at a time, as Lava runs)
  simulator     us per sample-step (batched) and synaptic operations per second
  floor         us per sample-step of the float32 BLAS matrix products alone (the dense synaptic sums)
  ratios        simulator / floor (goal <= 1.5) and Lava / simulator (goal > 100)
  baseline      the simulator of an earlier revision (``--baseline-rev``, default the last chain-only
                one, before the integer graph) on the same network and inputs, timed in the same run:
                current / baseline (goal <= 1: no slower than before)
  recurrent     the same network with a recurrent hidden layer (800 x 800 ``Dense`` from the hidden
                group onto itself): simulator (stepped recurrent component) vs its floor (the input
                products at once plus one recurrent product per step) and vs Lava, 0 mismatches
and checks that the simulator's output spikes equal Lava's on the samples Lava ran.

    python bench/sim_vs_lava.py [--data-dir ../shared/datasets/mnist] [--samples 1024] [--lava-samples 5]

Lava runs in its own runtime through the bridge (targets/bridge.py); its steady state is timed inside
the runtime: every sample after the first (which compiles and starts Lava's processes), per-sample
state resets included.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spikeport.export.quantize import quantize_network  # noqa: E402
from spikeport.sim.simulator import simulate  # noqa: E402
from spikeport.train.network import NeuronSpec, build_network  # noqa: E402


def inputs(data_dir, samples: int, T: int, seed: int = 0) -> tuple[np.ndarray, str]:
    gen = torch.Generator().manual_seed(seed)
    try:
        from spikeport.train.datasets import load_mnist
        from spikeport.train.encoders import bernoulli

        split = load_mnist(data_dir, "test")
        x = split.inputs[:samples]
        spikes = bernoulli(x, T, gen).transpose(0, 1).reshape(samples, T, -1).numpy().astype(np.int8)
        return spikes, f"MNIST test images from {data_dir}, Bernoulli T={T}"
    except Exception as err:  # noqa: BLE001 - absent data: fall back, and say so
        rng = np.random.default_rng(seed)
        return (rng.random((samples, T, 784)) < 0.15).astype(np.int8), f"random spikes p=0.15 ({err})"


def network(run: str | None):
    if run:
        from spikeport.train.trainer import load_run

        _, model = load_run(run)
    else:
        torch.manual_seed(0)
        model = build_network("784-800-10", NeuronSpec(model="lif", decay=0.2, v_threshold=0.5))
        with torch.no_grad():  # scale the default init so that the hidden layer is active
            model.layers[0].weight.mul_(3.0)
    net, _ = quantize_network(model)
    return net


def synaptic_ops(net, x: np.ndarray, hidden_spikes: list) -> int:
    """Spikes times fan-out, per synaptic layer (dense: every input spike reaches all outputs)."""
    ops = int(x.sum()) * net.layers[0].synapse.weight.shape[0]
    for layer, s in zip(net.layers[1:], hidden_spikes[:-1]):
        ops += int(s.sum()) * layer.synapse.weight.shape[0]
    return ops


def baseline_simulate(rev: str):
    """``simulate`` of revision ``rev`` (its sim/ package extracted with git into a temporary
    package), or None with a reason when git or the revision is not available."""
    import importlib
    import subprocess
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="spikeport-baseline-")) / "baseline_sim"
    tmp.mkdir()
    for name in ("__init__.py", "formats.py", "network.py", "simulator.py"):
        try:
            text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:sim/{name}"], capture_output=True,
                                  text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as err:
            return None, f"revision {rev} not available ({err})"
        (tmp / name).write_text(text)
    sys.path.insert(0, str(tmp.parent))
    try:
        return importlib.import_module("baseline_sim.simulator"), importlib.import_module("baseline_sim.network")
    finally:
        sys.path.remove(str(tmp.parent))


def recurrent_graph(net):
    """``net`` with a recurrent 800 x 800 Dense on its hidden group (weights seeded, mixed signs)."""
    from spikeport.sim.graph import IntGraph
    from spikeport.sim.network import Dense

    g = IntGraph.from_chain(net)
    n = net.shapes[1][0]
    w = np.random.default_rng(3).integers(-12, 12, (n, n)) * 2
    nodes = dict(g.nodes, layer0_rec=Dense(w, weight_exp=0))
    return IntGraph(nodes, list(g.edges) + [("layer0", "layer0_rec"), ("layer0_rec", "layer0")], g.dt)


def lava_steady_ms(info: dict, T: int) -> float:
    """Lava's milliseconds per step after the first sample (the runtime's own timing)."""
    t = (info or {}).get("timing", {})
    n = t.get("samples", 0)
    if n < 2 or "first_sample_s" not in t:
        return float("nan")
    return (t["all_samples_s"] - t["first_sample_s"]) / ((n - 1) * T) * 1e3


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    ap.add_argument("--run", help="trained mnist-mlp run directory (default: initial weights)")
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--lava-samples", type=int, default=5)
    ap.add_argument("--T", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--baseline-rev", default="fd8af79", help="git revision whose simulator is the baseline")
    args = ap.parse_args()

    net = network(args.run)
    x, source = inputs(args.data_dir, args.samples, args.T)
    S, T = x.shape[:2]
    print(f"network 784-800-10, {source}; {S} samples x T={T}; torch {torch.__version__}, "
          f"numpy {np.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")

    rec = simulate(net, x[:args.batch_size], record=True)  # warm-up and activity figures
    rates = [float(s.mean()) for s in rec.spikes]
    t_sim = best_of(lambda: simulate(net, x, batch_size=args.batch_size), args.repeats)
    res = simulate(net, x, record=True, batch_size=args.batch_size)
    ops = synaptic_ops(net, x, res.spikes)

    # floor: the same dense synaptic sums as float32 BLAS products over all T at once, nothing else
    w1 = np.asarray(net.layers[0].synapse.effective_weight(), dtype=np.float32).T.copy()
    w2 = np.asarray(net.layers[1].synapse.effective_weight(), dtype=np.float32).T.copy()
    h = (np.random.default_rng(1).random((args.batch_size * T, w2.shape[0])) < rates[0]).astype(np.float32)

    def floor():
        for s0 in range(0, S, args.batch_size):
            xb = x[s0:s0 + args.batch_size].reshape(-1, x.shape[-1]).astype(np.float32)
            xb @ w1
            h[:xb.shape[0]] @ w2

    t_floor = best_of(floor, args.repeats)

    from spikeport.targets.lava import run_lava

    # Lava: timed inside its runtime (targets/lava_procs.LavaGraph.run): the first sample compiles
    # and starts Lava's processes; the steady state is the other samples' time per step, their
    # per-sample state resets (u, v and synaptic buffers set to 0 through Lava) included. The whole
    # call (worker start, bridge files, compile) is what a user waits.
    n_lava = min(args.lava_samples, S)
    t0 = time.perf_counter()
    lava = run_lava(net, x[:n_lava])
    t_lava = time.perf_counter() - t0
    steady_ms = lava_steady_ms(lava.info, T)
    mismatches = int(np.count_nonzero(lava.output != res.output[:n_lava]))

    per_step_sim = t_sim / (S * T) * 1e6
    per_step_floor = t_floor / (S * T) * 1e6
    per_step_lava = t_lava / (n_lava * T) * 1e3
    out = {
        "samples": S, "T": T, "input": source, "firing_rates": rates,
        "lava_ms_per_step_incl_setup": per_step_lava, "lava_ms_per_step_steady": steady_ms,
        "lava_samples": n_lava, "lava_seconds_incl_setup": t_lava,
        "sim_us_per_sample_step": per_step_sim, "floor_us_per_sample_step": per_step_floor,
        "sim_over_floor": per_step_sim / per_step_floor, "lava_over_sim": steady_ms * 1e3 / per_step_sim,
        "synaptic_ops_per_s": ops / t_sim, "output_mismatches_vs_lava": mismatches,
    }
    print(f"firing rates per layer: {', '.join(f'{r:.3f}' for r in rates)}")
    print(f"Lava fixed_pt   {steady_ms:8.3f} ms per step steady state "
          f"({per_step_lava:.3f} ms with process setup, {n_lava} samples)")
    print(f"simulator       {per_step_sim:8.2f} us per sample-step, {ops / t_sim / 1e9:.2f} G synaptic ops/s")
    print(f"BLAS floor      {per_step_floor:8.2f} us per sample-step")
    print(f"simulator / floor = {out['sim_over_floor']:.2f} (goal <= 1.5);  "
          f"Lava (steady) / simulator = {out['lava_over_sim']:.0f}x (goal > 100)")
    print(f"output spikes simulator vs Lava: {mismatches} mismatches")

    # the simulator of the baseline revision, same network and inputs, this run
    base = baseline_simulate(args.baseline_rev)
    if base[0] is None:
        print(f"baseline        skipped: {base[1]}")
    else:
        bsim, bnet = base
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            net.save(Path(tmp) / "net.npz")
            old = bnet.IntNetwork.load(Path(tmp) / "net.npz")
        t_base = best_of(lambda: bsim.simulate(old, x, batch_size=args.batch_size), args.repeats)
        t_sim = min(t_sim, best_of(lambda: simulate(net, x, batch_size=args.batch_size), args.repeats))  # interleaved
        same = bool(np.array_equal(bsim.simulate(old, x, batch_size=args.batch_size).output, res.output))
        out.update(baseline_rev=args.baseline_rev, baseline_us_per_sample_step=t_base / (S * T) * 1e6,
                   current_over_baseline=t_sim / t_base, baseline_output_equal=same)
        print(f"baseline {args.baseline_rev} {t_base / (S * T) * 1e6:8.2f} us per sample-step; current / baseline = "
              f"{t_sim / t_base:.2f} (goal <= 1); outputs equal: {same}")

    # a recurrent hidden layer
    graph = recurrent_graph(net)
    t_rec = best_of(lambda: simulate(graph, x, batch_size=args.batch_size), args.repeats)
    rres = simulate(graph, x, batch_size=args.batch_size, record=True)
    wr = np.asarray(graph.nodes["layer0_rec"].effective_weight(), dtype=np.float32).T.copy()
    hb = (rres.spikes["layer0"][:args.batch_size].transpose(1, 0, 2)).astype(np.float32)  # (T, B, N)

    def rec_floor():
        for s0 in range(0, S, args.batch_size):
            xb = x[s0:s0 + args.batch_size].reshape(-1, x.shape[-1]).astype(np.float32)
            xb @ w1
            for t in range(T):
                hb[t] @ wr
            h[:xb.shape[0]] @ w2

    t_rec_floor = best_of(rec_floor, args.repeats)
    rlava = run_lava(graph, x[:n_lava])
    rsteady = lava_steady_ms(rlava.info, T)
    rmis = int(np.count_nonzero(rlava.output != rres.output[:n_lava]))
    rsim = t_rec / (S * T) * 1e6
    out.update(recurrent_sim_us_per_sample_step=rsim, recurrent_floor_us_per_sample_step=t_rec_floor / (S * T) * 1e6,
               recurrent_lava_ms_per_step_steady=rsteady, recurrent_mismatches_vs_lava=rmis,
               recurrent_rates=[float(rres.spikes[g].mean()) for g in graph.groups()])
    print(f"recurrent 784-800R-10: simulator {rsim:.2f} us per sample-step, floor {t_rec_floor / (S * T) * 1e6:.2f}, "
          f"sim / floor = {rsim / (t_rec_floor / (S * T) * 1e6):.2f}; Lava {rsteady:.3f} ms per step steady "
          f"({rsteady * 1e3 / rsim:.0f}x the simulator); {rmis} output mismatches; rates "
          + ", ".join(f"{r:.3f}" for r in out["recurrent_rates"]))
    mismatches += rmis
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
