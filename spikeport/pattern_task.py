"""The built-in spike-pattern task, end to end: learn to emit given output trains, deploy to Lava.

Preset ``digits-patterns``: each 8x8 digit (Bernoulli-coded) asks the ten output neurons for its
own fixed spike pattern (``train.patterns.digit_patterns``: a table of ten patterns, no spike in
the first two steps). The network trains with the van Rossum loss against the pattern of its
label, with quantization-aware training and Loihi's one-step delay per synaptic layer, so the
integer network in Lava's timing emits the trains the float model learned, step for step.

``run_pattern_task`` trains (resumable), quantizes, runs the test split in the bit-accurate
simulator and its first ``lava_samples`` in Lava ``fixed_pt``, and reports per model (float,
fake-quantized, integer, Lava) the mean van Rossum distance to the target pattern (and, for scale,
that of a silent output), the fraction of samples whose output is nearest to their own pattern,
the target spikes emitted at the exact step and within one step, the spurious spikes, and the
simulator-vs-Lava mismatches (0 expected).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

PRESET = "digits-patterns"


def spike_match(out: np.ndarray, target: np.ndarray, tolerance: int = 0) -> tuple[float, float]:
    """Recall and precision of spikes ``(S, T, C)``: the fraction of target spikes with an output
    spike of the same neuron within ``tolerance`` steps, and of output spikes with a target spike
    within ``tolerance`` steps."""
    def near(a, b):  # spikes of a with a spike of b within the tolerance
        hit = np.zeros_like(b, dtype=bool)
        T = b.shape[1]
        for d in range(-tolerance, tolerance + 1):
            lo, hi = max(0, d), min(T, T + d)
            hit[:, lo - d:hi - d] |= b[:, lo:hi].astype(bool)
        n = int(a.sum())
        return float((a.astype(bool) & hit).sum() / n) if n else float("nan")
    return near(target, out), near(out, target)


def pattern_metrics(out: np.ndarray, labels: np.ndarray, cfg) -> dict:
    """Distances and spike matches of outputs ``(S, T, C)`` against the label's pattern."""
    from spikeport.train.losses import van_rossum_distance

    o = torch.as_tensor(out, dtype=torch.float32).transpose(0, 1)  # (T, S, C)
    T, S, C = o.shape
    y = cfg.loss.target(torch.as_tensor(labels), T, C)
    vr = van_rossum_distance(o, y, cfg.loss.tau)
    rec0, prec0 = spike_match(out, y.transpose(0, 1).numpy(), 0)
    rec1, prec1 = spike_match(out, y.transpose(0, 1).numpy(), 1)
    return {"van_rossum": float(vr.mean()),
            "van_rossum_silent": float(van_rossum_distance(torch.zeros_like(o), y, cfg.loss.tau).mean()),
            "nearest_pattern_is_own": float((cfg.loss.decode(o).numpy() == labels).mean()),
            "patterns_exact": float((o == y).all(0).all(-1).float().mean()),
            "recall_exact": rec0, "recall_within_1": rec1, "precision_exact": prec0, "precision_within_1": prec1,
            "output_spikes_per_sample": float(o.sum() / S), "target_spikes_per_sample": float(y.sum() / S)}


def run_pattern_task(out_dir, overrides: Optional[dict] = None, lava_samples: int = 20, progress: bool = False,
                     log=print) -> dict:
    """Train ``digits-patterns`` (QAT) into ``out_dir`` (or reuse it), deploy, and report; the
    result is also written to ``out_dir/patterns.json``."""
    from spikeport.export.quantize import attach_fake_quant
    from spikeport.pipeline import _float_run, encode_split, load_network, quant_spec, train_or_reuse
    from spikeport.sim.simulator import simulate
    from spikeport.train.config import make_config

    out = Path(out_dir)
    cfg = make_config(PRESET, overrides=overrides)
    if not (cfg.quant.qat and cfg.quant.synaptic_delay):
        raise ValueError("the pattern task deploys the trained trains step for step: it needs quant.qat and "
                         f"quant.synaptic_delay (got qat={cfg.quant.qat}, synaptic_delay={cfg.quant.synaptic_delay})")
    t0 = time.perf_counter()
    train_seconds = sum(e["seconds"] for e in train_or_reuse(cfg, out, PRESET, progress, log))
    loaded = load_network(out)
    cfg, model, net = loaded.cfg, loaded.model, loaded.net
    x, labels = encode_split(cfg)  # (S, T, 64) 0/1
    f_out, _ = _float_run(model, x)
    attach_fake_quant(model, quant_spec(cfg))
    fq_out, _ = _float_run(model, x)
    model.fake_quant = None
    sim = simulate(net, x, timing="hardware").output  # Lava's timing, as trained (synaptic_delay)
    res = {"preset": PRESET, "overrides": overrides or {}, "samples": int(x.shape[0]), "T": int(x.shape[1]),
           "train_seconds": train_seconds,
           "float": pattern_metrics(f_out, labels, cfg), "fake_quantized": pattern_metrics(fq_out, labels, cfg),
           "integer": pattern_metrics(sim, labels, cfg),
           "integer_equal_to_fake_quantized": float((sim == fq_out).mean())}
    n = min(int(lava_samples), x.shape[0])
    if n > 0:
        from spikeport.targets.lava import run_lava

        lava = run_lava(net, x[:n]).output
        res["lava_samples"] = n
        res["lava"] = pattern_metrics(lava, labels[:n], cfg)
        res["integer_first_n"] = pattern_metrics(sim[:n], labels[:n], cfg)
        res["lava_mismatches"] = int(np.count_nonzero(lava != sim[:n]))
        res["lava_output_spikes"] = int(lava.sum())
    res["seconds"] = time.perf_counter() - t0
    (out / "patterns.json").write_text(json.dumps(res, indent=2))
    return res


def format_report(res: dict) -> str:
    rows = [("float", res["float"]), ("fake-quantized (QAT forward)", res["fake_quantized"]),
            ("integer (simulator, Lava timing)", res["integer"])]
    if "lava" in res:
        rows += [(f"integer, first {res['lava_samples']}", res["integer_first_n"]),
                 (f"Lava fixed_pt, first {res['lava_samples']}", res["lava"])]
    L = [f"spike-pattern task ({res['preset']}): {res['samples']} test samples, T = {res['T']}", "",
         f"{'model':34s} {'van Rossum':>10s} {'silent':>7s} {'own nearest':>11s} {'exact':>6s} "
         f"{'recall':>7s} {'+-1':>5s} {'precision':>9s} {'+-1':>5s}", "-" * 102]
    for name, m in rows:
        L.append(f"{name:34s} {m['van_rossum']:10.4f} {m['van_rossum_silent']:7.4f} "
                 f"{100 * m['nearest_pattern_is_own']:10.1f}% {100 * m['patterns_exact']:5.1f}% "
                 f"{100 * m['recall_exact']:6.1f}% {100 * m['recall_within_1']:4.0f}% "
                 f"{100 * m['precision_exact']:8.1f}% {100 * m['precision_within_1']:4.0f}%")
    L += ["", f"integer output spikes equal to the fake-quantized model's: {100 * res['integer_equal_to_fake_quantized']:.2f}%"]
    if "lava" in res:
        L.append(f"simulator vs Lava output spikes: {res['lava_mismatches']} mismatches "
                 f"({res['lava_output_spikes']} Lava output spikes)")
    return "\n".join(L)
