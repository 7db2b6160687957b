"""Bit-accurate simulator vs Lava fixed_pt: wall time on the same network and inputs.

Network: 784-800-10 (STBP LIF, decay 0.2, threshold 0.5) quantized by spikeport's post-training
quantizer (weights as initialised, or trained if --run is given); inputs: Bernoulli-coded MNIST
test images (T = 20) from --data-dir, or random 0/1 spikes at rate 0.15 when the data is absent.

Prints, measured in this run:
  Lava          ms per time step of ONE long run (one sample-step per step: Lava runs batch 1)
  simulator     us per sample-step (batched) and synaptic operations per second
  floor         us per sample-step of the float32 BLAS matrix products alone (the dense synaptic sums)
  ratios        simulator / floor (goal <= 1) and Lava / simulator (goal > 100)
  neuron steps  the neuron update in C (sim/native, the default) vs the numpy loop it replaces
                (SPIKEPORT_SIM_NATIVE=0), each against the floor; outputs compared
  sparse        the simulator with dense, sparse (CSR over the active inputs) and automatic products
                (``products=``), and a sweep of one product (dense vs sparse over activity) with the
                cost constants fitted from it (the constants of ``sim.simulator.use_sparse``)
  torch         the simulator's torch backend on CPU, and on a GPU when one is present: samples/s,
                peak GPU memory, ratio to its no-neuron floor (the same products on the GPU) and to
                Lava per sample-step (goal >= 10,000x); outputs compared with the numpy backend
  baseline      the simulator of an earlier revision (``--baseline-rev``, default the last chain-only
                one, before the integer graph) on the same network and inputs, timed in the same run:
                current / baseline (goal <= 1: no slower than before)
  recurrent     the same network with a recurrent hidden layer (800 x 800 ``Dense`` from the hidden
                group onto itself): simulator (stepped recurrent component) vs its floor (the input
                products at once plus one recurrent product per step) and vs Lava, 0 mismatches
and checks that the simulator's output spikes equal Lava's on the samples Lava ran.

    python bench/sim_vs_lava.py [--data-dir ../shared/datasets/mnist] [--samples 1024] [--lava-samples 20]
    python bench/sim_vs_lava.py --gpu-only --lava-ms 0.743   # a GPU machine without the Lava runtime:
                                                             # the torch sections, Lava's figure given

Lava runs in its own runtime through the bridge (targets/bridge.py) and is timed there
(targets/lava_procs.LavaGraph.run): its --lava-samples samples run back to back as one stream
(netx's periodic reset every T steps, ``reset_interval=T``: u and v zeroed inside the LIF
processes, no state reset through Lava's API), split into two equal chunks, each one
``run(RunSteps(n))`` call. The first chunk compiles and starts Lava's processes; the steady state
is the second chunk alone: n consecutive steps of the running process network (input Source,
Dense, LIF, Sink processes and their per-step messages) in one call. Not included: compile,
process start, reading the results back, the bridge's files and the worker's start (all in the
"with setup" figure). The simulator's outputs are compared in the same stream mode.
"""
from __future__ import annotations

import argparse
import json
import os
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


def lava_stream(net, x: np.ndarray, T: int):
    """Run ``x`` ``(n, T, ...)`` in Lava as one stream (reset every ``T`` steps) split into two chunks
    of ``n // 2`` samples; returns the stream input ``(2, n // 2 * T, ...)``, Lava's result, its
    steady ms per step (the second chunk: one ``run`` call of ``n // 2 * T`` steps, timed inside
    the runtime) and the wall seconds of the whole call (worker start, compile, bridge included)."""
    from spikeport.targets.lava import run_lava

    half = x.shape[0] // 2
    if half < 1:
        raise ValueError(f"--lava-samples must be >= 2 (two chunks of one long run), got {x.shape[0]}")
    xs = x[:2 * half].reshape(2, half * T, *x.shape[2:])
    t0 = time.perf_counter()
    res = run_lava(net, xs, reset_interval=T)
    wall = time.perf_counter() - t0
    t = res.info["timing"]
    steady = (t["all_samples_s"] - t["first_sample_s"]) / t["steps_per_sample"] * 1e3
    return xs, res, steady, wall


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def native_section(net, x: np.ndarray, args, res, floor, out: dict) -> None:
    """The neuron update in C (``sim/native``, the default) against the numpy loop it replaces
    (``SPIKEPORT_SIM_NATIVE=0``), interleaved with the floor, best of --repeats each."""
    from spikeport.sim import native

    S, T = x.shape[:2]
    if not native.available():
        print(f"neuron steps    native unavailable here ({native.unavailable_reason()}): numpy loop only")
        return
    best = {k: float("inf") for k in ("native", "numpy", "floor")}
    before = os.environ.get("SPIKEPORT_SIM_NATIVE")
    try:
        for _ in range(args.repeats):
            for mode in best:
                os.environ["SPIKEPORT_SIM_NATIVE"] = "0" if mode == "numpy" else "1"
                t0 = time.perf_counter()
                floor() if mode == "floor" else simulate(net, x, batch_size=args.batch_size)
                best[mode] = min(best[mode], time.perf_counter() - t0)
        os.environ["SPIKEPORT_SIM_NATIVE"] = "0"
        same = np.array_equal(simulate(net, x, batch_size=args.batch_size).output, res.output)
    finally:
        os.environ.pop("SPIKEPORT_SIM_NATIVE", None) if before is None else os.environ.update(
            SPIKEPORT_SIM_NATIVE=before)
    us = {k: v / (S * T) * 1e6 for k, v in best.items()}
    out["neuron_steps_us_per_sample_step"] = us
    print("neuron steps    " + ", ".join(f"{k} {v:.2f}" for k, v in us.items()) + " us per sample-step; "
          + f"native / floor = {us['native'] / us['floor']:.2f}, numpy / floor = {us['numpy'] / us['floor']:.2f}, "
          + f"numpy / native = {us['numpy'] / us['native']:.2f}; outputs equal: {same}")


def sparse_section(net, x: np.ndarray, args, res, floor, out: dict) -> None:
    """The simulator with dense, sparse and automatic products (interleaved with the floor, best of
    --repeats each), then one product swept over activity and the cost constants fitted from it."""
    from spikeport.sim import simulator as sim

    S, T = x.shape[:2]
    best = {k: float("inf") for k in ("dense", "sparse", "auto", "floor")}
    for _ in range(args.repeats):
        for mode in best:
            t0 = time.perf_counter()
            floor() if mode == "floor" else simulate(net, x, batch_size=args.batch_size, products=mode)
            best[mode] = min(best[mode], time.perf_counter() - t0)
    us = {k: v / (S * T) * 1e6 for k, v in best.items()}
    same = all(np.array_equal(simulate(net, x[:args.batch_size], products=m).output, res.output[:args.batch_size])
               for m in ("dense", "sparse"))
    out["products_us_per_sample_step"] = us
    print("products        " + ", ".join(f"{k} {v:.2f}" for k, v in us.items()) + " us per sample-step; "
          + ", ".join(f"{k} / floor = {us[k] / us['floor']:.2f}" for k in ("dense", "sparse", "auto"))
          + f"; outputs equal: {same}")
    # one product, (M, K) spikes at activity p times a (K, N) layer weight, dense BLAS vs sparse CSR
    rng = np.random.default_rng(2)
    m = args.batch_size * T
    rows = []
    for layer in net.layers:
        w = np.ascontiguousarray(np.asarray(layer.synapse.effective_weight(), dtype=np.float32).T)
        k, n = w.shape
        for p in (0.01, 0.04, 0.12, 0.2, 0.4):
            s = (rng.random((m, k)) < p).view(np.uint8)
            nnz = int(np.count_nonzero(s))
            td = best_of(lambda: s.astype(np.float32) @ w, args.repeats)
            ts = best_of(lambda: sim.sparse_product(s, w), args.repeats)
            rows.append((m, k, n, nnz, td, ts))
            print(f"  product ({m} x {k}) @ ({k} x {n}) at activity {p:.2f}: dense {td * 1e3:7.2f} ms, sparse "
                  f"{ts * 1e3:7.2f} ms; auto picks {'sparse' if sim.use_sparse(m, k, n, nnz) else 'dense'}, "
                  f"faster was {'sparse' if ts < td else 'dense'}")
    r = np.array(rows, dtype=np.float64)
    mk, nnz, n_out = r[:, 0] * r[:, 1], r[:, 3], r[:, 2]
    # least squares on relative errors: dense = c_entry M K + c_madd M K N;
    # sparse = c_scan M K + c_nnz nnz + c_add nnz N (the model of sim.simulator.use_sparse)
    fit = [np.linalg.lstsq(np.stack(cols, axis=1) / t[:, None], np.ones(len(r)), rcond=None)[0] * 1e9
           for cols, t in (([mk, mk * n_out], r[:, 4]), ([mk, nnz, nnz * n_out], r[:, 5]))]
    model = [sim._DENSE_ENTRY_S, sim._DENSE_MADD_S / sim.blas_threads(), sim._SPARSE_SCAN_S, sim._SPARSE_NNZ_S,
             sim._SPARSE_ADD_S]  # the multiply-add as the model uses it: over the BLAS threads
    out["sparse_fit_ns"] = dict(zip(("dense_entry", "dense_madd", "scan", "nnz", "sparse_add"),
                                    [float(c) for c in (*fit[0], *fit[1])]))
    print("  fitted (ns): dense " + ", ".join(f"{c:.4g}" for c in fit[0]) + " per entry, multiply-add; sparse "
          + ", ".join(f"{c:.4g}" for c in fit[1]) + " per entry, nonzero, added weight (sim.simulator uses "
          + ", ".join(f"{c * 1e9:.4g}" for c in model) + ")")


def torch_section(net, x: np.ndarray, args, res, steady_ms: float, out: dict) -> int:
    """The torch backend on CPU, and on a GPU when present; returns the output mismatches vs numpy."""
    S, T = x.shape[:2]
    t_cpu = best_of(lambda: simulate(net, x, batch_size=args.batch_size, backend="torch", device="cpu"), args.repeats)
    mis = int(np.count_nonzero(simulate(net, x, batch_size=args.batch_size, backend="torch", device="cpu").output
                               != res.output))
    out["torch_cpu_us_per_sample_step"] = t_cpu / (S * T) * 1e6
    print(f"torch CPU       {t_cpu / (S * T) * 1e6:8.2f} us per sample-step ({torch.get_num_threads()} threads, "
          f"batch {args.batch_size}); {mis} output mismatches vs numpy")
    dev, B = torch.device(args.gpu_device), args.gpu_batch_size
    cuda = dev.type == "cuda"
    if cuda and not torch.cuda.is_available():
        print("torch GPU       not run: no GPU here (torch.cuda.is_available() is False)")
        out["gpu"] = None
        return mis

    def sync():
        if cuda:
            torch.cuda.synchronize()
    from spikeport.sim.backend_torch import _ieee_matmul
    from spikeport.sim.graph import IntGraph

    graph = IntGraph.from_chain(net)
    reps = -(-args.gpu_samples // S)
    xg = np.tile(x.astype(bool), (reps, 1, 1))[:args.gpu_samples]  # bool: spikes by type, no value scan
    n = xg.shape[0]
    simulate(graph, xg[:B], batch_size=B, backend="torch", device=dev)  # warm-up (CUDA context, kernels)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    g = simulate(graph, xg, batch_size=B, backend="torch", device=dev)
    sync()
    t_gpu = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else float("nan")
    name = torch.cuda.get_device_name(dev) if cuda else "CPU (check run of the GPU section)"
    gmis = int(np.count_nonzero(g.output != np.tile(res.output, (reps, 1, 1))[:n]))
    # floor: the same two products on the GPU (IEEE float32, inputs already there), nothing else
    w1 = torch.from_numpy(np.asarray(net.layers[0].synapse.effective_weight(), dtype=np.float32).T.copy()).to(dev)
    w2 = torch.from_numpy(np.asarray(net.layers[1].synapse.effective_weight(), dtype=np.float32).T.copy()).to(dev)
    xb = torch.from_numpy(xg[:B].reshape(-1, xg.shape[-1])).to(dev)
    hb = (torch.rand((xb.shape[0], w2.shape[0]), device=dev) < out["firing_rates"][0]).float()

    def floor():
        for _ in range(0, n, B):
            xb.float() @ w1
            hb @ w2
        sync()

    with _ieee_matmul():
        t_floor = best_of(floor, args.repeats)
    us_gpu, us_floor = t_gpu / (n * T) * 1e6, t_floor / (n * T) * 1e6
    out["gpu"] = {"name": name, "samples": n, "batch": B, "samples_per_s": n / t_gpu,
                  "us_per_sample_step": us_gpu, "floor_us_per_sample_step": us_floor, "peak_gib": peak,
                  "lava_over_gpu": steady_ms * 1e3 / us_gpu, "mismatches_vs_numpy": gmis}
    print(f"torch GPU       {name}: {n} samples (batch {B}) in {t_gpu:.2f} s = "
          f"{n / t_gpu:,.0f} samples/s, {us_gpu:.4f} us per sample-step (numpy arrays in and out, transfers "
          f"included); peak GPU memory {peak:.2f} GiB; floor (the two products alone, on the GPU) {us_floor:.4f} us, "
          f"sim / floor = {us_gpu / us_floor:.2f}; Lava (steady) / GPU = {steady_ms * 1e3 / us_gpu:,.0f}x "
          f"(goal >= 10,000); {gmis} output mismatches vs numpy")
    return mis + gmis


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    ap.add_argument("--run", help="trained mnist-mlp run directory (default: initial weights)")
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--lava-samples", type=int, default=20, help="samples Lava runs, as one stream in two chunks")
    ap.add_argument("--gpu-samples", type=int, default=65536, help="samples of the GPU section (the inputs tiled)")
    ap.add_argument("--gpu-batch-size", type=int, default=16384)
    ap.add_argument("--gpu-device", default="cuda", help="device of the GPU section ('cpu' runs it there, as a check)")
    ap.add_argument("--gpu-only", action="store_true",
                    help="only the torch sections (for a GPU machine without the Lava runtime); Lava's steady "
                         "ms per step for the ratio then comes from --lava-ms, measured elsewhere")
    ap.add_argument("--lava-ms", type=float, help="with --gpu-only: Lava's steady-state ms per step (measured)")
    ap.add_argument("--T", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--baseline-rev", default="fd8af79", help="git revision whose simulator is the baseline")
    args = ap.parse_args()

    load0 = os.getloadavg()[0]
    net = network(args.run)
    x, source = inputs(args.data_dir, args.samples, args.T)
    S, T = x.shape[:2]
    print(f"network 784-800-10, {source}; {S} samples x T={T}; torch {torch.__version__}, "
          f"numpy {np.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {load0:.2f} at start")

    rec = simulate(net, x[:args.batch_size], record=True)  # warm-up and activity figures
    rates = [float(s.mean()) for s in rec.spikes]
    if args.gpu_only:
        if args.lava_ms is None:
            raise SystemExit("--gpu-only needs --lava-ms (Lava's steady-state ms per step, measured with Lava)")
        print(f"firing rates per layer: {', '.join(f'{r:.3f}' for r in rates)}; Lava steady state "
              f"{args.lava_ms} ms per step as given (--lava-ms), not measured in this run")
        out = {"samples": S, "T": T, "input": source, "firing_rates": rates, "lava_ms_per_step_given": args.lava_ms}
        mismatches = torch_section(net, x, args, simulate(net, x, batch_size=args.batch_size), args.lava_ms, out)
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))
        return 1 if mismatches else 0
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

    # Lava: one long run inside its runtime (see the module docstring for what is included)
    xl, lava, steady_ms, t_lava = lava_stream(net, x[:min(args.lava_samples, S)], T)
    n_lava = xl.shape[0] * xl.shape[1] // T
    mismatches = int(np.count_nonzero(lava.output != simulate(net, xl, reset_interval=T).output))

    per_step_sim = t_sim / (S * T) * 1e6
    per_step_floor = t_floor / (S * T) * 1e6
    per_step_lava = t_lava / (n_lava * T) * 1e3
    out = {
        "samples": S, "T": T, "input": source, "firing_rates": rates,
        "lava_ms_per_step_incl_setup": per_step_lava, "lava_ms_per_step_steady": steady_ms,
        "lava_samples": n_lava, "lava_steady_steps": xl.shape[1], "lava_seconds_incl_setup": t_lava,
        "sim_us_per_sample_step": per_step_sim, "floor_us_per_sample_step": per_step_floor,
        "sim_over_floor": per_step_sim / per_step_floor, "lava_over_sim": steady_ms * 1e3 / per_step_sim,
        "synaptic_ops_per_s": ops / t_sim, "output_mismatches_vs_lava": mismatches,
    }
    print(f"firing rates per layer: {', '.join(f'{r:.3f}' for r in rates)}")
    print(f"Lava fixed_pt   {steady_ms:8.3f} ms per step steady state: one run of {xl.shape[1]} steps after a first "
          f"run of {xl.shape[1]} (compile, process start); {per_step_lava:.3f} ms per step for the whole call "
          f"({n_lava} samples: worker start, compile, both runs, results, bridge)")
    print(f"simulator       {per_step_sim:8.2f} us per sample-step, {ops / t_sim / 1e9:.2f} G synaptic ops/s "
          "(products='auto')")
    print(f"BLAS floor      {per_step_floor:8.2f} us per sample-step")
    print(f"simulator / floor = {out['sim_over_floor']:.2f} (goal <= 1);  "
          f"Lava (steady) / simulator = {out['lava_over_sim']:.0f}x (goal > 100)")
    print(f"output spikes simulator vs Lava (stream of {n_lava} samples): {mismatches} mismatches")

    native_section(net, x, args, res, floor, out)
    sparse_section(net, x, args, res, floor, out)
    mismatches += torch_section(net, x, args, res, steady_ms, out)

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
    rxl, rlava, rsteady, _ = lava_stream(graph, x[:min(args.lava_samples, S)], T)
    rmis = int(np.count_nonzero(rlava.output != simulate(graph, rxl, reset_interval=T).output))
    rsim = t_rec / (S * T) * 1e6
    out.update(recurrent_sim_us_per_sample_step=rsim, recurrent_floor_us_per_sample_step=t_rec_floor / (S * T) * 1e6,
               recurrent_lava_ms_per_step_steady=rsteady, recurrent_mismatches_vs_lava=rmis,
               recurrent_rates=[float(rres.spikes[g].mean()) for g in graph.groups()])
    print(f"recurrent 784-800R-10: simulator {rsim:.2f} us per sample-step, floor {t_rec_floor / (S * T) * 1e6:.2f}, "
          f"sim / floor = {rsim / (t_rec_floor / (S * T) * 1e6):.2f}; Lava {rsteady:.3f} ms per step steady "
          f"({rsteady * 1e3 / rsim:.0f}x the simulator); {rmis} output mismatches; rates "
          + ", ".join(f"{r:.3f}" for r in out["recurrent_rates"]))
    mismatches += rmis
    out["load_average_start_end"] = [load0, os.getloadavg()[0]]
    print(f"load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end ({os.cpu_count()} CPUs)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
