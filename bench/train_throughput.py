#!/usr/bin/env python
"""Training throughput and peak memory: spikeport vs snnTorch, SpikingJelly, Norse, lava-dl and a matmul floor.

Workload (identical for every contender): a 784-800-10 network, T = 20 steps, batch 64, rate-MSE
loss ``mean_{b,c} (mean_t o[t,b,c] - onehot[b,c])^2``, Adam (lr 1e-3). Inputs are random
MNIST-like intensities, Bernoulli-coded once before timing (a pool of ``--pool`` batches that is
cycled), so encoding costs nothing for anyone.

Contenders
    floor         the same matrix multiplies with no neuron: Linear 784->800, ReLU, Linear 800->10
                  applied to the folded (T*B, .) input at once, same loss, same Adam step.
    spikeport     ``build_network("784-800-10", NeuronSpec(model="lif", decay=0.2, v_threshold=0.5))``
                  and ``LossSpec("rate_mse")`` (fused ``neuron_sequence``, rectangular surrogate a = 1,
                  gradient through the reset as in STBP).
    snntorch      idiomatic snnTorch: nn.Linear + snn.Leaky(beta=0.2, threshold=0.5,
                  reset_mechanism="zero"), Python loop over the T steps, spikes recorded and stacked.
                  reset-to-zero with the default one-step reset delay gives exactly STBP's forward
                  ``u[t] = 0.2 u[t-1] (1 - o[t-1]) + x[t]``; snnTorch always detaches the reset
                  (STBP's gradient also flows through it). snnTorch has no rectangular surrogate,
                  so a 5-line custom one (the same box as spikeport's) is passed as ``spike_grad``.
    spikingjelly  SpikingJelly 2.0, multi-step mode: layer.Linear + neuron.LIFNode(step_mode='m', tau=1.25,
                  decay_input=False, v_reset=0.0, v_threshold=0.5, detach_reset=False):
                  ``H = (1 - 1/tau) V + X`` with tau = 1.25 is decay 0.2 exactly, hard reset to 0 is
                  STBP's reset, and the reset is differentiated as in STBP. Same custom box
                  surrogate. ``functional.reset_net`` after every iteration, as SpikingJelly requires.
                  Backend: on CPU SpikingJelly 2.0 binds its Torch reference implementation
                  (``functional.neuron_implementation('lif', cpu)`` says ``torch-reference``; built-in
                  surrogates take the same path on CPU); its CUDA, Triton and fused Linear+LIF
                  (``sj_lif_linear``) operators are registered for CUDA only. (0.0.0.0.14's
                  ``backend='torch'`` argument is passed when the installed LIFNode has it.)
    spikingjelly-compile
                  the same network under ``torch.compile`` (Inductor, C++ on CPU), SpikingJelly 2.0's
                  other documented execution path ("compile"; the fused operators are traced for it
                  on CUDA, on CPU Inductor compiles the Torch reference). Compiling happens
                  before the RSS mark (one forward/backward, no optimizer step; Inductor's on-disk
                  cache makes later rounds start in seconds) and is reported as setup time.
    norse         Norse, idiomatic: ``norse.SequentialState(nn.Linear, norse.LIF(p, dt=1), nn.Linear,
                  norse.LIF(p, dt=1))`` over the (T, B, .) tensor, with ``LIFParameters(tau_syn_inv=1,
                  tau_mem_inv=0.8, v_leak=0, v_th=0.5, v_reset=0, method='triangle', alpha=1)``.
                  ``tau_syn_inv * dt = 1`` empties the synaptic current every step, so Norse's
                  current-based LIF becomes ``v = 0.2 v + 0.8 x``, spike ``v > 0.5`` (strict, as
                  STBP), reset to 0 differentiated (as STBP). What differs: forward Euler scales the
                  input by dt/tau_mem = 0.8 (the same network with weights and biases x 1.25), and
                  Norse has no box surrogate (``method`` is a fixed set of names): its triangle
                  ``alpha * relu(1 - |x|)``, alpha = 1, has the box's peak and area (spikeport's
                  ``polynomial`` with a = 4 is the same function, used by ``--check``).
    lavadl        lava-dl 0.6 slayer, in the Lava runtime (Python 3.10, torch 2.3, CPU) as a subprocess
                  running ``bench/_lavadl_throughput.py`` (see there): two ``slayer.block.cuba.Dense``
                  blocks (threshold 0.5, current_decay 1.0, voltage_decay 0.8, delay_shift=False,
                  slayer's default 8-bit weight quantization hook), input and output in slayer's
                  (B, C, T) layout.

Synaptic biases: spikeport keeps a per-neuron bias in the neuron; snnTorch, SpikingJelly and Norse
use nn.Linear's bias, which is the same term (added every step). slayer's Dense synapse has no bias
(810 parameters fewer of 636,010).

Method: every contender runs in its own fresh subprocess (``sys.executable this_file --only NAME``),
so its peak memory is attributable. Inside it: build everything and pre-encode the data, record
the RSS ("after setup"), reset the kernel's peak-RSS mark (``/proc/self/clear_refs``, 5) when
allowed, do ``--warmup`` iterations, then time whole iterations (forward, loss, zero_grad,
backward, Adam step) until ``--seconds`` have passed. Peak MB = peak RSS (VmHWM, or
``getrusage(RUSAGE_SELF).ru_maxrss`` when the mark could not be reset) minus RSS after setup.
With ``--repeats R`` the contenders run in R interleaved rounds and the median is reported. The
CPU time other processes used during the timed window (``/proc/stat`` minus this process) is
recorded; a round disturbed by more than ``--max-other`` cores is retried after a pause (up to
``--retries`` times; if every attempt was disturbed, the least disturbed one is kept), and the
table marks contenders whose every round was disturbed.
torch's default thread count is used unless ``--threads`` is given. Every contender's process
applies the same glibc malloc setting: by default (``--malloc kept``) the one ``spikeport train``
applies on CPU (train/allocator.py: freed memory is kept for reuse instead of being returned and
faulted in again every iteration), ``--malloc default`` leaves glibc's defaults for everyone. lava-dl runs in the Lava
runtime's interpreter (the one ``spikeport lava python`` runs; not created here: a missing runtime is
"not installed"), with the same harness and arguments, and reports its own torch.

A missing peer prints "not installed" and the rest still runs.

Usage::

    .venv/bin/python bench/train_throughput.py [--seconds 6] [--repeats 3] [--json out.json]
    .venv/bin/python bench/train_throughput.py --check      # forward/gradient agreement of the models

Peers: ``make bench-deps`` (``pip install -e ".[bench]"``: snnTorch, SpikingJelly, Norse into .venv)
and ``spikeport lava setup`` (lava-dl in the Lava runtime).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTENDERS = ("floor", "spikeport", "snntorch", "spikingjelly", "spikingjelly-compile", "norse", "lavadl")
LAVADL_SCRIPT = Path(__file__).resolve().with_name("_lavadl_throughput.py")
RESULT_TAG = "@@RESULT@@ "

N_IN, N_HID, N_OUT = 784, 800, 10
DECAY, V_TH = 0.2, 0.5


# ---------------------------------------------------------------------------------------------
# Memory helpers (Linux /proc; fall back to getrusage).


def _status_kb(field: str):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _cpu_busy_s():
    """Seconds of CPU time all processes of the machine have used (from /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(a) for a in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = v[0] + v[1] + v[2] + sum(v[5:8])  # user nice system irq softirq steal (not idle, iowait)
    return busy / hz


def _own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _maxrss_kb() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r // 1024 if sys.platform == "darwin" else r  # bytes on macOS, KiB on Linux


# ---------------------------------------------------------------------------------------------
# Contenders. Each builder returns (modules, step_fn, versions); step_fn(x, labels) does one full
# training iteration. Imports of the peers happen here so that a missing one is just reported.


class NotInstalled(Exception):
    pass


def rate_mse(o, labels):
    import torch.nn.functional as F
    return ((o.mean(0) - F.one_hot(labels, o.shape[-1]).to(o.dtype)) ** 2).mean()


def _rect_surrogate():
    """Heaviside forward (strict ``x > 0``), STBP's rectangular box ``1{|x| < 0.5}`` backward (a = 1)."""
    import torch

    class RectSpike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return (x > 0).to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * (x.abs() < 0.5).to(g.dtype)

    return RectSpike.apply


def build_floor():
    import torch
    from torch import nn

    class Floor(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(N_IN, N_HID)
            self.fc2 = nn.Linear(N_HID, N_OUT)

        def forward(self, x):  # (T, B, 784) -> (T, B, 10), all steps at once
            T, B = x.shape[:2]
            h = torch.relu(self.fc1(x.reshape(T * B, -1)))
            return self.fc2(h).reshape(T, B, -1)

    return Floor(), rate_mse, None, {}, {"backend": "eager"}


def build_spikeport():
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        from spikeport.train.losses import LossSpec
        from spikeport.train.network import NeuronSpec, build_network
    except ImportError as e:
        raise NotInstalled(str(e))
    import torch
    from spikeport.train.neurons import resolve_backend
    net = build_network(f"{N_IN}-{N_HID}-{N_OUT}", NeuronSpec(model="lif", decay=DECAY, v_threshold=V_TH))
    loop = {"native": "C time loop (train/native)", "reference": "torch time loop",
            "triton": "Triton kernels"}[resolve_backend(torch.zeros(1, 1))]
    return net, LossSpec("rate_mse"), None, {}, {"backend": f"fused neuron_sequence, {loop} (eager)"}


def build_snntorch():
    try:
        import snntorch as snn
    except Exception as e:  # ImportError or a broken install
        raise NotInstalled(f"{type(e).__name__}: {e}")
    import torch
    from torch import nn

    spike_grad = _rect_surrogate()

    class Net(nn.Module):  # snnTorch tutorial 5 style
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(N_IN, N_HID)
            self.lif1 = snn.Leaky(beta=DECAY, threshold=V_TH, reset_mechanism="zero", spike_grad=spike_grad)
            self.fc2 = nn.Linear(N_HID, N_OUT)
            self.lif2 = snn.Leaky(beta=DECAY, threshold=V_TH, reset_mechanism="zero", spike_grad=spike_grad)

        def forward(self, x):  # (T, B, 784)
            mem1 = self.lif1.init_leaky()
            mem2 = self.lif2.init_leaky()
            spk2_rec = []
            for t in range(x.shape[0]):
                cur1 = self.fc1(x[t])
                spk1, mem1 = self.lif1(cur1, mem1)
                cur2 = self.fc2(spk1)
                spk2, mem2 = self.lif2(cur2, mem2)
                spk2_rec.append(spk2)
            return torch.stack(spk2_rec)

    return Net(), rate_mse, None, {"snntorch": getattr(snn, "__version__", "?")}, \
        {"backend": "Leaky, Python step loop (eager)"}


def _spikingjelly_net():
    try:
        from spikingjelly.activation_based import functional, layer, neuron
    except Exception as e:
        raise NotInstalled(f"{type(e).__name__}: {e}")
    import inspect
    import torch
    from torch import nn

    sg = _rect_surrogate()
    tau = 1.0 / (1.0 - DECAY)  # decay_input=False: H = (1 - 1/tau) V + X  ->  1 - 1/tau = 0.2
    extra = {"backend": "torch"} if "backend" in inspect.signature(neuron.LIFNode).parameters else {}

    def lif():
        return neuron.LIFNode(tau=tau, decay_input=False, v_threshold=V_TH, v_reset=0.0, surrogate_function=sg,
                              detach_reset=False, step_mode="m", **extra)

    net = nn.Sequential(layer.Linear(N_IN, N_HID, step_mode="m"), lif(),
                        layer.Linear(N_HID, N_OUT, step_mode="m"), lif())
    functional.set_step_mode(net, "m")
    v = _dist_version("spikingjelly")
    impl = extra.get("backend", "?")
    if hasattr(functional, "neuron_implementation"):  # SpikingJelly 2.0: what it binds on this device
        try:
            impl = functional.neuron_implementation("lif", torch.device("cpu"))["implementation"]
        except Exception as e:
            impl = f"? ({type(e).__name__})"
    return net, functional.reset_net, v, impl


def build_spikingjelly():
    net, reset, v, impl = _spikingjelly_net()
    return net, rate_mse, reset, {"spikingjelly": v}, {"backend": f"{impl}, eager"}


def build_spikingjelly_compile():
    import torch
    net, reset, v, impl = _spikingjelly_net()
    # Prime (compile) before the RSS mark: run_one does one forward/backward without an optimizer step.
    return torch.compile(net), rate_mse, reset, {"spikingjelly": v}, \
        {"backend": f"{impl} under torch.compile (Inductor)", "prime": True}


def build_norse(dt: float = 1.0):
    try:
        import norse.torch as norse
        from norse.torch import LIFParameters
    except Exception as e:
        raise NotInstalled(f"{type(e).__name__}: {e}")
    import torch
    from torch import nn

    # tau_syn_inv * dt = 1: the synaptic current is emptied every step (i_new = input), so
    # v = v + dt * tau_mem_inv * (-v + input) = 0.2 v + 0.8 input.
    p = LIFParameters(tau_syn_inv=torch.as_tensor(1.0 / dt), tau_mem_inv=torch.as_tensor((1.0 - DECAY) / dt),
                      v_leak=torch.as_tensor(0.0), v_th=torch.as_tensor(V_TH), v_reset=torch.as_tensor(0.0),
                      method="triangle", alpha=1.0)

    class Net(nn.Module):  # Norse's SequentialState over the whole (T, B, .) tensor
        def __init__(self):
            super().__init__()
            self.seq = norse.SequentialState(nn.Linear(N_IN, N_HID), norse.LIF(p, dt=dt),
                                             nn.Linear(N_HID, N_OUT), norse.LIF(p, dt=dt))

        def forward(self, x):
            out, _ = self.seq(x)
            return out

    return Net(), rate_mse, None, {"norse": _dist_version("norse")}, \
        {"backend": "LIF module, Python time loop (eager)"}


def _dist_version(dist: str) -> str:
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:
        return "?"


BUILDERS = {"floor": build_floor, "spikeport": build_spikeport, "snntorch": build_snntorch,
            "spikingjelly": build_spikingjelly, "spikingjelly-compile": build_spikingjelly_compile,
            "norse": build_norse}  # lavadl: bench/_lavadl_throughput.py in the Lava runtime


# ---------------------------------------------------------------------------------------------
# GPU contenders (the GPU section; run when torch sees a CUDA device). Same workload, all on the
# arctan surrogate: SpikingJelly's fused CUDA/Triton LIF kernels accept only its built-in
# surrogates (spikingjelly/_ops/surrogate.py, _SURROGATE_IDS), and its ATan(alpha=2),
# h(x) = alpha/2 / (1 + (pi/2 alpha x)^2) (activation_based/surrogate.py, atan_backward), is
# 1 / (1 + (pi x)^2): spikeport's "arctan" with a = 1 (train/surrogates.py) and snnTorch's
# surrogate.atan(alpha=2) (snntorch/surrogate.py, ATan.backward), so every contender computes the
# same gradient.

GPU_CONTENDERS = ("floor", "spikeport", "spikingjelly", "snntorch", "spikeport-reference",
                  "spikingjelly-compile", "lavadl")  # the goal's comparison first (a run cut short keeps it)
ATAN_ALPHA = 2.0


def _spikeport_gpu(backend: str):
    def build():  # spikeport installed (or on PYTHONPATH, as bench/gpu_check.sh arranges)
        os.environ["SPIKEPORT_NEURON_BACKEND"] = backend  # this worker process only
        try:
            from spikeport.train.losses import LossSpec
            from spikeport.train.network import NeuronSpec, build_network
            from spikeport.train.neurons import resolve_backend
        except ImportError as e:
            raise NotInstalled(str(e))
        import torch
        net = build_network(f"{N_IN}-{N_HID}-{N_OUT}", NeuronSpec(model="lif", decay=DECAY, v_threshold=V_TH,
                                                                   surrogate="arctan", surrogate_width=1.0))

        def describe(device):
            got = resolve_backend(torch.zeros(1, 1, device=device))
            return {"triton": "fused Triton kernels (train/triton_kernels.py)",
                    "reference": "torch time loop (neuron_sequence reference)",
                    "native": "C time loop (train/native)"}[got] + ", arctan a=1"
        return net, LossSpec("rate_mse"), None, {}, {"backend": describe}
    return build


def build_snntorch_gpu():
    try:
        import snntorch as snn
        from snntorch import surrogate
    except Exception as e:
        raise NotInstalled(f"{type(e).__name__}: {e}")
    import torch
    from torch import nn
    sg = surrogate.atan(alpha=ATAN_ALPHA)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(N_IN, N_HID)
            self.lif1 = snn.Leaky(beta=DECAY, threshold=V_TH, reset_mechanism="zero", spike_grad=sg)
            self.fc2 = nn.Linear(N_HID, N_OUT)
            self.lif2 = snn.Leaky(beta=DECAY, threshold=V_TH, reset_mechanism="zero", spike_grad=sg)

        def forward(self, x):
            mem1, mem2, out = self.lif1.init_leaky(), self.lif2.init_leaky(), []
            for t in range(x.shape[0]):
                spk1, mem1 = self.lif1(self.fc1(x[t]), mem1)
                spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
                out.append(spk2)
            return torch.stack(out)

    return Net(), rate_mse, None, {"snntorch": getattr(snn, "__version__", "?")}, \
        {"backend": "Leaky, Python step loop, atan alpha=2"}


def _spikingjelly_gpu(compile_: bool):
    def build():
        try:
            from spikingjelly.activation_based import functional, layer, neuron, surrogate
        except Exception as e:
            raise NotInstalled(f"{type(e).__name__}: {e}")
        from torch import nn

        def lif():
            return neuron.LIFNode(tau=1.0 / (1.0 - DECAY), decay_input=False, v_threshold=V_TH, v_reset=0.0,
                                  surrogate_function=surrogate.ATan(alpha=ATAN_ALPHA), detach_reset=False,
                                  step_mode="m")

        net = nn.Sequential(layer.Linear(N_IN, N_HID, step_mode="m"), lif(),
                            layer.Linear(N_HID, N_OUT, step_mode="m"), lif())
        functional.set_step_mode(net, "m")

        def describe(device):  # what SpikingJelly binds on this device (native CUDA > Triton > torch)
            try:
                d = functional.neuron_implementation("lif", device, execution="compile" if compile_ else "eager")
                impl = d["implementation"] + (f" (unavailable: {', '.join(d['unavailable'])})"
                                              if d.get("unavailable") else "")
            except Exception as e:
                impl = f"? ({type(e).__name__}: {e})"
            return f"{impl}, {'torch.compile' if compile_ else 'eager'}, ATan alpha=2"
        return net, rate_mse, functional.reset_net, {"spikingjelly": _dist_version("spikingjelly")}, \
            {"backend": describe, "compile": compile_, "prime": compile_}
    return build


GPU_BUILDERS = {"floor": build_floor, "spikeport": _spikeport_gpu("auto"),
                "spikeport-reference": _spikeport_gpu("reference"), "snntorch": build_snntorch_gpu,
                "spikingjelly": _spikingjelly_gpu(False), "spikingjelly-compile": _spikingjelly_gpu(True)}


# ---------------------------------------------------------------------------------------------
# Data.


def make_pool(n_batches: int, T: int, B: int, seed: int = 0):
    """Bernoulli-coded random MNIST-like batches: ~19% 'ink' pixels with intensity U(0.3, 1)
    (mean intensity ~0.12, like MNIST), encoded once; plus random labels."""
    import torch
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for _ in range(n_batches):
        ink = torch.rand(B, N_IN, generator=g) < 0.19
        p = torch.where(ink, 0.3 + 0.7 * torch.rand(B, N_IN, generator=g), torch.zeros(()))
        xs.append((torch.rand(T, B, N_IN, generator=g) < p).to(torch.float32))
        ys.append(torch.randint(0, N_OUT, (B,), generator=g))
    return xs, ys


# ---------------------------------------------------------------------------------------------
# Worker: one contender in this process.


def _apply_malloc(args) -> str:
    """``--malloc kept``: glibc keeps freed memory for reuse, as ``spikeport train`` sets it on CPU
    (train/allocator.py, loaded by path: the module needs only the standard library, so the Lava
    runtime's interpreter can load it too). Applied in every contender's process alike."""
    if getattr(args, "malloc", "kept") != "kept":
        return "glibc defaults"
    import importlib.util
    spec = importlib.util.spec_from_file_location("_spikeport_allocator", REPO / "train" / "allocator.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.keep_freed_memory()


def run_one(name: str, args, builders=None) -> dict:
    """Build contender ``name`` (from ``builders``, default BUILDERS) and measure it in this process.

    A builder returns ``(model, loss_fn, after_iter, versions, options)``; options: ``backend``
    (a description), ``prime`` (run one forward/backward before the RSS mark, e.g. to compile),
    ``layout`` (applied to each pre-encoded (T, B, 784) batch before timing).
    """
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(getattr(args, "device", "cpu"))
    cuda = device.type == "cuda"
    rec = {"contender": name, "torch": torch.__version__, "python": platform.python_version(),
           "threads": torch.get_num_threads(), "T": args.T, "batch": args.batch, "device": str(device)}
    if cuda:
        rec["gpu"] = torch.cuda.get_device_name(device)
    else:
        rec["malloc"] = _apply_malloc(args)
    try:
        torch.manual_seed(args.seed)
        model, loss_fn, after_iter, versions, options = (builders or BUILDERS)[name]()
    except NotInstalled as e:
        rec.update(status="not installed", detail=str(e))
        return rec
    rec["versions"] = versions
    model.to(device)
    model.train()
    if options.get("compile"):  # after .to(device): compile the module that runs
        model = torch.compile(model)
    rec["backend"] = options["backend"](device) if callable(options.get("backend")) else options.get("backend", "")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xs, ys = make_pool(args.pool, args.T, args.batch, args.seed)
    xs, ys = [x.to(device) for x in xs], [y.to(device) for y in ys]
    if options.get("layout") is not None:
        xs = [options["layout"](x) for x in xs]
    rec["params"] = sum(p.numel() for p in model.parameters())

    def iteration(i):
        x, y = xs[i % len(xs)], ys[i % len(ys)]
        out = model(x)
        loss = loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after_iter is not None:
            after_iter(model)
        return loss

    if options.get("prime"):
        t_prime = time.perf_counter()
        loss_fn(model(xs[0]), ys[0]).backward()
        opt.zero_grad(set_to_none=True)
        if after_iter is not None:
            after_iter(model)
        if cuda:
            torch.cuda.synchronize(device)
        rec["setup_s"] = time.perf_counter() - t_prime

    import gc
    gc.collect()
    if cuda:  # GPU memory: peak allocated by the tensors of the timed iterations, over what setup holds
        for i in range(args.warmup):
            iteration(i)
        torch.cuda.synchronize(device)
        gpu0 = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        n, t0 = 0, time.perf_counter()
        while True:
            loss = iteration(n)
            n += 1
            if n >= args.min_iters and time.perf_counter() - t0 >= args.seconds:
                torch.cuda.synchronize(device)  # the queued work is part of the time
                break
        elapsed = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(device)
        rec.update(status="ok", iters=n, seconds=elapsed, samples_per_s=n * args.batch / elapsed,
                   ms_per_iter=1000 * elapsed / n, peak_mb=max(0, peak - gpu0) / 2**20,
                   peak_method="torch.cuda.max_memory_allocated - memory_allocated after warmup",
                   final_loss=float(loss.detach()), other_cpu_cores=None)
        return rec
    rss0 = _status_kb("VmRSS")
    hwm_reset = rss0 is not None and _reset_peak_rss()
    maxrss_setup = _maxrss_kb()
    if rss0 is None:
        rss0 = maxrss_setup

    for i in range(args.warmup):
        iteration(i)
    busy0, own0 = _cpu_busy_s(), _own_cpu_s()
    n, t0 = 0, time.perf_counter()
    while True:
        loss = iteration(n)
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= args.seconds and n >= args.min_iters:
            break
    busy1, own1 = _cpu_busy_s(), _own_cpu_s()
    # CPU used by other processes during the timed window, in cores (noise from concurrent jobs)
    other = None if busy0 is None else max(0.0, ((busy1 - busy0) - (own1 - own0)) / elapsed)
    if hwm_reset:
        peak = _status_kb("VmHWM")
        method = "VmHWM after clear_refs - VmRSS after setup"
    else:
        peak = _maxrss_kb()
        method = "ru_maxrss - RSS after setup"
        if maxrss_setup > rss0:
            method += f" (setup peak was already {(maxrss_setup - rss0) / 1024:.1f} MB above)"
    rec.update(status="ok", iters=n, seconds=elapsed, samples_per_s=n * args.batch / elapsed,
               ms_per_iter=1000 * elapsed / n, rss_setup_mb=rss0 / 1024, peak_mb=max(0, peak - rss0) / 1024,
               peak_method=method, final_loss=float(loss.detach()), other_cpu_cores=other)
    return rec


# ---------------------------------------------------------------------------------------------
# Equivalence check (forward spikes and weight gradients on shared weights).


def _spikeport_ref(W1, W2, b1, b2, x, y, **spec):
    """spikeport's 784-800-10 on the shared weights: (output spikes, fc1 weight gradient, model)."""
    import torch
    from spikeport.train.losses import LossSpec
    from spikeport.train.network import NeuronSpec, build_network
    ref = build_network(f"{N_IN}-{N_HID}-{N_OUT}", NeuronSpec(model="lif", decay=DECAY, v_threshold=V_TH, **spec))
    lins = [m for m in ref.layers if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        lins[0].weight.copy_(W1); lins[1].weight.copy_(W2)
        ref.layers[1].bias.copy_(b1); ref.layers[3].bias.copy_(b2)
    out = ref(x)
    LossSpec("rate_mse")(out, y).backward()
    return out.detach(), lins[0].weight.grad, ref


def _rel(g, g_ref) -> float:
    return float((g - g_ref).norm() / g_ref.norm())


def check(args) -> None:
    import torch
    torch.manual_seed(0)
    xs, ys = make_pool(1, args.T, args.batch, 1)
    x, y = xs[0], ys[0]
    build_spikeport()  # consumes the global RNG as before, so the shared weights stay the same
    W1 = torch.randn(N_HID, N_IN) * 0.05
    W2 = torch.randn(N_OUT, N_HID) * 0.2
    b1 = torch.randn(N_HID) * 0.05
    b2 = torch.randn(N_OUT) * 0.05
    out_ref, g_ref, ref = _spikeport_ref(W1, W2, b1, b2, x, y)
    print(f"spikeport: output rate {out_ref.mean():.3f}, hidden rate "
          f"{ref(x, record=True)[1][0].mean():.3f}")
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    for name in ("snntorch", "spikingjelly", "spikingjelly-compile"):
        if name not in names:
            continue
        try:
            m, lf, after, _, _ = BUILDERS[name]()
        except NotInstalled:
            print(f"{name}: not installed")
            continue
        l1, l2 = [mm for mm in m.modules() if isinstance(mm, torch.nn.Linear)]
        with torch.no_grad():
            l1.weight.copy_(W1); l2.weight.copy_(W2); l1.bias.copy_(b1); l2.bias.copy_(b2)
        out = m(x)
        lf(out, y).backward()
        note = ""
        if name == "snntorch":  # snnTorch always detaches the reset: compare with spikeport's detach_reset=True too
            _, g_det, _ = _spikeport_ref(W1, W2, b1, b2, x, y, detach_reset=True)
            note = f", {_rel(l1.weight.grad, g_det):.2e} vs spikeport with detach_reset=True"
        print(f"{name}: output spikes differ at {int((out != out_ref).sum())} of {out.numel()}; "
              f"fc1 weight-grad relative difference {_rel(l1.weight.grad, g_ref):.2e}{note}")
        if after is not None:
            after(m)
    if "norse" in names:
        _check_norse(W1, W2, b1, b2, x, y, out_ref, g_ref)
    if "lavadl" in names:
        _check_lavadl(args, W1, W2, x, y)


def _check_norse(W1, W2, b1, b2, x, y, out_ref, g_ref) -> None:
    import torch
    try:
        m, lf, _, _, _ = build_norse()
    except NotInstalled:
        print("norse: not installed")
        return
    k = 1.0 / (1.0 - DECAY)  # Norse's forward Euler scales the input by dt/tau_mem = 0.8: weights x 1.25
    l1, l2 = [mm for mm in m.modules() if isinstance(mm, torch.nn.Linear)]
    with torch.no_grad():
        l1.weight.copy_(W1 * k); l2.weight.copy_(W2 * k); l1.bias.copy_(b1 * k); l2.bias.copy_(b2 * k)
    out = m(x)
    lf(out, y).backward()
    g = l1.weight.grad * k  # dL/dW = k dL/d(kW)
    _, g_tri, _ = _spikeport_ref(W1, W2, b1, b2, x, y, surrogate="polynomial", surrogate_width=4.0)
    print(f"norse (weights x 1.25): output spikes differ at {int((out != out_ref).sum())} of {out.numel()}; "
          f"fc1 weight-grad relative difference {_rel(g, g_ref):.2e} (spikeport's box surrogate), "
          f"{_rel(g, g_tri):.2e} (spikeport with Norse's triangle: polynomial, a = 4)")


def _check_lavadl(args, W1, W2, x, y) -> None:
    """slayer in the Lava runtime on the same weights (it has no biases: compared with spikeport's
    network without biases)."""
    import tempfile
    import numpy as np
    import torch
    py = _lava_python()
    if py is None:
        print("lavadl: not installed (no Lava runtime: spikeport lava setup)")
        return
    zeros = (torch.zeros(N_HID), torch.zeros(N_OUT))
    out_ref, g_ref, _ = _spikeport_ref(W1, W2, *zeros, x, y)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, W1=W1.numpy(), W2=W2.numpy(), x=x.numpy(), y=y.numpy())
        p = subprocess.run([py, str(LAVADL_SCRIPT), "--check-io", src, dst], capture_output=True, text=True,
                           timeout=600)
        if p.returncode != 0 or not os.path.exists(dst):
            tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
            print(f"lavadl: check failed (exit {p.returncode}): " + " | ".join(tail))
            return
        res = dict(np.load(dst))
    print(f"lavadl: compared with spikeport without biases (output rate {out_ref.mean():.3f})")
    for variant, what in (("q8", "as benchmarked, 8-bit weight hook"), ("float", "pre_hook_fx=None")):
        out, g = torch.from_numpy(res[f"{variant}_out"]), torch.from_numpy(res[f"{variant}_g1"])
        print(f"lavadl ({what}): output spikes differ at {int((out != out_ref).sum())} of {out.numel()}; "
              f"fc1 weight-grad relative difference {_rel(g, g_ref):.2e}")


# ---------------------------------------------------------------------------------------------
# Driver.


def _lava_python():
    """The Lava runtime's interpreter (the one ``spikeport lava python`` runs), or None if missing."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        from spikeport.targets import lava_env
        py = lava_env.installed_python()
    except Exception:
        return None
    return str(py) if py is not None and Path(py).exists() else None


def _worker_cmd(name: str, args) -> list:
    common = ["--seconds", str(args.seconds), "--warmup", str(args.warmup), "--min-iters", str(args.min_iters),
              "--T", str(args.T), "--batch", str(args.batch), "--pool", str(args.pool), "--seed", str(args.seed)]
    if args.threads:
        common += ["--threads", str(args.threads)]
    common += ["--malloc", getattr(args, "malloc", "kept")]
    if name == "lavadl":
        return [_lava_python(), str(LAVADL_SCRIPT)] + common
    if getattr(args, "device", "cpu") != "cpu":
        common += ["--device", args.device]
    return [sys.executable, os.path.abspath(__file__), "--only", name] + common


def _parse_result(stdout: str):
    for line in stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    return None


def _spawn(name: str, args) -> dict:
    if name == "lavadl" and _lava_python() is None:
        return {"contender": name, "status": "not installed",
                "detail": "no Lava runtime (create it with `spikeport lava setup`)"}
    try:
        p = subprocess.run(_worker_cmd(name, args), capture_output=True, text=True,
                           timeout=max(300.0, 20 * args.seconds + 300))
    except subprocess.TimeoutExpired:
        return {"contender": name, "status": "error", "detail": "timed out"}
    res = _parse_result(p.stdout)
    if res is not None:
        return res
    tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
    return {"contender": name, "status": "error", "detail": f"exit {p.returncode}: " + " | ".join(tail)}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def cpu_section(args, names) -> dict:
    """The CPU table (every contender in ``names``); returns what --json writes for it."""
    import torch
    runs = {n: [] for n in names}
    for r in range(args.repeats):
        for n in names:
            if runs[n] and runs[n][-1]["status"] != "ok":
                continue  # not installed / failed: no point repeating
            attempts = []
            for attempt in range(args.retries + 1):
                res = _spawn(n, args)
                other = res.get("other_cpu_cores")
                res["contended"] = bool(other is not None and other > args.max_other)
                attempts.append(res)
                msg = (f"{res['samples_per_s']:.0f} samples/s, peak {res['peak_mb']:.1f} MB, "
                       f"other processes {other if other is not None else float('nan'):.2f} cores"
                       if res["status"] == "ok" else res["status"])
                print(f"  round {r + 1}/{args.repeats}  {n:<21s} {msg}" + ("  [contended]" if res["contended"] else ""),
                      file=sys.stderr, flush=True)
                if res["status"] != "ok" or not res["contended"] or attempt == args.retries:
                    break
                time.sleep(args.retry_wait)  # another job is using the CPUs: wait, then run this one again
            if res["status"] == "ok":  # every attempt disturbed: keep the least disturbed one
                res = min((a for a in attempts if a["status"] == "ok"), key=lambda a: a["other_cpu_cores"] or 0.0)
            res["attempts"] = len(attempts)
            runs[n].append(res)

    summary = {}
    threads = None
    for n in names:
        ok = [x for x in runs[n] if x["status"] == "ok"]
        clean = [x for x in ok if not x["contended"]]
        contended = bool(ok) and not clean
        ok = clean or ok  # prefer rounds no other process disturbed
        if ok:
            sps = [x["samples_per_s"] for x in ok]
            summary[n] = {"status": "ok", "samples_per_s": statistics.median(sps), "samples_per_s_min": min(sps),
                          "samples_per_s_max": max(sps), "ms_per_iter": statistics.median(x["ms_per_iter"] for x in ok),
                          "peak_mb": statistics.median(x["peak_mb"] for x in ok), "rounds": len(ok),
                          "versions": ok[0].get("versions", {}), "peak_method": ok[0]["peak_method"],
                          "other_cpu_cores": max((x["other_cpu_cores"] or 0.0) for x in ok), "contended": contended,
                          "backend": ok[0].get("backend", ""), "torch": ok[0].get("torch"), "python": ok[0].get("python"),
                          "threads": ok[0]["threads"], "malloc": ok[0].get("malloc", "")}
            if "setup_s" in ok[0]:
                summary[n]["setup_s"] = [round(x["setup_s"], 1) for x in ok]
            if n != "lavadl":
                threads = ok[0]["threads"]
        else:
            last = runs[n][-1]
            summary[n] = {"status": last["status"], "detail": last.get("detail", "")}
    floor = summary.get("floor", {}).get("samples_per_s") if summary.get("floor", {}).get("status") == "ok" else None
    for n, s in summary.items():
        if s["status"] == "ok" and floor:
            s["ratio_to_floor"] = s["samples_per_s"] / floor

    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    versions = {k: v for s in summary.values() for k, v in s.get("versions", {}).items()}
    print(f"# train_throughput  {date}")
    print(f"# torch {torch.__version__}, threads {threads}, python {platform.python_version()}, "
          f"{_cpu_name()}, {os.cpu_count()} CPUs")
    print("# peers: " + (", ".join(f"{k} {v}" for k, v in versions.items()) or "none"))
    print(f"# malloc: {args.malloc} (" + "; ".join(sorted({s['malloc'] for s in summary.values() if s.get('malloc')})) + ")")
    print(f"# 784-800-10, T={args.T}, batch {args.batch}, rate-MSE, Adam; median of {args.repeats} "
          f"round(s) x {args.seconds:g} s; peak MB = peak RSS increase over post-setup RSS")
    print(f"{'contender':<21s}{'samples/s':>11s}{'ms/iter':>10s}{'ratio to floor':>16s}{'peak MB':>10s}"
          f"{'other CPU':>11s}")
    for n, s in summary.items():
        if s["status"] == "ok":
            ratio = f"{s['ratio_to_floor']:.2f}" if "ratio_to_floor" in s else "-"
            flag = " *" if s["contended"] else ""
            print(f"{n:<21s}{s['samples_per_s']:>11.0f}{s['ms_per_iter']:>10.1f}{ratio:>16s}{s['peak_mb']:>10.1f}"
                  f"{s['other_cpu_cores']:>11.2f}{flag}")
        else:
            print(f"{n:<21s}{s['status']:>11s}" + (f"   ({s['detail']})" if s["status"] != "ok" and s["detail"] else ""))
    print(f"# other CPU: cores used by other processes while timing (max over the rounds used); rounds above "
          f"{args.max_other:g} were retried{'; * = every round was disturbed, numbers unreliable' if any(s.get('contended') for s in summary.values()) else ''}")
    for n, s in summary.items():
        if s["status"] == "ok":
            env = "" if s["torch"] == torch.__version__ else f"; torch {s['torch']}, Python {s['python']}"
            setup = f"; compile/setup {', '.join(map(str, s['setup_s']))} s" if "setup_s" in s else ""
            print(f"#   {n}: {s['backend']}{env}{setup}")
    sp = summary.get("spikeport", {})
    if "ratio_to_floor" in sp:
        print(f"spikeport / floor = {sp['ratio_to_floor']:.2f} (goal >= 0.90)")
    else:
        print("spikeport / floor = n/a (goal >= 0.90)")

    return {"date": date, "torch": torch.__version__, "threads": threads, "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "settings": {k: getattr(args, k) for k in ("seconds", "warmup", "repeats", "T", "batch", "pool",
                                                       "seed", "threads", "max_other", "retries", "malloc")},
            "summary": summary, "runs": runs}


def gpu_section(args) -> dict:
    """The GPU table (``GPU_CONTENDERS``, one table per batch size of ``--gpu-batches``), or a line
    saying why it did not run. Returns what --json writes for it."""
    import torch
    if not torch.cuda.is_available():
        print("# GPU section")
        print("no CUDA device: GPU section not run")
        return {"status": "no CUDA device"}
    names = [n.strip() for n in args.gpu_contenders.split(",") if n.strip()]
    bad = [n for n in names if n not in GPU_CONTENDERS]
    if bad:
        raise SystemExit(f"unknown GPU contender(s) {bad}; choose from {GPU_CONTENDERS}")
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    try:
        import triton
        tv = triton.__version__
    except Exception as e:  # spikeport then runs its reference loop on the GPU
        tv = f"not importable ({type(e).__name__})"
    print(f"# GPU section  {date}")
    print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__} (CUDA {torch.version.cuda}), triton {tv}, "
          f"python {platform.python_version()}")
    print(f"# 784-800-10, T={args.T}, rate-MSE, Adam, arctan surrogate (ATan alpha = 2 for the peers); median of "
          f"{args.repeats} round(s) x {args.gpu_seconds:g} s; peak MB = torch.cuda.max_memory_allocated over "
          f"the timed iterations minus what is allocated after warmup")
    out = {"date": date, "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "triton": tv,
           "tables": {}}
    for batch in (int(b) for b in args.gpu_batches.split(",")):
        wargs = argparse.Namespace(**{**vars(args), "batch": batch, "seconds": args.gpu_seconds, "device": "cuda"})
        runs = {n: [] for n in names}
        for _ in range(args.repeats):
            for n in names:
                if runs[n] and runs[n][-1]["status"] != "ok":
                    continue
                if n == "lavadl":  # bench/_lavadl_throughput.py times slayer on the CPU only
                    res = ({"contender": n, "status": "not installed", "detail": "no Lava runtime"}
                           if _lava_python() is None else
                           {"contender": n, "status": "not run", "detail": "the lava-dl harness measures on CPU"})
                else:
                    res = _spawn(n, wargs)
                msg = (f"{res['samples_per_s']:.0f} samples/s, peak {res['peak_mb']:.1f} MB"
                       if res["status"] == "ok" else f"{res['status']} {res.get('detail', '')}")
                print(f"  GPU batch {batch}  {n:<21s} {msg}", file=sys.stderr, flush=True)
                runs[n].append(res)
        summary = {}
        for n in names:
            ok = [x for x in runs[n] if x["status"] == "ok"]
            if ok:
                summary[n] = {"status": "ok", "samples_per_s": statistics.median(x["samples_per_s"] for x in ok),
                              "ms_per_iter": statistics.median(x["ms_per_iter"] for x in ok),
                              "peak_mb": statistics.median(x["peak_mb"] for x in ok), "rounds": len(ok),
                              "backend": ok[0].get("backend", ""), "versions": ok[0].get("versions", {})}
                if "setup_s" in ok[0]:
                    summary[n]["setup_s"] = [round(x["setup_s"], 1) for x in ok]
            else:
                summary[n] = {"status": runs[n][-1]["status"], "detail": runs[n][-1].get("detail", "")}
        floor = summary.get("floor", {}).get("samples_per_s")
        for s in summary.values():
            if s["status"] == "ok" and floor:
                s["ratio_to_floor"] = s["samples_per_s"] / floor
        print(f"## GPU, batch {batch}")
        print(f"{'contender':<21s}{'samples/s':>11s}{'ms/iter':>10s}{'ratio to floor':>16s}{'peak GPU MB':>13s}")
        for n, s in summary.items():
            if s["status"] == "ok":
                ratio = f"{s['ratio_to_floor']:.2f}" if "ratio_to_floor" in s else "-"
                print(f"{n:<21s}{s['samples_per_s']:>11.0f}{s['ms_per_iter']:>10.2f}{ratio:>16s}{s['peak_mb']:>13.1f}")
            else:
                print(f"{n:<21s}{s['status']:>11s}   ({s['detail']})")
        for n, s in summary.items():
            if s["status"] == "ok":
                setup = f"; compile/setup {', '.join(map(str, s['setup_s']))} s" if "setup_s" in s else ""
                vers = ", ".join(f"{k} {v}" for k, v in s["versions"].items())
                print(f"#   {n}: {s['backend']}" + (f" ({vers})" if vers else "") + setup)
        sj = [s["samples_per_s"] for k, s in summary.items() if k.startswith("spikingjelly") and s["status"] == "ok"]
        sp = summary.get("spikeport", {})
        if sp.get("status") == "ok" and sj:
            print(f"spikeport / fastest SpikingJelly = {sp['samples_per_s'] / max(sj):.2f} (goal >= 1.5)")
        else:
            print("spikeport / fastest SpikingJelly = n/a (goal >= 1.5)")
        out["tables"][str(batch)] = {"summary": summary, "runs": runs}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="timed seconds per contender and round")
    ap.add_argument("--warmup", type=int, default=10, help="untimed iterations first")
    ap.add_argument("--min-iters", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the median is reported")
    ap.add_argument("--T", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--pool", type=int, default=8, help="pre-encoded batches, cycled")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--malloc", choices=("kept", "default"), default="kept",
                    help="CPU: 'kept' (default) runs every contender with the glibc setting spikeport train "
                         "uses on CPU (freed memory kept for reuse, train/allocator.py); 'default': glibc's own")
    ap.add_argument("--max-other", type=float, default=0.1,
                    help="a round during which other processes used more CPU cores than this is retried")
    ap.add_argument("--retries", type=int, default=3, help="retries of a disturbed round")
    ap.add_argument("--retry-wait", type=float, default=15.0, help="seconds to wait before a retry")
    ap.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated subset")
    ap.add_argument("--json", metavar="PATH", help="write all results as JSON")
    ap.add_argument("--sections", default="cpu,gpu",
                    help="cpu, gpu or both (the GPU section runs when torch sees a CUDA device)")
    ap.add_argument("--gpu-contenders", default=",".join(GPU_CONTENDERS), help="comma-separated subset")
    ap.add_argument("--gpu-batches", default="64,1024", help="batch sizes of the GPU section, one table each")
    ap.add_argument("--gpu-seconds", type=float, default=3.0, help="timed seconds per GPU contender and round")
    ap.add_argument("--only", choices=tuple(set(BUILDERS) | set(GPU_BUILDERS)), help=argparse.SUPPRESS)  # worker
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help=argparse.SUPPRESS)  # worker
    ap.add_argument("--check", action="store_true",
                    help="compare the peers' spikes and gradients with spikeport's on shared weights (--contenders), then exit")
    args = ap.parse_args(argv)

    if args.check:
        check(args)
        return 0
    if args.only:
        print(RESULT_TAG + json.dumps(run_one(args.only, args, GPU_BUILDERS if args.device == "cuda" else BUILDERS)),
              flush=True)
        return 0

    sections = [x.strip() for x in args.sections.split(",") if x.strip()]
    if not sections or set(sections) - {"cpu", "gpu"}:
        ap.error(f"--sections takes cpu, gpu or both, got {args.sections!r}")
    result = {}
    if "cpu" in sections:
        names = [n.strip() for n in args.contenders.split(",") if n.strip()]
        bad = [n for n in names if n not in CONTENDERS]
        if bad:
            ap.error(f"unknown contender(s) {bad}; choose from {CONTENDERS}")
        result = cpu_section(args, names)
    if "gpu" in sections:
        result["gpu"] = gpu_section(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
