"""The user-facing pipeline: trained run -> integer network -> simulator / Lava, and validation.

``NETWORK`` arguments are a training run directory (quantized on the fly with the run's ``quant``
options), an integer network file (``.npz``, ``spikeport export --format npz``) or a NIR file
(``.nir``: ours carry the exact integer network; other tools' are quantized on the fly).
"""
from __future__ import annotations

import dataclasses

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from spikeport.export.quantize import QuantSpec, attach_fake_quant, quantize_network
from spikeport.sim.network import IntNetwork
from spikeport.sim.graph import IntGraph, load_record
from spikeport.sim.simulator import simulate
from spikeport.train.config import Config
from spikeport.train.trainer import CHECKPOINT, derived_seed, encode_batch, load_run, load_test_split


def quant_spec(cfg: Config) -> QuantSpec:
    """The run's quantizer options: its ``[quant]`` section without the training switches."""
    q = cfg.quant
    return QuantSpec(**{f.name: getattr(q, f.name) for f in dataclasses.fields(QuantSpec)})


@dataclass
class Loaded:
    net: IntNetwork | IntGraph            # a chain for run directories; any graph from files
    cfg: Optional[Config] = None          # present for run directories
    model: Optional[torch.nn.Module] = None
    report: Optional[list] = None
    notes: Optional[list] = None          # what a reader approximated or a library does differently


def load_network(path, dt: Optional[float] = None, convention: str = "nir") -> Loaded:
    """A run directory (quantized with its own options), an integer network file or a NIR file
    (``dt``: seconds per step, for NIR files that do not say it)."""
    p = Path(path)
    if p.is_dir():
        if not (p / CHECKPOINT).exists():
            raise ValueError(f"{p} is neither a training run (no {CHECKPOINT}) nor a network file")
        cfg, model = load_run(p)
        net, report = quantize_network(model, quant_spec(cfg), meta={"run": str(p)})
        return Loaded(net, cfg, model, report)
    if not p.exists():
        raise ValueError(f"network {p} does not exist")
    if p.suffix == ".npz":
        return Loaded(load_record(p))
    if p.suffix in (".net", ".h5", ".hdf5"):
        from spikeport.export.netx import read_netx

        return Loaded(read_netx(p))
    if p.suffix == ".nir":
        from spikeport.export.nir import read_nir

        net, info = read_nir(p, dt=dt, convention=convention)
        return Loaded(net, report=info.get("quantization"), notes=info.get("notes"))
    raise ValueError(f"cannot read network {p}: expected a run directory, an .npz integer network, a .nir file "
                     "or a lava-dl netx file (.net, .h5)")


def encode_split(cfg: Config, samples: Optional[int] = None, data_dir=None):
    """The test split encoded exactly as ``spikeport evaluate`` does: ``(x (S, T, *shape) int8, labels)``."""
    if samples is not None and samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if data_dir is not None:
        cfg = cfg.with_overrides({"data.data_dir": str(data_dir)})
    split = load_test_split(cfg)
    n = len(split) if samples is None else min(samples, len(split))
    bs = cfg.optim.eval_batch_size
    xs, ys = [], []
    for k, start in enumerate(range(0, n, bs)):
        idx = torch.arange(start, min(start + bs, n))
        inputs, labels = split.batch(idx)
        xs.append(encode_batch(cfg, inputs, derived_seed(cfg.optim.seed, 0xE7A1, k)))
        ys.append(labels)
    x = torch.cat(xs, dim=1).transpose(0, 1).numpy()  # (S, T, *shape)
    if not np.all((x == 0) | (x == 1)):
        raise ValueError(f"encoder {cfg.data.encoder!r} gives analog inputs; the integer network takes 0/1 spikes "
                         "(use the bernoulli or events encoder for deployment)")
    return x.astype(np.int8), torch.cat(ys).numpy()


def delay_steps(net) -> int:
    """Steps the hardware timing adds between input and output: one per synaptic layer of a chain,
    the graph's ``latency`` otherwise."""
    return len(net.layers) if isinstance(net, IntNetwork) else net.latency()


def pad_for_delay(x: np.ndarray, net) -> np.ndarray:
    """Append one empty step per synaptic layer, so hardware timing delivers every output."""
    L = delay_steps(net)
    return np.concatenate([x, np.zeros((x.shape[0], L, *x.shape[2:]), dtype=x.dtype)], axis=1)


def align_delayed(out: np.ndarray, net) -> np.ndarray:
    """Hardware-timed output of a padded run ``(S, T + L, C)`` -> ``(S, T, C)`` on the input's time axis."""
    return out[:, delay_steps(net):]


def accuracy(out_spikes: np.ndarray, labels: np.ndarray, cfg: Optional[Config] = None) -> float:
    """Decode ``(S, T, C)`` spikes as the run's loss does (count or nearest target train)."""
    if cfg is None:
        pred = out_spikes.sum(1).argmax(-1)
    else:
        pred = cfg.loss.decode(torch.as_tensor(out_spikes, dtype=torch.float32).transpose(0, 1)).numpy()
    return float((pred == labels).mean())


def _float_run(model, x: np.ndarray, bs: int = 256):
    """Float model on ``x`` ``(S, T, *shape)``: output spikes ``(S, T, C)`` and each layer's firing
    rates ``(S, N)`` (float32; the spike trains themselves are not kept: for mnist-conv on 10,000
    samples they would take 11 GB)."""
    outs, rates = [], None
    with torch.no_grad():
        for s in range(0, x.shape[0], bs):
            xt = torch.as_tensor(x[s:s + bs], dtype=torch.float32).transpose(0, 1)
            out, rec = model(xt, record=True)
            outs.append(out.transpose(0, 1).numpy().astype(np.int8))
            batch = [r.reshape(r.shape[0], r.shape[1], -1).mean(0).numpy().astype(np.float32) for r in rec]
            rates = [[b] for b in batch] if rates is None else [acc + [b] for acc, b in zip(rates, batch)]
    return np.concatenate(outs), [np.concatenate(r) for r in (rates or [])]


def _integer_rates(net, x: np.ndarray, timing: str, layers: int, progress: bool, bs: int = 256):
    """The integer network (simulator) on ``x``: output spikes ``(S, T, C)`` and each layer's firing
    rates ``(S, N)``, recorded a chunk of samples at a time (u and v of every layer for all samples
    would not fit in memory for conv networks)."""
    from spikeport.sim.network import IntNetwork

    outs, rates = [], [[] for _ in range(layers)]
    chunks = range(0, x.shape[0], bs)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc=f"simulate ({timing})", unit="chunk")
    for s in chunks:
        res = simulate(net, x[s:s + bs], timing=timing, record=True)
        spikes = res.spikes if isinstance(net, IntNetwork) else [res.spikes[f"layer{i}"] for i in range(layers)]
        outs.append(res.output)
        for acc, sp in zip(rates, spikes):
            acc.append(sp.mean(1, dtype=np.float32))
    return np.concatenate(outs), [np.concatenate(r) for r in rates]


def float_layer_specs(model) -> list:
    """The float model as plain layer records for ``targets.lava.run_lava_float``."""
    from spikeport.export.quantize import block_weight, neuron_floats
    from spikeport.train.layers import Linear, Pool2d

    specs = []
    if any(getattr(n, "recurrent", False) for n in model.neuron_layers()):
        raise ValueError("the Lava float run builds feed-forward chains only (this model has recurrent layers)")
    if len(getattr(model, "skips", ())):
        raise ValueError("the Lava float run builds feed-forward chains only (this model has skip connections)")
    for i, (syn, neuron, in_shape, out_shape) in enumerate(model.blocks()):
        nf = neuron_floats(neuron)
        shared = {}
        for name in ("decay_syn", "decay_mem", "v_threshold"):
            vals = np.unique(nf[name])
            if vals.size != 1:
                raise ValueError(f"layer {i}: Lava's LIF holds one value per process; this layer has per-neuron {name}")
            shared[name] = float(vals[0])
        k = syn.kernel_size if isinstance(syn, Pool2d) else None
        specs.append(dict(kind="dense" if isinstance(syn, Linear) else "conv", weight=block_weight(syn, in_shape),
                          stride=(k, k) if k else tuple(getattr(syn, "stride", (1, 1))),
                          padding=(0, 0) if k else tuple(getattr(syn, "padding", (0, 0))),
                          bias=np.broadcast_to(nf["bias"], out_shape).reshape(-1), out_shape=tuple(out_shape),
                          **shared))
    return specs


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def validate(run_dir, samples: Optional[int] = None, lava_samples: Optional[int] = None, data_dir=None,
             progress: bool = False, net=None, protocol: Optional[dict] = None) -> dict:
    """Float, fake-quantized, integer (simulator) and Lava accuracy on the same encoded test inputs.

    Also: output-spike agreement and per-layer firing-rate correlation between the float model and
    the integer network (ideal timing, step for step), and exact agreement of simulator and Lava
    (hardware timing, inputs padded by one step per layer so late outputs are counted). ``net``
    replaces the run's own quantization (e.g. the network read back from its exported NIR file).

    ``protocol`` (``x``, ``input_bias``, ``steps``, ``reset_interval``, ``reset_offset``: the
    deployment protocol of ``simulate`` and ``deploy``) adds one more check: simulator and Lava on
    the protocol's inputs (``x`` defaults to the encoded test split, padded as above), every neuron
    group's spikes compared (``protocol_mismatches``).
    """
    loaded = load_network(run_dir)
    if loaded.cfg is None:
        raise ValueError("validate needs a training run directory (it compares against the float model)")
    cfg, model = loaded.cfg, loaded.model
    net = loaded.net if net is None else net
    x, labels = encode_split(cfg, samples, data_dir)
    rows = {}
    f_out, f_layers = _float_run(model, x)
    rows["float"] = accuracy(f_out, labels, cfg)
    attach_fake_quant(model, quant_spec(cfg))
    fq_out, _ = _float_run(model, x)
    model.fake_quant = None
    rows["fake-quantized"] = accuracy(fq_out, labels, cfg)
    timing = "hardware" if cfg.quant.synaptic_delay else "ideal"
    i_out, i_rates = _integer_rates(net, x, timing, len(f_layers), progress)
    rows[f"integer sim ({timing})"] = accuracy(i_out, labels, cfg)
    xp = pad_for_delay(x, net)
    hw = simulate(net, xp, timing="hardware")
    rows["integer sim (hardware)"] = accuracy(align_delayed(hw.output, net), labels, cfg)
    result = {"samples": int(x.shape[0]), "T": int(x.shape[1]), "accuracy": rows,
              "output_agreement": float((i_out == f_out).mean()),
              "rate_correlation": [_corr(a.ravel(), b.ravel()) for a, b in zip(f_layers, i_rates)],
              "quantization": loaded.report}
    try:
        from spikeport.targets.lava import run_lava, run_lava_float
    except ImportError as err:  # pragma: no cover - the lava extra is part of the project's environment
        result["lava_error"] = f"Lava not available: {err}"
        return result
    n = x.shape[0] if lava_samples is None else min(lava_samples, x.shape[0])
    lava = run_lava(net, xp[:n], progress=progress)
    if n < x.shape[0]:
        rows[f"integer sim (hardware, first {n})"] = accuracy(align_delayed(hw.output[:n], net), labels[:n], cfg)
    rows[f"Lava fixed_pt (first {n})"] = accuracy(align_delayed(lava.output, net), labels[:n], cfg)
    try:
        lava_f = run_lava_float(model.input_shape, float_layer_specs(model), xp[:n], progress=progress)
        rows[f"Lava floating_pt, float model (first {n})"] = accuracy(align_delayed(lava_f.output, net),
                                                                      labels[:n], cfg)
    except ValueError as err:  # per-neuron float parameters: Lava's LIF has one per process
        result["lava_float_error"] = str(err)
    result["lava_mismatches"] = int(np.count_nonzero(lava.output != hw.output[:n]))
    if protocol:
        result["protocol"] = _protocol_check(net, xp, n, dict(protocol), progress)
    return result


def _protocol_check(net, xp, n: int, protocol: dict, progress: bool) -> dict:
    """Simulator and Lava on the first ``n`` samples under a deployment protocol: spikes of every
    group compared (in stream mode the first ``n`` samples of the stream are a stream of their own)."""
    from spikeport.sim.graph import as_graph
    from spikeport.targets.lava import run_lava

    graph = as_graph(net)
    x = protocol.pop("x", None)
    if x is None and protocol.get("input_bias") is None:
        x = xp
    x = None if x is None else x[:n]
    if protocol.get("input_bias") is not None:
        protocol["input_bias"] = np.asarray(protocol["input_bias"])[:n]
    ours = simulate(graph, x, timing="hardware", record=True, **protocol)
    theirs = run_lava(graph, x, record=True, progress=progress, **protocol)
    mismatches = {g: int(np.count_nonzero(ours.spikes[g] != theirs.spikes[g])) for g in graph.groups()}
    return {"samples": int(ours.output.shape[0]), "steps": int(ours.output.shape[1]),
            "reset_interval": protocol.get("reset_interval"), "reset_offset": protocol.get("reset_offset", 0),
            "input_bias": protocol.get("input_bias") is not None,
            "spikes": int(sum(int(v.sum()) for v in ours.spikes.values())),
            "mismatches": mismatches}


def format_validation(res: dict) -> str:
    lines = [f"validation on {res['samples']} test samples, T = {res['T']}", "",
             f"{'model':42s} {'accuracy':>9s}", "-" * 52]
    for name, acc in res["accuracy"].items():
        lines.append(f"{name:42s} {100 * acc:8.2f}%")
    lines += ["", f"output spikes equal to float (step by step): {100 * res['output_agreement']:.2f}%",
              "firing-rate correlation float vs integer per layer: "
              + ", ".join("n/a" if math.isnan(c) else f"{c:.3f}" for c in res["rate_correlation"])]
    if "lava_mismatches" in res:
        lines.append(f"simulator vs Lava output spikes: {res['lava_mismatches']} mismatches")
    if "lava_error" in res:
        lines.append(res["lava_error"])
    if "protocol" in res:
        p = res["protocol"]
        how = ", ".join(filter(None, [f"reset interval {p['reset_interval']} (offset {p['reset_offset']})"
                                      if p["reset_interval"] else "", "input bias" if p["input_bias"] else ""]))
        lines.append(f"simulator vs Lava under the deployment protocol ({how or 'spikes'}; {p['samples']} samples x "
                     f"{p['steps']} steps, {p['spikes']} spikes): {sum(p['mismatches'].values())} mismatches")
    if res.get("quantization"):
        lines += ["", "quantization per layer (relative error, clipped values):"]
        for r in res["quantization"]:
            lines.append(f"  {r['layer']} {r['kind']:8s} scale {r['scale']:9.2f} exp {r['weight_exp']}  "
                         f"w {r['weights']['rel_error']:.4f} ({r['weights']['clipped']})  "
                         f"vth {r['v_threshold']['rel_error']:.4f} ({r['v_threshold']['clipped']})  "
                         f"bias {r['bias']['rel_error']:.4f} ({r['bias']['clipped']})  "
                         f"dv {r['decay_mem']['rel_error']:.4f}")
    return "\n".join(lines)


def write_json(path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=2))


def train_or_reuse(cfg: Config, out: Path, name: str, progress: bool = True, log=print, step: str = "") -> list:
    """Train ``cfg`` into ``out`` (QAT attached when the configuration asks for it), resuming a
    killed run, or reuse ``out`` when it already holds every epoch; returns the epoch records."""
    from spikeport.train.trainer import METRICS, train

    done = out / METRICS
    if done.exists() and len(json.loads(done.read_text())["epochs"]) >= cfg.optim.epochs:
        log(f"{step}training: {out} already holds {cfg.optim.epochs} epochs, reusing it")
    else:
        log(f"{step}training {name} ({'QAT' if cfg.quant.qat else 'float'}, {cfg.optim.epochs} epochs) -> {out}")
        train(cfg, out, resume=(out / CHECKPOINT).exists(), progress=progress, log=log,
              fake_quant=lambda m: attach_fake_quant(m, quant_spec(cfg)))
    return json.loads(done.read_text())["epochs"]


def run_pipeline(preset: str, out_dir, overrides: Optional[dict] = None, lava_samples: Optional[int] = 100,
                 dt: float = 1e-3, progress: bool = True, log=print) -> dict:
    """The whole path on one preset: train (resumable), export NIR, read the NIR file back,
    simulate it bit-accurately, run it in Lava, and validate against the float model."""
    import time

    from spikeport.export.nir import read_nir, write_nir
    from spikeport.train.config import make_config

    out = Path(out_dir)
    cfg = make_config(preset, overrides=overrides)
    t0 = time.perf_counter()
    train_or_reuse(cfg, out, preset, progress, log, step="[1/4] ")
    loaded = load_network(out)
    if cfg.quant.qat:
        attach_fake_quant(loaded.model, quant_spec(cfg))
    nir_path = out / "network.nir"
    write_nir(nir_path, loaded.model, loaded.net, dt)
    net = read_nir(nir_path)[0]
    if not any(k.endswith("_rec") or "_skip_" in k for k in net.nodes):
        net = net.to_chain("the pipeline's validation")
    log(f"[2/4] exported {nir_path} (dt = {dt:g} s) and read it back")
    log(f"[3/4] simulating the NIR network bit-accurately and running it in Lava ({lava_samples} samples)")
    res = validate(out, lava_samples=lava_samples, progress=progress, net=net)
    res["seconds"] = time.perf_counter() - t0
    res["nir"] = str(nir_path)
    write_json(out / "validation.json", res)
    log("[4/4] validation\n")
    log(format_validation(res))
    return res
