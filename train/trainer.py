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
    (per-epoch metrics, ``test_accuracy`` of the last epoch). ``config.json`` is written with the
    first checkpoint (just before it), not at start: a run killed before its first checkpoint leaves
    the directory as it found it. A non-empty directory is trained into only when it is a run of
    the same configuration, or when told to resume (the checkpoint's configuration must match) or
    to overwrite (the run's own three files are removed first; nothing else is touched).

Checkpoints are data, not code
    ``checkpoint.pt`` holds only tensors and plain containers (the configuration as a dict, the
    optimizer and schedule state, integers ``epoch``/``step``, the metrics history): there is no RNG
    state to keep, since every random choice is derived from the seed. It is read with
    ``torch.load(weights_only=True)``, which refuses anything else instead of running it, and then
    checked (``read_checkpoint``): structure, configuration, finite parameters.
"""
from __future__ import annotations

import gc
import json
import math
import os
import sys
import time
import zipfile
from pathlib import Path

import torch
import torch.distributed as dist

from .allocator import keep_freed_memory
from .config import DEVICE, Config
from .datasets import Split, load_dataset
from .encoders import encode, encoded_shape
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
    if not isinstance(name, str) or not DEVICE.match(name):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but there are {torch.cuda.device_count()} CUDA devices")
    return device


def load_splits(cfg: Config) -> tuple[Split, Split]:
    d = cfg.data
    train = load_dataset(d.dataset, d.data_dir, "train")
    if d.train_samples is not None:
        train = train.subset(d.train_samples)
    if len(train) == 0:
        raise ValueError(f"the {d.dataset} training split is empty ({d.data_dir or 'built in'})")
    return train, load_test_split(cfg)


def load_test_split(cfg: Config) -> Split:
    test = load_dataset(cfg.data.dataset, cfg.data.data_dir, "test")
    if cfg.data.test_samples is not None:
        test = test.subset(cfg.data.test_samples)
    if len(test) == 0:
        raise ValueError(f"the {cfg.data.dataset} test split is empty ({cfg.data.data_dir or 'built in'})")
    return test


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
          fake_quant=None, overwrite: bool = False) -> dict:
    """Train ``cfg`` into ``out_dir``; returns the metrics record (also in ``out_dir/metrics.json``).

    With ``resume=True`` and a checkpoint in ``out_dir``, continues from it (the configuration
    must match the saved one except for ``optim.epochs``, which may grow). A non-empty ``out_dir``
    that is not a run of ``cfg`` is refused unless ``resume`` or ``overwrite`` (see
    ``prepare_run_dir``). ``fake_quant`` is a callable ``model -> model`` that attaches fake
    quantization (required when ``quant.qat``; ``spikeport train`` passes
    ``export.quantize.attach_fake_quant``).
    """
    if cfg.quant.qat and fake_quant is None:
        raise ValueError("quant.qat needs a fake quantizer: train through `spikeport train` or pass "
                         "fake_quant=export.quantize attach function")
    from tqdm.auto import tqdm

    out = Path(out_dir)
    dd = _Dist()
    device = resolve_device(cfg.optim.device, dd.local_rank)
    if device.type == "cpu":  # the iteration's buffers stay in the heap (train/allocator.py)
        keep_freed_memory()
    if dd.world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.optim.batch_size % dd.world:
        raise ValueError(f"optim.batch_size={cfg.optim.batch_size} must be divisible by the "
                         f"number of processes ({dd.world})")
    if cfg.optim.epochs == 0:
        raise ValueError("optim.epochs is 0: nothing to train")
    ckpt_path = out / CHECKPOINT
    state = prepare_run_dir(out, cfg, resume=resume, overwrite=overwrite, remove=dd.main)
    if dd.main:
        out.mkdir(parents=True, exist_ok=True)

    train_split, test_split = load_splits(cfg)
    model = make_model(cfg, encoded_shape(cfg.data.encoder, train_split.input_shape)).to(device)
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
        _load_states(ckpt_path, [("model", model, state["model"]), ("optimizer", opt, state["optimizer"]),
                                 ("schedule", sched, state["scheduler"])])
        sched.lr_lambdas[0] = _lr_factor(cfg, cfg.optim.epochs * steps_per_epoch)
        history, epoch0, step0 = state["history"], state["epoch"], state["step"]
        if step0 >= steps_per_epoch:
            raise ValueError(f"{ckpt_path}: saved position step {step0} lies beyond the {steps_per_epoch} "
                             "steps of an epoch")
        if dd.main:
            log(f"resuming {out} at epoch {epoch0 + 1}, step {step0}")
    net = model
    if dd.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    config_written = False

    def save(epoch: int, step: int):
        nonlocal config_written
        if dd.main:
            if not config_written:  # with the first checkpoint: a run killed before it leaves no trace
                write_json(out / CONFIG, cfg.to_dict())
                config_written = True
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
            loss_sum += float(loss.detach()) * per_rank
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
        # Drop the DDP wrapper (its reducer holds the gloo group's last work objects) before the group
        # goes: left to interpreter shutdown, gloo's threads then aborted the process now and then
        # ("terminate called without an active exception", about 1 run in 10 under load).
        del net
        gc.collect()
        dist.destroy_process_group()
    return metrics


def _metrics(cfg: Config, history: list, train_split: Split, test_split: Split) -> dict:
    last = history[-1]
    return {"network": cfg.network, "dataset": cfg.data.dataset, "train_samples": len(train_split),
            "test_samples": len(test_split), "epochs": history, "test_accuracy": last["test_accuracy"],
            "best_test_accuracy": max(h["test_accuracy"] for h in history)}


def _config_diff(a: dict, b: dict, prefix: str = "", skip=("optim.epochs",)) -> str:
    diffs = []
    for k in a:
        if isinstance(a[k], dict):
            d = _config_diff(a[k], b.get(k, {}), f"{prefix}{k}.", skip)
            if d:
                diffs.append(d)
        elif a[k] != b.get(k) and f"{prefix}{k}" not in skip:
            diffs.append(f"{prefix}{k}: saved {a[k]!r}, now {b.get(k)!r}")
    return "; ".join(diffs)


MAX_CHECKPOINT_BYTES = 4 << 30
"""Largest checkpoint read, as the sum of the sizes its zip archive declares (4 GiB; the
mnist-conv preset's checkpoint is about 2 MB)."""

_STATE_TYPES = {"config": dict, "model": dict, "optimizer": dict, "scheduler": dict, "epoch": int, "step": int,
                "history": list}


def _unpickling_problem(exc: BaseException) -> str:
    """One line out of torch's multi-line refusal (the line that names the refused global)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    named = [ln for ln in lines if any(w in ln.lower() for w in ("unsupported", "global", "weightsunpickler"))]
    return (named or lines or [type(exc).__name__])[0][:300]


def read_checkpoint(path) -> dict:
    """The state saved in a ``checkpoint.pt``, read without running code, and checked.

    Refuses, with a one-line ``ValueError`` naming the file: a file that is not a zip-format torch
    checkpoint; an archive declaring more than ``MAX_CHECKPOINT_BYTES`` or holding compressed
    members (torch stores them uncompressed); anything but tensors and plain containers (read with
    ``weights_only=True``: a pickled callable is refused, never called); missing or mistyped
    entries; an invalid configuration; a position outside the run; parameters that are not finite.

    Returns
    -------
    dict
        ``config`` (dict), ``model``, ``optimizer``, ``scheduler`` (state dicts), ``epoch``,
        ``step`` (int) and ``history`` (list of per-epoch dicts).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} not found")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not a spikeport checkpoint (not a zip-format torch file: {exc})") from None
    declared = sum(m.file_size for m in members)
    if declared > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"{path}: checkpoint declares {declared} bytes, more than the {MAX_CHECKPOINT_BYTES} "
                         "bytes read (MAX_CHECKPOINT_BYTES)")
    if any(m.compress_type != zipfile.ZIP_STORED for m in members):
        raise ValueError(f"{path}: not a spikeport checkpoint (compressed archive members; torch stores them)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # untrusted bytes: the torch and pickle readers raise many types
        raise ValueError(f"{path}: refused or unreadable checkpoint ({_unpickling_problem(exc)})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: checkpoint must hold a dict, got {type(state).__name__}")
    for key, tp in _STATE_TYPES.items():
        value = state.get(key)
        if not isinstance(value, tp) or isinstance(value, bool):
            raise ValueError(f"{path}: checkpoint entry {key!r} must be a {tp.__name__}, got {type(value).__name__}")
    try:
        cfg = Config.from_dict(state["config"])
    except ValueError as err:
        raise ValueError(f"{path}: saved configuration is invalid: {err}") from None
    epoch, step = state["epoch"], state["step"]
    if not 0 <= epoch <= cfg.optim.epochs or step < 0 or (step > 0 and epoch == cfg.optim.epochs):
        raise ValueError(f"{path}: position epoch {epoch}, step {step} lies outside the saved run of "
                         f"{cfg.optim.epochs} epochs")
    if len(state["history"]) != epoch or not all(isinstance(h, dict) for h in state["history"]):
        raise ValueError(f"{path}: history must hold one record per finished epoch ({epoch}), "
                         f"got {len(state['history'])} entries")
    for name, tensor in state["model"].items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{path}: model state must map names to tensors, got {name!r}: {type(tensor).__name__}")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{path}: parameter {name!r} holds NaN or infinite values (a diverged or corrupt run)")
    return state


def _load_states(path: Path, pairs) -> None:
    """``obj.load_state_dict(state)`` for each pair; a state that does not fit is a ``ValueError``."""
    for what, obj, st in pairs:
        try:
            obj.load_state_dict(st)
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            problem = " ".join(str(exc).split())[:300]
            raise ValueError(f"{path}: saved {what} state does not fit the configured network ({problem})") from None


RUN_FILES = (CONFIG, CHECKPOINT, METRICS)


def _saved_config(out: Path, state: dict | None):
    """The configuration a run directory holds: its checkpoint's, else its ``config.json``'s."""
    if state is not None:
        return Config.from_dict(state["config"])
    path = out / CONFIG
    if not path.exists():
        return None
    try:
        return Config.from_dict(json.loads(path.read_text()))
    except (ValueError, OSError) as err:
        raise ValueError(f"{path} is not a spikeport run configuration ({err}); pass --overwrite to replace "
                         "it, or choose another --out") from None


def prepare_run_dir(out, cfg: Config, resume: bool = False, overwrite: bool = False,
                    remove: bool = True) -> dict | None:
    """Check what training may do with the run directory ``out``; the checkpoint state to resume
    from, or None to start from scratch.

    - missing or empty: start;
    - ``overwrite``: remove the run's own files (``config.json``, ``checkpoint.pt``, ``metrics.json``;
      with ``remove``, which only the main process sets) and start; other files stay;
    - ``resume``: continue from the checkpoint if there is one (its configuration must equal ``cfg``
      but for ``optim.epochs``), else start beside whatever else the folder holds, provided it
      holds no run files of another configuration;
    - otherwise: start only over a run of exactly this configuration; anything else is refused.
    """
    out = Path(out)
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise ValueError(f"run directory {out} exists and is not a directory")
    if not out.exists() or not any(out.iterdir()):
        return None
    present = [n for n in RUN_FILES if (out / n).exists()]
    if overwrite:
        if remove:
            for name in RUN_FILES:
                for path in (out / name, out / f"{name}.tmp"):
                    path.unlink(missing_ok=True)
        return None
    state = read_checkpoint(out / CHECKPOINT) if CHECKPOINT in present else None
    saved = _saved_config(out, state)
    if resume:
        if saved is None and METRICS in present:
            raise ValueError(f"cannot resume {out}: it holds {METRICS} but no {CONFIG} or {CHECKPOINT}; "
                             "pass --overwrite to replace it, or choose another --out")
        if saved is not None and saved.with_overrides({"optim.epochs": cfg.optim.epochs}) != cfg:
            diff = _config_diff(saved.to_dict(), cfg.to_dict())
            raise ValueError(f"cannot resume {out}: configuration differs from the saved run ({diff})")
        return state
    if saved is not None and saved == cfg:
        return None  # the same run again, from scratch (its files are replaced as it goes)
    if saved is not None:
        diff = _config_diff(saved.to_dict(), cfg.to_dict(), skip=())
        what = f"a run of another configuration ({diff})"
    else:
        names = sorted(p.name for p in out.iterdir())
        what = f"files that are not a spikeport run ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
    raise ValueError(f"{out} is not empty: it holds {what}; pass --resume to continue a run, --overwrite to "
                     "replace it, or choose another --out")


def load_run(run_dir, device: str = "cpu") -> tuple[Config, SpikingNetwork]:
    """Configuration and trained model of a run directory (weights from its latest checkpoint)."""
    run = Path(run_dir)
    path = run / CHECKPOINT
    if not path.exists():
        raise ValueError(f"{run} is not a training run: {CHECKPOINT} is missing")
    state = read_checkpoint(path)
    cfg = Config.from_dict(state["config"])
    model = make_model(cfg)
    _load_states(path, [("model", model, state["model"])])
    return cfg, model.to(device).eval()


def evaluate(run_dir, data_dir=None, device: str = "auto", progress: bool = True) -> dict:
    """Test-split accuracy of a trained run."""
    cfg, model = load_run(run_dir)
    if data_dir is not None:
        cfg = cfg.with_overrides({"data.data_dir": str(data_dir)})
    dev = resolve_device(device)
    test_split = load_test_split(cfg)
    return evaluate_model(model.to(dev), cfg, test_split, dev, progress=progress)
