"""STBP training loop: data, encoding, optimisation, checkpoints, resume, data-parallel.

Determinism and resume
    Every random choice is derived from ``(seed, epoch, step)``: the sample order of an epoch, the
    Bernoulli encoding of a batch, and dropout masks. A checkpoint stores the model, optimizer and
    schedule state and the position ``(epoch, step)``; a resumed run recomputes the same batches
    from there, so a run killed and resumed ends with the same weights as an uninterrupted one.
    Checkpoints are written to a temporary file and renamed (atomic on POSIX).

Data parallel
    Under ``torchrun`` (``WORLD_SIZE > 1``) every process builds the same global batch, takes its
    share ``batch[rank::world]`` and trains a DistributedDataParallel replica (gloo on CPU, NCCL on
    GPU). Gradients are averaged over equal shares, so the update equals single-process training
    on the global batch up to floating-point reordering (dropout masks differ per process).

Run directory
    ``config.json`` (resolved configuration), ``checkpoint.pt`` (latest state), ``metrics.json``
    (per-epoch metrics, ``test_accuracy`` of the last epoch).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from .config import Config
from .datasets import Split, load_dataset
from .encoders import encode
from .network import SpikingNetwork, build_network

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
CONFIG = "config.json"

_SEED_STRIDE = 1_000_003  # keeps (seed, epoch, step) -> seed derivations distinct


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and machines)."""
    s = 0
    for p in parts:
        s = (s * _SEED_STRIDE + int(p) + 1) % (2 ** 63 - 1)
    return s


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    _atomic_write_bytes(Path(path), lambda f: f.write(json.dumps(obj, indent=2).encode()))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def load_splits(cfg: Config) -> tuple[Split, Split]:
    d = cfg.data
    train = load_dataset(d.dataset, d.data_dir, "train")
    if d.train_samples:
        train = train.subset(d.train_samples)
    return train, load_test_split(cfg)


def load_test_split(cfg: Config) -> Split:
    test = load_dataset(cfg.data.dataset, cfg.data.data_dir, "test")
    return test.subset(cfg.data.test_samples) if cfg.data.test_samples else test


def make_model(cfg: Config, input_shape=None) -> SpikingNetwork:
    torch.manual_seed(derived_seed(cfg.optim.seed, 0xC0FFEE))  # weight init
    model = build_network(cfg.network, cfg.neuron, input_shape, synaptic_delay=cfg.quant.synaptic_delay)
    if cfg.init_gain != 1.0:
        with torch.no_grad():
            for syn, *_ in model.blocks():
                if hasattr(syn, "weight"):
                    syn.weight.mul_(cfg.init_gain)
    return model


def encode_batch(cfg: Config, inputs, seed: int) -> torch.Tensor:
    """Encode one batch; the randomness (Bernoulli) comes from ``seed`` only."""
    gen = torch.Generator().manual_seed(seed)
    opts = {}
    if cfg.data.encoder == "events":
        opts["duration_us"] = cfg.data.event_duration_us
    return encode(cfg.data.encoder, inputs, cfg.data.T, generator=gen, **opts)


@torch.no_grad()
def evaluate_model(model: SpikingNetwork, cfg: Config, split: Split, device, progress: bool = False) -> dict:
    """Accuracy and loss of ``model`` on ``split`` (encoding seeded by the configuration's seed)."""
    from tqdm.auto import tqdm

    model.eval()
    loss_fn = cfg.loss
    n, correct, loss_sum = len(split), 0, 0.0
    bs = cfg.optim.eval_batch_size
    starts = range(0, n, bs)
    for k, start in enumerate(tqdm(starts, desc="evaluate", leave=False, disable=not progress)):
        idx = torch.arange(start, min(start + bs, n))
        inputs, labels = split.batch(idx)
        x = encode_batch(cfg, inputs, derived_seed(cfg.optim.seed, 0xE7A1, k)).to(device)
        labels = labels.to(device)
        out = model(x)  # (T, B, C)
        loss_sum += float(loss_fn(out, labels)) * len(idx)
        correct += int((loss_fn.decode(out) == labels).sum())
    return {"accuracy": correct / max(n, 1), "loss": loss_sum / max(n, 1), "samples": n}


def _optimizer(cfg: Config, params):
    o = cfg.optim
    if o.optimizer == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.optimizer == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    raise ValueError(f"unknown optimizer {o.optimizer!r}; choose adam, adamw or sgd")


def _lr_factor(cfg: Config, total_steps: int):
    if cfg.optim.schedule == "none":
        return lambda step: 1.0
    if cfg.optim.schedule == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    raise ValueError(f"unknown schedule {cfg.optim.schedule!r}; choose cosine or none")


class _Dist:
    """Process-group facts; a single process when not launched by torchrun."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def train(cfg: Config, out_dir, resume: bool = False, progress: bool = True, log=print,
          fake_quant=None) -> dict:
    """Train ``cfg`` into ``out_dir``; returns the metrics record (also in ``out_dir/metrics.json``).

    With ``resume=True`` and a checkpoint in ``out_dir``, continues from it (the configuration
    must match the saved one except for ``optim.epochs``, which may grow). ``fake_quant`` is a
    callable ``model -> model`` that attaches fake quantization (required when ``quant.qat``;
    ``spikeport train`` passes ``export.quantize.attach_fake_quant``).
    """
    if cfg.quant.qat and fake_quant is None:
        raise ValueError("quant.qat needs a fake quantizer: train through `spikeport train` or pass "
                         "fake_quant=export.quantize attach function")
    from tqdm.auto import tqdm

    out = Path(out_dir)
    dd = _Dist()
    device = resolve_device(cfg.optim.device, dd.local_rank)
    if dd.world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.optim.batch_size % dd.world:
        raise ValueError(f"optim.batch_size={cfg.optim.batch_size} must be divisible by the "
                         f"number of processes ({dd.world})")
    ckpt_path = out / CHECKPOINT
    state = None
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu")
        saved = Config.from_dict(state["config"])
        if saved.with_overrides({"optim.epochs": cfg.optim.epochs}) != cfg:
            diff = _config_diff(saved.to_dict(), cfg.to_dict())
            raise ValueError(f"cannot resume {out}: configuration differs from the saved run ({diff})")
    if dd.main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / CONFIG, cfg.to_dict())

    train_split, test_split = load_splits(cfg)
    model = make_model(cfg, train_split.input_shape).to(device)
    if cfg.quant.qat:
        model = fake_quant(model)
    opt = _optimizer(cfg, model.parameters())
    per_rank = cfg.optim.batch_size // dd.world
    steps_per_epoch = len(train_split) // cfg.optim.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"training set of {len(train_split)} samples is smaller than one batch "
                         f"({cfg.optim.batch_size})")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(cfg, cfg.optim.epochs * steps_per_epoch))
    history, epoch0, step0 = [], 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        sched.lr_lambdas[0] = _lr_factor(cfg, cfg.optim.epochs * steps_per_epoch)
        history, epoch0, step0 = state["history"], state["epoch"], state["step"]
        if dd.main:
            log(f"resuming {out} at epoch {epoch0 + 1}, step {step0}")
    net = model
    if dd.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    def save(epoch: int, step: int):
        if dd.main:
            payload = {"config": cfg.to_dict(), "model": model.state_dict(), "optimizer": opt.state_dict(),
                       "scheduler": sched.state_dict(), "epoch": epoch, "step": step, "history": history}
            _atomic_write_bytes(ckpt_path, lambda f: torch.save(payload, f))

    seed = cfg.optim.seed
    for epoch in range(epoch0, cfg.optim.epochs):
        model.train()
        order = torch.randperm(len(train_split), generator=torch.Generator().manual_seed(derived_seed(seed, epoch)))
        t0, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
        first = step0 if epoch == epoch0 else 0
        bar = tqdm(range(first, steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", leave=False,
                   disable=not (progress and dd.main), file=sys.stderr)
        for step in bar:
            idx = order[step * cfg.optim.batch_size:(step + 1) * cfg.optim.batch_size]
            inputs, labels = train_split.batch(idx)
            x = encode_batch(cfg, inputs, derived_seed(seed, epoch, step))  # (T, B, *F), global batch
            x, labels = x[:, dd.rank::dd.world].to(device), labels[dd.rank::dd.world].to(device)
            torch.manual_seed(derived_seed(seed, epoch, step, dd.rank))  # dropout masks
            out_spikes = net(x)
            loss = cfg.loss(out_spikes, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            opt.step()
            sched.step()
            loss_sum += float(loss) * per_rank
            correct += int((cfg.loss.decode(out_spikes.detach()) == labels).sum())
            seen += per_rank
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}")
            if cfg.optim.checkpoint_every and (step + 1) % cfg.optim.checkpoint_every == 0 \
                    and step + 1 < steps_per_epoch:
                save(epoch, step + 1)
        bar.close()
        if dd.world > 1:
            totals = torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=device)
            dist.all_reduce(totals)
            loss_sum, correct, seen = totals.tolist()
        seconds = time.perf_counter() - t0
        record = {"epoch": epoch + 1, "lr": sched.get_last_lr()[0],
                  "train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
                  "seconds": seconds, "samples_per_s": seen / seconds if seconds > 0 else None}
        if dd.main:
            ev = evaluate_model(model, cfg, test_split, device)
            record.update(test_loss=ev["loss"], test_accuracy=ev["accuracy"])
            history.append(record)
            save(epoch + 1, 0)
            write_json(out / METRICS, _metrics(cfg, history, train_split, test_split))
            log(f"epoch {epoch + 1:3d}/{cfg.optim.epochs}  loss {record['train_loss']:.4f}  "
                f"train {100 * record['train_accuracy']:.2f}%  test {100 * record['test_accuracy']:.2f}%  "
                f"({seconds:.1f} s, {record['samples_per_s']:.0f} samples/s)")
        if dd.world > 1:
            dist.barrier()
    if dd.main and not history:
        raise ValueError(f"nothing to train: {out} already holds {cfg.optim.epochs} epochs")
    metrics = _metrics(cfg, history, train_split, test_split) if dd.main else {}
    if dd.world > 1:
        dist.destroy_process_group()
    return metrics


def _metrics(cfg: Config, history: list, train_split: Split, test_split: Split) -> dict:
    last = history[-1]
    return {"network": cfg.network, "dataset": cfg.data.dataset, "train_samples": len(train_split),
            "test_samples": len(test_split), "epochs": history, "test_accuracy": last["test_accuracy"],
            "best_test_accuracy": max(h["test_accuracy"] for h in history)}


def _config_diff(a: dict, b: dict, prefix: str = "") -> str:
    diffs = []
    for k in a:
        if isinstance(a[k], dict):
            d = _config_diff(a[k], b.get(k, {}), f"{prefix}{k}.")
            if d:
                diffs.append(d)
        elif a[k] != b.get(k) and f"{prefix}{k}" != "optim.epochs":
            diffs.append(f"{prefix}{k}: saved {a[k]!r}, now {b.get(k)!r}")
    return "; ".join(diffs)


def load_run(run_dir, device: str = "cpu") -> tuple[Config, SpikingNetwork]:
    """Configuration and trained model of a run directory (weights from its latest checkpoint)."""
    run = Path(run_dir)
    path = run / CHECKPOINT
    if not path.exists():
        raise ValueError(f"{run} is not a training run: {CHECKPOINT} is missing")
    state = torch.load(path, map_location="cpu")
    cfg = Config.from_dict(state["config"])
    model = make_model(cfg)
    model.load_state_dict(state["model"])
    return cfg, model.to(device).eval()


def evaluate(run_dir, data_dir=None, device: str = "auto", progress: bool = True) -> dict:
    """Test-split accuracy of a trained run."""
    cfg, model = load_run(run_dir)
    if data_dir is not None:
        cfg = cfg.with_overrides({"data.data_dir": str(data_dir)})
    dev = resolve_device(device)
    test_split = load_test_split(cfg)
    return evaluate_model(model.to(dev), cfg, test_split, dev, progress=progress)
