"""``spikeport study quant``: how accuracy depends on quantization choices, post-training and QAT.

A study evaluates a grid of points; a point is one quantization setting (``Point``)::

    mode         ptq: quantize the trained float model;  qat: train with fake quantization, then export
    T            time steps (the test inputs are re-encoded; PTQ reuses the float model at any T)
    weight_bits  QuantSpec.num_weight_bits (8..2; Lava's num_weight_bits)
    decay_bits   QuantSpec.decay_bits      (12 = Lava's full du/dv)
    vth_bits     QuantSpec.vth_bits        (17 = Lava's full vth)
    exponent     per-layer | shared        (QuantSpec.shared_exponent: one scale for all layers)
    rounding     nearest | floor           (weights)

Grid design (``Grid.design``)
    ``axes`` (default): the first value listed for an axis is its baseline. Each mode sweeps its
    weight bits at the baseline, and again for every other value of every other axis, one axis
    changed at a time: ``len(weight_bits) * (1 + sum over axes of (len(values) - 1))`` points.
    ``product``: every combination. QAT points are training runs, so by default they vary only
    the weight bits (``qat_weight_bits``) at the baseline of the other axes; ``qat_axes=True``
    makes them follow the design too.

Default grid (``spikeport study quant RUN --out DIR`` with no grid flags)
    PTQ weight bits 8,7,6,5,4,3,2; QAT weight bits 8,4,2; decay bits 12,8,4; threshold bits 17,10,6;
    exponent per-layer,shared; rounding nearest,floor; T the run's and half of it; modes ptq,qat.
    That is 56 PTQ points and 3 QAT fine-tunings: about a minute for digits-mlp on 2 CPU cores
    with ``--workers 2``, training the float base from the preset included.

QAT
    ``qat_init='float'`` (default) fine-tunes the base run's float weights for ``qat_epochs``
    (default ``max(1, round(epochs / 8))``, 5 for digits-mlp); ``'scratch'`` retrains from the
    initialisation (default: the run's epochs). ``qat_lr`` defaults to the run's lr (with its
    schedule); on digits-mlp at 2 weight bits, 5 epochs at lr 2e-3 reached 98.4% where lr/10
    reached 92.9%. Either way
    through ``train.trainer.train(cfg, fake_quant=...)`` with ``quant.qat = true`` and the point's
    options, into ``DIR/qat/<point id>/`` (a normal run directory, plus ``quant_spec.json`` with
    the options ``train.config.QuantConfig`` does not hold). An interrupted training resumes.

Per point, on the same encoded test inputs (per T, seeded as ``spikeport evaluate``)
    accuracy of the float model, the fake-quantized model (the QAT forward pass) and the integer
    network in the bit-accurate simulator (timing aligned with the float model: ideal, or
    hardware when the run trains with ``quant.synaptic_delay``), all decoded as the run's loss
    does; the base float model's accuracy at that T; output spikes equal to the float ones
    (and to the fake-quantized ones) step by step; per layer the mean firing rate of float and
    integer network, the correlation of their per-neuron rates (``spikeport validate``'s; also
    fake-quantized vs integer), and the clipped (saturated) weights, thresholds and biases.

Files in ``DIR``
    ``study.json`` (what was asked: base, grid, settings, versions), ``points.jsonl`` (one JSON
    line per finished point, appended atomically, keyed by the point id; ``resume`` skips the
    ids it holds), ``results.json`` and ``results.csv`` (one row per grid point),
    ``accuracy_vs_weight_bits.png``, ``rate_correlation.png``, ``axes.png`` (when other axes
    vary), ``report.md``; ``base/`` (a snapshot of the base run, or the run trained from a preset)
    and ``qat/``.

Parallelism and reproducibility
    ``workers > 1`` evaluates points in worker processes (multiprocessing spawn context). Every
    evaluation -- in workers and in the main process -- runs with one torch thread, so the results
    do not depend on the number of workers (float spiking networks threshold their sums: a
    different summation order can flip a spike).

Ray (``ray_address``, ``--ray local|auto|ADDRESS``)
    Points run as Ray tasks (``num_cpus=1``, one torch thread each) instead of a local pool:
    ``local`` starts a Ray runtime on this machine (``--workers`` CPUs, default all) for the
    sweep; ``auto`` joins the cluster this machine belongs to (``ray start`` was run here, or
    ``RAY_ADDRESS``); ``HOST:PORT`` (a head node's GCS) or ``ray://HOST:PORT`` (Ray client) joins
    that cluster (a cluster with token authentication, Ray's default, also needs
    ``RAY_AUTH_MODE=token`` for ``HOST:PORT``). The main process gathers results as they finish
    (``ray.wait``) and appends each to ``points.jsonl`` as above, so a killed sweep resumes (with
    or without Ray). Workers read the base run, the dataset and ``DIR/qat`` by absolute path: on a
    cluster of several machines, ``DIR`` and ``--data-dir`` must be on a file system every node
    mounts at the same path, and spikeport must be installed on every node. ``ray`` is imported
    only when asked for.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np

from spikeport import cliargs

MODES = ("ptq", "qat")
EXPONENTS = ("per-layer", "shared")
ROUNDINGS = ("nearest", "floor")
DEFAULT_WEIGHT_BITS = (8, 7, 6, 5, 4, 3, 2)
DEFAULT_QAT_WEIGHT_BITS = (8, 4, 2)
DEFAULT_DECAY_BITS = (12, 8, 4)
DEFAULT_VTH_BITS = (17, 10, 6)
AXES = ("decay_bits", "vth_bits", "exponent", "rounding", "T")  # the axes besides weight bits
AXIS_LABEL = {"decay_bits": "decay bits", "vth_bits": "threshold bits", "exponent": "exponent",
              "rounding": "rounding", "T": "time steps T"}
POINTS_FILE = "points.jsonl"
MANIFEST = "study.json"


# --- points and grids --------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    """One quantization setting of a study."""

    mode: str = "ptq"
    T: int = 16
    weight_bits: int = 8
    decay_bits: int = 12
    vth_bits: int = 17
    exponent: str = "per-layer"
    rounding: str = "nearest"

    @property
    def id(self) -> str:
        """Stable identifier, e.g. ``ptq-T16-w8-d12-v17-layer-nearest``."""
        exp = "shared" if self.exponent == "shared" else "layer"
        return (f"{self.mode}-T{self.T}-w{self.weight_bits}-d{self.decay_bits}-v{self.vth_bits}-"
                f"{exp}-{self.rounding}")

    def spec(self, target_vth: int = 1024):
        from spikeport.export.quantize import QuantSpec

        return QuantSpec(num_weight_bits=self.weight_bits, rounding=self.rounding, target_vth=target_vth,
                         decay_bits=self.decay_bits, vth_bits=self.vth_bits,
                         shared_exponent=self.exponent == "shared")

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.exponent not in EXPONENTS:
            raise ValueError(f"exponent must be one of {', '.join(EXPONENTS)}, got {self.exponent!r}")
        from spikeport.train.config import MAX_T

        if not isinstance(self.T, int) or not 1 <= self.T <= MAX_T:
            raise ValueError(f"T must be an integer in [1, {MAX_T}], got {self.T!r}")
        self.spec()  # QuantSpec checks the bit widths and the rounding


@dataclass(frozen=True)
class Grid:
    """Values per axis (the first is the baseline). ``None``: the default (module docstring);
    ``T=None`` is the run's T and half of it, ``qat_weight_bits=None`` is ``weight_bits`` when
    that was given, else 8,4,2."""

    weight_bits: Optional[tuple] = None
    qat_weight_bits: Optional[tuple] = None
    decay_bits: Optional[tuple] = None
    vth_bits: Optional[tuple] = None
    exponent: Optional[tuple] = None
    rounding: Optional[tuple] = None
    T: Optional[tuple] = None
    modes: Optional[tuple] = None
    design: str = "axes"
    qat_axes: bool = False

    def resolve(self, run_T: int) -> "Grid":
        """The grid with every default filled in (``run_T``: the base run's time steps)."""
        def tup(v, default):
            out = tuple(default if v is None else v)
            if not out:
                raise ValueError("a study axis needs at least one value")
            return tuple(dict.fromkeys(out))  # drop repeats, keep order

        wb = tup(self.weight_bits, DEFAULT_WEIGHT_BITS)
        g = Grid(weight_bits=wb,
                 qat_weight_bits=tup(self.qat_weight_bits, DEFAULT_QAT_WEIGHT_BITS if self.weight_bits is None else wb),
                 decay_bits=tup(self.decay_bits, DEFAULT_DECAY_BITS),
                 vth_bits=tup(self.vth_bits, DEFAULT_VTH_BITS),
                 exponent=tup(self.exponent, EXPONENTS),
                 rounding=tup(self.rounding, ROUNDINGS),
                 T=tup(self.T, (run_T, run_T // 2) if run_T >= 2 else (run_T,)),
                 modes=tup(self.modes, MODES), design=self.design, qat_axes=bool(self.qat_axes))
        if g.design not in ("axes", "product"):
            raise ValueError(f"design must be 'axes' or 'product', got {g.design!r}")
        for m in g.modes:
            if m not in MODES:
                raise ValueError(f"mode must be one of {', '.join(MODES)}, got {m!r}")
        for p in g.points():
            p.validate()
        return g

    def baseline(self) -> dict:
        return {a: getattr(self, a)[0] for a in AXES}

    def points(self) -> list:
        """Every point of the (resolved) grid, in a stable order, without repeats."""
        out = []
        for mode in self.modes:
            bits = self.weight_bits if mode == "ptq" else self.qat_weight_bits
            vary = mode == "ptq" or self.qat_axes
            base = self.baseline()
            settings = []
            if not vary:
                settings = [base]
            elif self.design == "product":
                settings = [dict(zip(AXES, combo)) for combo in itertools.product(*(getattr(self, a) for a in AXES))]
            else:
                settings = [base] + [{**base, a: v} for a in AXES for v in getattr(self, a)[1:]]
            for s in settings:
                for wb in bits:
                    out.append(Point(mode=mode, weight_bits=int(wb), **s))
        return list(dict.fromkeys(out))

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


# --- worker side: evaluate one point -----------------------------------------------------------

_CACHE: dict = {}


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _base(ctx: dict):
    key = ("base", ctx["base_run"], ctx["base_sha256"])
    if key not in _CACHE:
        from spikeport.train.trainer import load_run

        cfg, model = load_run(ctx["base_run"])
        if ctx.get("data_dir"):
            cfg = cfg.with_overrides({"data.data_dir": str(ctx["data_dir"])})
        _CACHE[key] = (cfg, model)
    return _CACHE[key]


def _inputs(ctx: dict, cfg, T: int):
    key = ("inputs", ctx["base_run"], ctx["base_sha256"], T, ctx.get("samples"))
    if key not in _CACHE:
        from spikeport.pipeline import encode_split

        _CACHE[key] = encode_split(cfg.with_overrides({"data.T": int(T)}), ctx.get("samples"))
    return _CACHE[key]


def _base_float(ctx: dict, T: int):
    """Base float model at ``T``: output spikes, per-layer firing rates, accuracy (cached per process)."""
    key = ("float", ctx["base_run"], ctx["base_sha256"], T, ctx.get("samples"))
    if key not in _CACHE:
        from spikeport.pipeline import _float_run, accuracy

        cfg, model = _base(ctx)
        x, labels = _inputs(ctx, cfg, T)
        out, layers = _float_run(model, x)
        _CACHE[key] = (out, layers, accuracy(out, labels, cfg))
    return _CACHE[key]


def _finished(run: Path, epochs: int) -> bool:
    from spikeport.train.trainer import CHECKPOINT, read_checkpoint

    path = run / CHECKPOINT
    if not path.exists():
        return False
    state = read_checkpoint(path)
    return state["epoch"] >= epochs and state["step"] == 0


def qat_config(cfg_base, point: Point, ctx: dict):
    """The training configuration of a QAT point."""
    over = {"quant.qat": True, "quant.num_weight_bits": point.weight_bits, "quant.rounding": point.rounding,
            "data.T": point.T, "optim.epochs": int(ctx["qat_epochs"]), "optim.lr": float(ctx["qat_lr"])}
    return cfg_base.with_overrides(over)


def _qat_model(point: Point, spec, ctx: dict, cfg_base):
    from spikeport.export.quantize import attach_fake_quant
    from spikeport.train.trainer import CHECKPOINT, load_run, read_checkpoint, train, write_json

    run = Path(ctx["out_dir"]) / "qat" / point.id
    qcfg = qat_config(cfg_base, point, ctx)
    run.mkdir(parents=True, exist_ok=True)
    write_json(run / "quant_spec.json", asdict(spec))
    if not _finished(run, qcfg.optim.epochs):
        init = None
        if ctx["qat_init"] == "float":
            init = read_checkpoint(Path(ctx["base_run"]) / CHECKPOINT)["model"]

        def hook(model):
            if init is not None:
                model.load_state_dict(init)
            return attach_fake_quant(model, spec)

        with open(run / "train.log", "a") as logf:
            train(qcfg, run, resume=True, progress=False, fake_quant=hook,
                  log=lambda s: (logf.write(s + "\n"), logf.flush()))
    cfg_q, model_q = load_run(run)
    if ctx.get("data_dir"):
        cfg_q = cfg_q.with_overrides({"data.data_dir": str(ctx["data_dir"])})
    metrics = json.loads((run / "metrics.json").read_text())
    info = {"run": str(run), "init": ctx["qat_init"], "epochs": qcfg.optim.epochs, "lr": qcfg.optim.lr,
            "train_seconds": float(sum(h["seconds"] for h in metrics["epochs"])),
            "trainer_test_accuracy": metrics["test_accuracy"]}
    return cfg_q, model_q, info


def evaluate_point(point: Point, ctx: dict) -> dict:
    """Float, fake-quantized and integer-simulated accuracy (and the rest) of one point."""
    from spikeport.export.quantize import attach_fake_quant, detach_fake_quant, quantize_network
    from spikeport.sim.simulator import simulate
    from spikeport.pipeline import _corr, _float_run, accuracy

    t0 = time.perf_counter()
    cfg_base, model_base = _base(ctx)
    x, labels = _inputs(ctx, cfg_base, point.T)
    spec = point.spec(cfg_base.quant.target_vth)
    base_out, base_layers, base_acc = _base_float(ctx, point.T)
    qat = None
    if point.mode == "ptq":
        cfg, model, f_out, f_layers, f_acc = cfg_base, model_base, base_out, base_layers, base_acc
    else:
        cfg, model, qat = _qat_model(point, spec, ctx, cfg_base)
        f_out, f_layers = _float_run(model, x)
        f_acc = accuracy(f_out, labels, cfg)
    attach_fake_quant(model, spec)
    try:
        fq_out, fq_layers = _float_run(model, x)
    finally:
        detach_fake_quant(model)
    net, report = quantize_network(model, spec, meta={"study_point": point.id})
    timing = "hardware" if cfg.quant.synaptic_delay else "ideal"
    sim = simulate(net, x, timing=timing, record=True)
    layers = []
    for i, (fl, ql, il, rep) in enumerate(zip(f_layers, fq_layers, sim.spikes, report)):
        clipped = {k: int(rep[k]["clipped"]) for k in ("weights", "v_threshold", "bias")}
        layers.append({"layer": i, "kind": rep["kind"], "neurons": int(il.shape[-1]),
                       "rate_float": float(fl.mean()), "rate_fake_quant": float(ql.mean()),
                       "rate_int": float(il.mean()),
                       "rate_corr": _corr(fl.ravel(), il.mean(1).ravel()),  # fl, ql: rates (S, N)
                       "rate_corr_fake_quant": _corr(ql.ravel(), il.mean(1).ravel()),
                       "scale": float(rep["scale"]), "weight_exp": int(rep["weight_exp"]),
                       "weight_rel_error": float(rep["weights"]["rel_error"]), "clipped": clipped})
    return _clean({
        "id": point.id, "point": asdict(point), "samples": int(x.shape[0]), "timing": timing,
        "accuracy": {"float": f_acc, "fake_quant": accuracy(fq_out, labels, cfg),
                     "integer": accuracy(sim.output, labels, cfg), "base_float": base_acc},
        "output_agreement": float((sim.output == f_out).mean()),
        "output_agreement_fake_quant": float((sim.output == fq_out).mean()),
        "layers": layers, "clipped_total": int(sum(sum(la["clipped"].values()) for la in layers)),
        "qat": qat, "seconds": time.perf_counter() - t0})


def _evaluate_task(task):
    point_d, ctx = task
    point = Point(**point_d)
    try:
        return {"ok": True, "record": evaluate_point(point, ctx)}
    except Exception:  # reported by the main process; the point is not marked finished
        return {"ok": False, "id": point.id, "error": traceback.format_exc()}


def _ray_task(task):
    """One point in a Ray worker process: one torch thread, as in the local pool."""
    _init_worker()
    return _evaluate_task(task)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs the ray package, which is not installed (pip install ray)") from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse an address nothing answers at within ``timeout`` s (``ray.init`` would retry for minutes)."""
    import socket

    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"--ray must be local, auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise ValueError(f"cannot reach the Ray cluster at {address!r}: {err.strerror or err}") from None


def connect_ray(address: str, workers: Optional[int] = None):
    """``(ray, started)``: the ``ray`` module connected to ``address`` (``local``: a new runtime
    with ``workers`` CPUs, default all; ``auto``; ``HOST:PORT``; ``ray://HOST:PORT``), and whether
    this call started the connection (then the caller shuts it down). A runtime already
    initialised in this process is used as it is."""
    import signal
    import threading

    ray = _import_ray()
    if ray.is_initialized():
        return ray, False
    if address != "local" and address != "auto":
        _check_reachable(address)
    main_thread = threading.current_thread() is threading.main_thread()
    term = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        if address == "local":
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except ConnectionError as err:
        why = str(err)
        if "InvalidAuthToken" in str(err.__cause__ or ""):  # the cluster asks for its token
            why += ("; the cluster uses token authentication: set RAY_AUTH_MODE=token (the token from "
                    "~/.ray/auth_token or RAY_AUTH_TOKEN)")
        raise ValueError(f"cannot reach the Ray cluster at {address!r}: {' '.join(why.split())}") from None
    finally:
        # Ray's core worker installs a SIGTERM handler that aborts the process; keep ours (`kill`
        # stops the sweep like Ctrl-C: pending tasks cancelled, finished points kept)
        if callable(term):
            signal.signal(signal.SIGTERM, term)
    return ray, True


def _run_ray(tasks: list, ray_address: str, workers: Optional[int], finished, on_connect) -> None:
    """Evaluate ``tasks`` as Ray tasks, calling ``finished`` on each result as it arrives."""
    ray, started = connect_ray(ray_address, workers)
    try:
        on_connect(int(ray.cluster_resources().get("CPU", 0)))
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_task)
        pending = [remote.remote(task) for task in tasks]
        try:
            while pending:  # with a timeout, so that a signal is handled within a second
                ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for ref in ready:
                    finished(ray.get(ref))
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()


def _absolute_ctx(ctx: dict) -> dict:
    """``ctx`` with its paths absolute (Ray workers may run in another directory or machine)."""
    out = dict(ctx)
    for k in ("out_dir", "base_run", "data_dir"):
        if out.get(k):
            out[k] = str(Path(out[k]).resolve())
    return out


def _clean(obj):
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# --- points file -------------------------------------------------------------------------------

def read_points(path) -> dict:
    """Finished points ``{id: record}`` of a points file; a torn last line (a crash mid-write) is
    cut off so that appending continues on a clean line."""
    path = Path(path)
    if not path.exists():
        return {}
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
        with open(path, "r+b") as f:
            f.truncate(len(data))
    done = {}
    for line in data.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "id" in rec:
            done[rec["id"]] = rec
    return done


def append_point(path, record: dict) -> None:
    """Append one record as one line with a single ``write`` on an ``O_APPEND`` descriptor, then
    fsync: a reader sees the whole line or (after a crash) a torn tail that ``read_points`` drops."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(line)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


# --- main side ---------------------------------------------------------------------------------

@dataclass
class StudyResult:
    out_dir: Path
    rows: list                      # one record per grid point (finished ones), grid order
    evaluated: list                 # ids evaluated by this call
    skipped: list                   # ids found finished (resume)
    errors: dict = field(default_factory=dict)  # id -> traceback
    seconds: float = 0.0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _prepare_base(base, out: Path, overrides: Optional[dict], data_dir, progress: bool, log) -> tuple:
    """``(description, base run dir in out, checkpoint sha256)``: a run directory is snapshotted
    into ``out/base`` (so a run retrained meanwhile cannot mix into the study), a preset is trained
    there (resumed if interrupted)."""
    from spikeport.train.config import PRESETS, make_config
    from spikeport.train.trainer import CHECKPOINT, CONFIG, train

    dest = out / "base"
    src = Path(str(base))
    if src.is_dir():
        if not (src / CHECKPOINT).exists():
            raise ValueError(f"{src} is not a training run ({CHECKPOINT} missing)")
        if overrides:
            raise ValueError("configuration overrides apply to a preset base only, not to a trained run")
        if (dest / CHECKPOINT).exists():
            digest = _sha256(dest / CHECKPOINT)
            if _sha256(src / CHECKPOINT) != digest:
                log(f"note: {src} changed since this study started; the study keeps using its snapshot {dest}")
        else:
            dest.mkdir(parents=True, exist_ok=True)
            for name in (CHECKPOINT, CONFIG, "metrics.json"):
                if (src / name).exists():
                    shutil.copy2(src / name, dest / f".{name}.tmp")
                    os.replace(dest / f".{name}.tmp", dest / name)
            digest = _sha256(dest / CHECKPOINT)
        return {"kind": "run", "path": str(src.resolve())}, dest, digest
    if str(base) not in PRESETS:
        raise ValueError(f"base {base!r} is neither a training run directory nor a preset "
                         f"({', '.join(PRESETS)})")
    cfg = make_config(str(base), overrides=overrides, data_dir=data_dir)
    if not _finished(dest, cfg.optim.epochs):
        log(f"training the float base ({base}, {cfg.optim.epochs} epochs) into {dest}")
        train(cfg, dest, resume=True, progress=progress, log=log)
    return {"kind": "preset", "preset": str(base), "overrides": overrides or {}}, dest, _sha256(dest / CHECKPOINT)


def versions() -> dict:
    import importlib.metadata as md

    import torch

    out = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
           "numpy": np.__version__, "torch": torch.__version__}
    for pkg in ("spikeport", "matplotlib"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    try:
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        out["git"] = (commit + (" (with uncommitted changes)" if dirty else "")) if commit else None
    except (OSError, subprocess.SubprocessError):
        out["git"] = None
    return out


def run_quant_study(base, grid: Optional[Grid] = None, out_dir="runs/study-quant", samples: Optional[int] = None,
                    workers: int = 1, resume: bool = False, retrain_qat: bool = False, *,
                    overrides: Optional[dict] = None, data_dir=None, qat_init: str = "float",
                    qat_epochs: Optional[int] = None, qat_lr: Optional[float] = None, progress: bool = True,
                    command: Optional[str] = None, log=print, ray_address: Optional[str] = None) -> StudyResult:
    """Run (or resume) a quantization study of ``base`` (a run directory or a preset name) into
    ``out_dir``; see the module docstring. ``retrain_qat`` discards QAT trainings found in
    ``out_dir/qat`` for the points still to evaluate (otherwise a finished one is reused and an
    interrupted one resumed). ``ray_address`` (``local``, ``auto``, ``HOST:PORT``, ``ray://HOST:PORT``)
    runs the points as Ray tasks; ``workers`` then sizes a ``local`` runtime (``None``: all CPUs).
    Returns a ``StudyResult``; writes results, plots and report."""
    import torch

    t_start = time.perf_counter()
    if qat_init not in ("float", "scratch"):
        raise ValueError(f"qat_init must be 'float' or 'scratch', got {qat_init!r}")
    if samples is not None and samples < 1:
        raise ValueError(f"samples must be positive, got {samples}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be positive, got {workers}")
    if ray_address is not None:  # refuse before any training when ray is missing or the address is bad
        _import_ray()
        if ray_address not in ("local", "auto"):
            _check_reachable(ray_address)
    out = Path(out_dir)
    points_path = out / POINTS_FILE
    if not resume and points_path.exists() and points_path.stat().st_size > 0:
        raise ValueError(f"{out} already holds study results: pass --resume to continue it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same arithmetic as the workers (see module docstring)
    try:
        base_info, base_run, digest = _prepare_base(base, out, overrides, data_dir, progress, log)
        from spikeport.train.trainer import load_run

        cfg, _ = load_run(base_run)
        grid = (grid or Grid()).resolve(cfg.data.T)
        q_epochs = qat_epochs or (max(1, round(cfg.optim.epochs / 8)) if qat_init == "float" else cfg.optim.epochs)
        q_lr = qat_lr if qat_lr is not None else cfg.optim.lr
        ctx = {"out_dir": str(out), "base_run": str(base_run), "base_sha256": digest, "samples": samples,
               "data_dir": str(data_dir) if data_dir else None,
               "qat_init": qat_init, "qat_epochs": int(q_epochs), "qat_lr": float(q_lr)}
        settings = {"base": base_info, "base_checkpoint_sha256": digest, "samples": samples,
                    "data_dir": ctx["data_dir"], "qat_init": qat_init, "qat_epochs": ctx["qat_epochs"],
                    "qat_lr": ctx["qat_lr"]}
        settings = json.loads(json.dumps(_clean(settings)))  # as it reads back from study.json
        manifest_path = out / MANIFEST
        old = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
        if resume and old is not None and old.get("settings") != settings:
            diff = [k for k in settings if old.get("settings", {}).get(k) != settings[k]]
            raise ValueError(f"cannot resume {out}: the study was started with other settings ({', '.join(diff)}); "
                             "use another --out")
        manifest = {"settings": settings, "grid": grid.to_dict(),
                    "created": old["created"] if resume and old else _now(),
                    "updated": _now(), "command": command, "workers": workers or 1, "ray": ray_address,
                    "versions": versions(),
                    "config": cfg.to_dict()}
        _write_json(manifest_path, manifest)

        points = grid.points()
        done = read_points(points_path)
        todo = [p for p in points if p.id not in done]
        skipped = [p.id for p in points if p.id in done]
        if retrain_qat:
            for p in todo:
                if p.mode == "qat" and (out / "qat" / p.id).exists():
                    shutil.rmtree(out / "qat" / p.id)
        todo.sort(key=lambda p: p.mode != "qat")  # trainings first: they are the long ones
        if skipped:
            log(f"resuming {out}: {len(skipped)} of {len(points)} points already finished")
        evaluated, errors = [], {}
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="study quant", disable=not progress, file=sys.stderr)

        def finished(res):
            if res["ok"]:
                rec = res["record"]
                append_point(points_path, rec)
                done[rec["id"]] = rec
                evaluated.append(rec["id"])
                bar.set_postfix_str(f"{rec['id']}: int {100 * rec['accuracy']['integer']:.1f}%")
            else:
                errors[res["id"]] = res["error"]
                with open(out / "errors.log", "a") as f:
                    f.write(f"== {res['id']} ({_now()})\n{res['error']}\n")
                log(f"point {res['id']} failed (see {out / 'errors.log'}): {res['error'].strip().splitlines()[-1]}")
            bar.update(1)

        tasks = [(asdict(p), ctx) for p in todo]
        def on_connect(cpus: int) -> None:
            manifest["workers"] = cpus
            _write_json(manifest_path, manifest)

        try:
            if ray_address is not None and tasks:
                _run_ray([(t[0], _absolute_ctx(t[1])) for t in tasks], ray_address, workers, finished, on_connect)
            elif (workers or 1) <= 1 or len(tasks) <= 1:
                for task in tasks:
                    finished(_evaluate_task(task))
            else:
                import multiprocessing as mp

                pool = mp.get_context("spawn").Pool(min(workers, len(tasks)), initializer=_init_worker)
                try:
                    for res in pool.imap_unordered(_evaluate_task, tasks):
                        finished(res)
                    pool.close()  # let workers exit normally (terminate would leak their semaphores)
                except BaseException:
                    pool.terminate()
                    raise
                finally:
                    pool.join()
        finally:
            bar.close()
        rows = [done[p.id] for p in points if p.id in done]
        seconds = time.perf_counter() - t_start
        result = StudyResult(out, rows, evaluated, skipped, errors, seconds)
        write_outputs(out, rows, grid, manifest, cfg, result)
        return result
    finally:
        torch.set_num_threads(threads)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_clean(obj), indent=2))
    os.replace(tmp, path)


# --- outputs -----------------------------------------------------------------------------------

POINT_COLUMNS = ["id", "mode", "T", "weight_bits", "decay_bits", "vth_bits", "exponent", "rounding"]
METRIC_COLUMNS = ["acc_float", "acc_fake_quant", "acc_int", "acc_base_float", "output_agreement",
                  "output_agreement_fake_quant", "rate_corr_mean", "clipped_total", "samples", "timing",
                  "seconds", "qat_epochs", "qat_train_seconds"]


def flat_row(rec: dict) -> dict:
    """One CSV row: point, metrics, then per layer rates, rate correlation and clipped values."""
    p, a = rec["point"], rec["accuracy"]
    corr = [la["rate_corr"] for la in rec["layers"] if la["rate_corr"] is not None]
    row = {"id": rec["id"], **{k: p[k] for k in POINT_COLUMNS[1:]},
           "acc_float": a["float"], "acc_fake_quant": a["fake_quant"], "acc_int": a["integer"],
           "acc_base_float": a["base_float"], "output_agreement": rec["output_agreement"],
           "output_agreement_fake_quant": rec["output_agreement_fake_quant"],
           "rate_corr_mean": float(np.mean(corr)) if corr else None, "clipped_total": rec["clipped_total"],
           "samples": rec["samples"], "timing": rec["timing"], "seconds": round(rec["seconds"], 3),
           "qat_epochs": (rec.get("qat") or {}).get("epochs"),
           "qat_train_seconds": (rec.get("qat") or {}).get("train_seconds")}
    for la in rec["layers"]:
        i = la["layer"]
        row[f"rate_float_L{i}"] = la["rate_float"]
        row[f"rate_int_L{i}"] = la["rate_int"]
        row[f"rate_corr_L{i}"] = la["rate_corr"]
        row[f"rate_corr_fake_quant_L{i}"] = la["rate_corr_fake_quant"]
        row[f"clipped_L{i}"] = sum(la["clipped"].values())
    return row


def write_outputs(out: Path, rows: list, grid: Grid, manifest: dict, cfg, result: StudyResult) -> None:
    flat = [flat_row(r) for r in rows]
    _write_json(out / "results.json", {"study": {k: manifest[k] for k in ("settings", "grid", "created", "updated")},
                                       "rows": rows})
    cols = list(POINT_COLUMNS + METRIC_COLUMNS)
    for r in flat:
        cols += [c for c in r if c not in cols]
    tmp = out / "results.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in flat:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    os.replace(tmp, out / "results.csv")
    plots = make_plots(out, rows, grid, cfg)
    (out / "report.md").write_text(report_markdown(rows, grid, manifest, cfg, result, plots))


def _baseline_rows(rows: list, grid: Grid, mode: str, **change) -> list:
    want = {**grid.baseline(), **change}
    sel = [r for r in rows if r["point"]["mode"] == mode and all(r["point"][a] == want[a] for a in AXES)]
    return sorted(sel, key=lambda r: r["point"]["weight_bits"])


def _acc_limits(rows: list) -> tuple:
    """y range for accuracies: from a little below the lowest (in steps of 0.05) to just above 1."""
    vals = [r["accuracy"][k] for r in rows for k in ("integer", "fake_quant", "base_float")
            if r["accuracy"][k] is not None]
    lo = math.floor((min(vals) - 0.02) / 0.05) * 0.05 if vals else 0.0
    return max(lo, 0.0) - 0.01, 1.01


def make_plots(out: Path, rows: list, grid: Grid, cfg) -> list:
    """PNG plots (matplotlib's Agg canvas, no pyplot state); returns ``[(file, caption)]``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    made = []
    T0 = grid.T[0]

    def save(fig, name, caption):
        FigureCanvasAgg(fig)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        made.append((name, caption))

    # 1. accuracy vs weight bits, PTQ and QAT (baseline of the other axes)
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    colors = {"ptq": "tab:blue", "qat": "tab:orange"}
    ref = None
    for mode in grid.modes:
        sel = _baseline_rows(rows, grid, mode)
        if not sel:
            continue
        bits = [r["point"]["weight_bits"] for r in sel]
        ax.plot(bits, [r["accuracy"]["integer"] for r in sel], "o-", color=colors[mode],
                label=f"{mode.upper()} integer (simulator)")
        ax.plot(bits, [r["accuracy"]["fake_quant"] for r in sel], "x--", color=colors[mode], alpha=0.7,
                label=f"{mode.upper()} fake-quantized")
        ref = sel[0]["accuracy"]["base_float"]
    if ref is not None:
        ax.axhline(ref, color="gray", ls=":", label="float (base run)")
    ax.set_xlabel("weight bits (num_weight_bits)")
    ax.set_ylabel("test accuracy")
    ax.invert_xaxis()
    ax.set_ylim(*_acc_limits([r for m in grid.modes for r in _baseline_rows(rows, grid, m)]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(f"{cfg.network} on {cfg.data.dataset}, T={T0}", fontsize=10)
    save(fig, "accuracy_vs_weight_bits.png",
         "Accuracy vs weight bits, other axes at their baseline (solid: integer network in the simulator; "
         "dashed: fake-quantized float model; dotted: float base run).")

    # 2. per-layer rate correlation vs weight bits
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    styles = {"ptq": "o-", "qat": "s--"}
    any_line = False
    for mode in grid.modes:
        sel = _baseline_rows(rows, grid, mode)
        if not sel:
            continue
        n_layers = len(sel[0]["layers"])
        for i in range(n_layers):
            vals = [r["layers"][i]["rate_corr"] for r in sel]
            ax.plot([r["point"]["weight_bits"] for r in sel], [np.nan if v is None else v for v in vals],
                    styles[mode], color=f"C{i}", label=f"{mode.upper()} layer {i} ({sel[0]['layers'][i]['kind']})")
            any_line = True
    ax.set_xlabel("weight bits (num_weight_bits)")
    ax.set_ylabel("rate correlation, float vs integer")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    if any_line:
        ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Per-layer firing-rate correlation (per neuron and sample)", fontsize=10)
    save(fig, "rate_correlation.png",
         "Correlation of per-neuron firing rates (each sample and neuron) between the float model and the "
         "integer network, per layer.")

    # 3. the other axes: one panel per axis with more than one value
    varied = [a for a in AXES if len(getattr(grid, a)) > 1]
    if varied:
        n = len(varied)
        ncol = min(n, 3)
        nrow = math.ceil(n / ncol)
        fig = Figure(figsize=(4.2 * ncol, 3.4 * nrow))
        for k, a in enumerate(varied):
            ax = fig.add_subplot(nrow, ncol, k + 1)
            for j, v in enumerate(getattr(grid, a)):
                for mode in grid.modes:
                    sel = _baseline_rows(rows, grid, mode, **{a: v})
                    if not sel or (mode == "qat" and not grid.qat_axes and j > 0):
                        continue
                    ax.plot([r["point"]["weight_bits"] for r in sel], [r["accuracy"]["integer"] for r in sel],
                            styles[mode], color=f"C{j}", label=f"{mode.upper()} {v}", ms=4)
            ax.set_title(AXIS_LABEL[a], fontsize=10)
            ax.set_xlabel("weight bits")
            ax.set_ylabel("integer accuracy")
            ax.invert_xaxis()
            ax.set_ylim(*_acc_limits(rows))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower left")
        save(fig, "axes.png", "Integer-network accuracy vs weight bits when one other axis changes "
                              "(first value listed = baseline).")
    return made


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def report_markdown(rows: list, grid: Grid, manifest: dict, cfg, result: StudyResult, plots: list) -> str:
    s = manifest["settings"]
    v = manifest["versions"]
    base = s["base"]
    base_txt = (f"training run `{base['path']}` (snapshot in `base/`)" if base["kind"] == "run"
                else f"preset `{base['preset']}`" + (f" with overrides `{json.dumps(base['overrides'])}`"
                                                     if base["overrides"] else "") + ", trained into `base/`")
    n_samples = rows[0]["samples"] if rows else s["samples"]
    L = []
    L += ["# Quantization study", "",
          f"- date: {manifest['updated']} (study created {manifest['created']})",
          f"- base: {base_txt}; checkpoint sha256 `{s['base_checkpoint_sha256'][:16]}…`"
          + ("; **the base run was itself trained with QAT**" if cfg.quant.qat else ""),
          f"- network `{cfg.network}`, neuron `{cfg.neuron.model}`, loss `{cfg.loss.name}`, "
          f"dataset `{cfg.data.dataset}` (encoder `{cfg.data.encoder}`), trained T = {cfg.data.T}",
          f"- test samples: {n_samples} (encoded per T with the run's seed {cfg.optim.seed}, as `spikeport evaluate`)",
          f"- seeds: inputs from `optim.seed = {cfg.optim.seed}`; QAT trainings use the same seed",
          f"- QAT: init `{s['qat_init']}`, {s['qat_epochs']} epochs, lr {s['qat_lr']:g}, "
          f"quantization options as the point's",
          f"- integer simulation timing: {rows[0]['timing'] if rows else 'n/a'} (aligned with the float model)",
          f"- grid ({grid.design} design; first value = baseline): weight bits {list(grid.weight_bits)}, "
          f"QAT weight bits {list(grid.qat_weight_bits)}, decay bits {list(grid.decay_bits)}, "
          f"threshold bits {list(grid.vth_bits)}, exponent {list(grid.exponent)}, rounding {list(grid.rounding)}, "
          f"T {list(grid.T)}, modes {list(grid.modes)}"
          + ("" if "qat" not in grid.modes else ("; QAT varies the other axes too" if grid.qat_axes
                                                 else "; QAT only at the baseline of the other axes")),
          f"- points: {len(rows)} finished of {len(grid.points())}; this run evaluated {len(result.evaluated)}, "
          f"reused {len(result.skipped)}"
          + (f", **{len(result.errors)} failed** (errors.log)" if result.errors else ""),
          f"- wall time of this run: {result.seconds:.1f} s with {manifest['workers']} worker(s)"
          + (f" on Ray (`--ray {manifest['ray']}`)" if manifest.get("ray") else "") + "; "
          f"sum of the per-point times (QAT training included): {sum(r['seconds'] for r in rows):.1f} s",
          f"- software: Python {v['python']}, numpy {v['numpy']}, torch {v['torch']}, matplotlib {v['matplotlib']}, "
          f"spikeport {v['spikeport']}, git {v['git']}; {v['platform']}, {v['cpus']} CPUs"]
    if manifest.get("command"):
        L.append(f"- command: `{manifest['command']}`")
    L += ["", "## Accuracy vs weight bits", "",
          f"Other axes at their baseline ({', '.join(f'{AXIS_LABEL[a]} {b}' for a, b in grid.baseline().items())}). "
          "Accuracies in %; agreement = output spikes equal to the float model's, step by step.", ""]
    by_bits = {}
    for mode in grid.modes:
        for r in _baseline_rows(rows, grid, mode):
            by_bits.setdefault(r["point"]["weight_bits"], {})[mode] = r
    def mode_cols(mode):
        M = mode.upper()
        return ([f"{M} float"] if mode == "qat" else []) + [f"{M} fake-quant", f"{M} integer", f"{M} agreement"]

    def mode_cells(mode, r):
        if r is None:
            return [""] * len(mode_cols(mode))
        return ([_pct(r["accuracy"]["float"])] if mode == "qat" else []) + [
            _pct(r["accuracy"]["fake_quant"]), _pct(r["accuracy"]["integer"]), _pct(r["output_agreement"])]

    cols = ["weight bits", "float"] + [c for mode in grid.modes for c in mode_cols(mode)]
    L += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for b in sorted(by_bits, reverse=True):
        d = by_bits[b]
        cells = [str(b), _pct(next(iter(d.values()))["accuracy"]["base_float"])]
        for mode in grid.modes:
            cells += mode_cells(mode, d.get(mode))
        L.append("| " + " | ".join(cells) + " |")
    for mode in grid.modes:
        sel = _baseline_rows(rows, grid, mode)
        if sel:
            ok = [r["point"]["weight_bits"] for r in sel
                  if r["accuracy"]["integer"] >= r["accuracy"]["base_float"] - 0.01]
            worst = min(sel, key=lambda r: r["accuracy"]["integer"])
            L += ["", f"{mode.upper()}: fewest weight bits within 1 point of the float base: "
                      f"{min(ok) if ok else 'none'}; lowest integer accuracy {_pct(worst['accuracy']['integer'])}% "
                      f"at {worst['point']['weight_bits']} bits."]
    mism = [r["id"] for r in rows if r["accuracy"]["integer"] != r["accuracy"]["fake_quant"]]
    L += ["", f"Fake-quantized (QAT forward pass) and integer-network accuracy differ at {len(mism)} of "
              f"{len(rows)} points"
              + (f" ({', '.join(f'`{m}`' for m in mism[:8])}{', ...' if len(mism) > 8 else ''}): the float "
                 "forward pass and Loihi's integer arithmetic truncate decays differently, so a few spikes "
                 "may differ." if mism else ".")]
    for name, caption in plots:
        L += ["", f"![{name}]({name})", "", f"*{caption}*"]
    L += ["", "## All points", "",
          "Rates: mean firing rate per layer, float / integer; corr: per-neuron rate correlation; "
          "clipped: saturated weights + thresholds + biases.", ""]
    hdr = ["id", "float", "fake-quant", "integer", "agreement", "rates float/int", "rate corr", "clipped", "s"]
    L += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for r in rows:
        a = r["accuracy"]
        rates = ", ".join(f"{la['rate_float']:.3f}/{la['rate_int']:.3f}" for la in r["layers"])
        corr = ", ".join("n/a" if la["rate_corr"] is None else f"{la['rate_corr']:.3f}" for la in r["layers"])
        L.append(f"| `{r['id']}` | {_pct(a['float'])} | {_pct(a['fake_quant'])} | {_pct(a['integer'])} | "
                 f"{_pct(r['output_agreement'])} | {rates} | {corr} | {r['clipped_total']} | {r['seconds']:.1f} |")
    L += ["", "Point ids: `mode-T<steps>-w<weight bits>-d<decay bits>-v<threshold bits>-<layer|shared exponent>-"
          "<rounding>`. Definitions of the options: `export/quantize.py`; of the study: `spikeport/study.py`.",
          "Full per-layer numbers: `results.json`, `results.csv`.", ""]
    return "\n".join(L)


# --- command line ------------------------------------------------------------------------------

def _list(kind):
    def parse(text: str) -> tuple:
        try:
            vals = tuple(kind(t.strip()) for t in text.split(",") if t.strip())
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"bad list {text!r}: {err}") from None
        if not vals:
            raise argparse.ArgumentTypeError("empty list")
        return vals
    return parse


def _cmd_study_quant(args) -> int:
    import signal

    from spikeport.train.config import parse_set

    def _term(signum, frame):  # `kill`: stop like Ctrl-C, so worker processes are terminated too
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, _term)
    except ValueError:  # not in the main thread
        previous = None
    try:
        return _study_quant(args, parse_set)
    except KeyboardInterrupt:
        print(f"interrupted: finished points are kept in {Path(args.out) / POINTS_FILE}; "
              "continue with the same command plus --resume", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _study_quant(args, parse_set) -> int:
    grid = Grid(weight_bits=args.weight_bits, qat_weight_bits=args.qat_weight_bits, decay_bits=args.decay_bits,
                vth_bits=args.vth_bits, exponent=args.exponent, rounding=args.rounding, T=args.T,
                modes=args.mode, design=args.design, qat_axes=args.qat_axes)
    res = run_quant_study(args.base, grid, args.out, samples=args.samples, workers=args.workers,
                          resume=args.resume, retrain_qat=args.retrain_qat, overrides=parse_set(args.set) or None,
                          data_dir=args.data_dir, qat_init=args.qat_init, qat_epochs=args.qat_epochs,
                          qat_lr=args.qat_lr, progress=not args.no_progress,
                          command="spikeport " + " ".join(sys.argv[1:]) if sys.argv[1:] else None,
                          log=lambda s: print(s, file=sys.stderr), ray_address=args.ray)
    print(f"{len(res.rows)} points ({len(res.evaluated)} evaluated, {len(res.skipped)} reused) in "
          f"{res.seconds:.1f} s -> {res.out_dir / 'report.md'}")
    if res.errors:
        print(f"{len(res.errors)} points failed: see {res.out_dir / 'errors.log'}", file=sys.stderr)
        return 1
    return 0


def add_study_parser(subparsers) -> None:
    """Register ``spikeport study quant`` and ``study labels`` on the top-level subparsers."""
    from spikeport.study_labels import add_labels_parser

    st = subparsers.add_parser("study", help="accuracy studies (quant: quantization options, PTQ vs QAT; "
                                             "labels: label coding over T)")
    sub = st.add_subparsers(dest="study", required=True)
    q = sub.add_parser("quant", help="accuracy of float, fake-quantized and integer networks over a grid of "
                                     "quantization options",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("base", help="training run directory, or a preset name (trained into OUT/base first)")
    q.add_argument("--out", required=True, type=cliargs.output_dir,
                   help="study directory (results, plots, report, QAT runs)")
    q.add_argument("--weight-bits", type=_list(int), metavar="B,...", help="PTQ weight bits (default 8,7,6,5,4,3,2)")
    q.add_argument("--qat-weight-bits", type=_list(int), metavar="B,...",
                   help="QAT weight bits (default: --weight-bits if given, else 8,4,2)")
    q.add_argument("--decay-bits", type=_list(int), metavar="B,...", help="decay bits (default 12,8,4)")
    q.add_argument("--vth-bits", type=_list(int), metavar="B,...", help="threshold bits (default 17,10,6)")
    q.add_argument("--exponent", type=_list(str), metavar="per-layer,shared",
                   help="per-layer and/or shared scale and exponent (default both)")
    q.add_argument("--rounding", type=_list(str), metavar="nearest,floor", help="weight rounding (default both)")
    q.add_argument("--mode", type=_list(str), metavar="ptq,qat", help="post-training and/or QAT (default both)")
    q.add_argument("--T", type=_list(int), metavar="T,...", help="time steps (default: the run's T and half of it)")
    q.add_argument("--design", choices=["axes", "product"], default="axes",
                   help="axes: one axis changed at a time around the baseline (first values; default); "
                        "product: every combination")
    q.add_argument("--qat-axes", action="store_true", help="QAT points follow the design on every axis "
                                                           "(default: QAT varies only the weight bits)")
    q.add_argument("--qat-init", choices=["float", "scratch"], default="float",
                   help="QAT from the float run's weights (fine-tune; default) or from scratch")
    q.add_argument("--qat-epochs", type=cliargs.positive_int,
                   help="QAT epochs (default: epochs/8 fine-tuning, all from scratch)")
    q.add_argument("--qat-lr", type=cliargs.positive_float, help="QAT learning rate (default: the run's)")
    q.add_argument("--retrain-qat", action="store_true", help="discard QAT trainings found in OUT/qat")
    q.add_argument("--samples", type=cliargs.positive_int, help="test samples (default: all)")
    q.add_argument("--workers", type=cliargs.positive_int,
                   help="parallel worker processes (default 1; with --ray local: the runtime's CPUs, default all)")
    q.add_argument("--ray", metavar="local|auto|ADDRESS",
                   help="run the points as Ray tasks: local (a Ray runtime on this machine), auto (the cluster "
                        "this machine joined), HOST:PORT or ray://HOST:PORT; needs the ray package")
    q.add_argument("--resume", action="store_true", help="continue a study in OUT, skipping finished points")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="configuration override for a preset base (repeatable)")
    q.add_argument("--data-dir", help="dataset folder")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=_cmd_study_quant)
    add_labels_parser(sub)
