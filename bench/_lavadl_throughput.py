#!/usr/bin/env python
"""lava-dl slayer's side of ``bench/train_throughput.py``: runs in the Lava runtime and prints JSON.

Run by ``train_throughput.py`` (contender ``lavadl``) with the Lava runtime's interpreter, or by
hand: ``spikeport lava python bench/_lavadl_throughput.py [--seconds 6]``. The runtime is Python
3.10 with lava-dl 0.6 and the torch 2.3 it pins (CPU here), so the figure is reported with that
torch. Same workload and harness as the other contenders (``train_throughput.run_one``: pre-encoded
Bernoulli batches, warm-up, timed whole iterations, peak RSS over the post-setup RSS, CPU used by
other processes); one line ``@@RESULT@@ {json}`` on stdout.

The model, as slayer's users write it: two ``slayer.block.cuba.Dense`` blocks, 784-800-10, input
and output in slayer's (batch, channels, time) layout, loss = rate MSE over the time axis, Adam.
Neuron: ``threshold=0.5, current_decay=1.0, voltage_decay=0.8`` so that slayer's CUBA neuron

    u[t] = (1 - 1.0) u[t-1] + x[t] = x[t],   v[t] = (1 - 0.8) v[t-1] + u[t],   s = v >= 0.5,   v *= 1 - s

is STBP's LIF, as closely as slayer allows. What differs from STBP (and spikeport):
  * slayer simulates Loihi's fixed point even in training: states in units of 1/4096 (state scale
    ``scale * 64``, ``scale`` = 64; inputs truncated toward zero), decays in 12 bits (0.8 ->
    3277/4096, so v keeps 819/4096 = 0.19995 instead of 0.2) with an arithmetic shift; the CPU path
    is a Python time loop in int64;
  * spike on ``v >= threshold + 0.01/4096`` (STBP: ``v > threshold``);
  * surrogate: slayer's only one, ``scale_rho / (2 tau_rho) exp(-|v - th| / tau_rho)``; with
    ``tau_grad=0.01, scale_grad=10`` (tau_rho = 0.5, scale_rho = 1) it has the box's peak 1 and area 1;
  * the reset's gradient: slayer's leaky-integrator backward ignores the reset (the voltage gradient
    always flows back through the decay), where STBP differentiates it;
  * no synaptic bias (slayer's Dense synapse has none): 810 parameters fewer;
  * slayer's blocks quantize weights to 8 bits during training by default (``pre_hook_fx``, kept
    here as slayer's users get it); ``delay_shift=False`` so outputs are not delayed a step.

``--check-io IN OUT``: load W1, W2, x (T, B, 784), y from IN (.npz), run forward and backward with
those weights twice (as benchmarked, and with ``pre_hook_fx=None``) and write the output spikes
(T, B, 10) and fc1's weight gradient to OUT (``train_throughput.py --check`` compares them).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_throughput as tt  # noqa: E402  (the shared harness; needs only torch and the stdlib)

NEURON = dict(threshold=tt.V_TH, current_decay=1.0, voltage_decay=1.0 - tt.DECAY, tau_grad=0.01, scale_grad=10.0,
              requires_grad=False)


def rate_mse_nct(o, labels):
    """Rate MSE on slayer's (batch, class, time) output: the same loss as ``tt.rate_mse``."""
    import torch.nn.functional as F
    return ((o.mean(-1) - F.one_hot(labels, o.shape[1]).to(o.dtype)) ** 2).mean()


def to_nct(x):
    return x.permute(1, 2, 0).contiguous()  # (T, B, C) -> (B, C, T)


def build_slayer(quantize_weights: bool = True):
    try:
        from lava.lib.dl import slayer
    except Exception as e:
        raise tt.NotInstalled(f"{type(e).__name__}: {e}")
    import torch

    extra = {} if quantize_weights else {"pre_hook_fx": None}

    class Net(torch.nn.Module):  # the shape of lava-dl's tutorials (blocks in a ModuleList)
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([
                slayer.block.cuba.Dense(NEURON, tt.N_IN, tt.N_HID, delay_shift=False, **extra),
                slayer.block.cuba.Dense(NEURON, tt.N_HID, tt.N_OUT, delay_shift=False, **extra),
            ])

        def forward(self, spike):
            for block in self.blocks:
                spike = block(spike)
            return spike

    versions = {"lava-dl": tt._dist_version("lava-dl"), "lava-nc": tt._dist_version("lava-nc")}
    options = {"backend": "slayer cuba.Dense, CPU path (Python time loop, int64 fixed point)", "layout": to_nct}
    return Net(), rate_mse_nct, None, versions, options


def check_io(src: str, dst: str) -> None:
    import numpy as np
    import torch
    data = np.load(src)
    x = to_nct(torch.from_numpy(data["x"]))
    y = torch.from_numpy(data["y"]).long()
    res = {}
    for variant, quantize in (("q8", True), ("float", False)):
        net, loss_fn, _, _, _ = build_slayer(quantize)
        w = [b.synapse.weight for b in net.blocks]
        with torch.no_grad():
            w[0].copy_(torch.from_numpy(data["W1"]).reshape(w[0].shape))
            w[1].copy_(torch.from_numpy(data["W2"]).reshape(w[1].shape))
        out = net(x)
        loss_fn(out, y).backward()
        res[f"{variant}_out"] = out.detach().permute(2, 0, 1).numpy()  # (T, B, 10)
        res[f"{variant}_g1"] = w[0].grad.reshape(tt.N_HID, tt.N_IN).numpy()
    np.savez(dst, **res)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--min-iters", type=int, default=5)
    ap.add_argument("--T", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--pool", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--malloc", choices=("kept", "default"), default="kept")
    ap.add_argument("--check-io", nargs=2, metavar=("IN", "OUT"))
    args = ap.parse_args(argv)
    if args.check_io:
        check_io(*args.check_io)
        return 0
    rec = tt.run_one("lavadl", args, builders={"lavadl": build_slayer})
    print(tt.RESULT_TAG + json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
