"""Bit-accurate simulator vs Lava fixed_pt: wall time on the same network and inputs.

Network: 784-800-10 (STBP LIF, decay 0.2, threshold 0.5) quantized by spikeport's post-training
quantizer (weights as initialised, or trained if --run is given); inputs: Bernoulli-coded MNIST
test images (T = 20) from --data-dir, or random 0/1 spikes at rate 0.15 when the data is absent.

Prints, measured in this run:
  Lava          ms per time step (one sample at a time, as Lava runs)
  simulator     us per sample-step (batched) and synaptic operations per second
  floor         us per sample-step of the float32 BLAS matrix products alone (the dense synaptic sums)
  ratios        simulator / floor (goal <= 1.5) and Lava / simulator (goal > 100)
and checks that the simulator's output spikes equal Lava's on the samples Lava ran.

    python bench/sim_vs_lava.py [--data-dir ../shared/datasets/mnist] [--samples 1024] [--lava-samples 5]
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

    # Lava: a short and a long run; the difference is the steady-state time per step (process
    # creation and compilation cancel out), the long run's total is what a user waits.
    n_lava = min(args.lava_samples, S)
    n_short = max(1, n_lava // 3)
    t0 = time.perf_counter()
    run_lava(net, x[:n_short])
    t_short = time.perf_counter() - t0
    t0 = time.perf_counter()
    lava = run_lava(net, x[:n_lava])
    t_lava = time.perf_counter() - t0
    steady_ms = (t_lava - t_short) / ((n_lava - n_short) * T) * 1e3 if n_lava > n_short else float("nan")
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
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
