"""Training configuration: frozen dataclasses, presets, files (YAML/TOML) and ``key=value`` overrides.

A configuration has five sections; ``--set`` addresses fields with dots::

    network = "784-800-10", init_gain = 1.0
    [data]    dataset, data_dir, encoder, T, train_samples, test_samples, event_duration_us
    [neuron]  model, decay, decay_syn, decay_mem, v_threshold, surrogate, surrogate_width, ...
    [loss]    name, tau, target_rate
    [optim]   epochs, batch_size, lr, optimizer, weight_decay, schedule, seed, device, ...
    [quant]   qat, synaptic_delay, num_weight_bits, rounding, target_vth

Precedence: preset < config file < ``--set`` overrides (< ``--data-dir``).

Every value is checked when a configuration is built (``RULES``: one rule per key); a bad value is
refused with a ``ValueError`` naming the key, never carried into a run (NaN and infinities included).
Configuration files are read with ``yaml.safe_load``/``tomllib``/``json`` only, at most
``MAX_CONFIG_BYTES``; any parse failure is one line naming the file.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from spikeport.sim.quantspec import QuantSpec

from .datasets import DATASETS
from .encoders import ENCODERS
from .losses import LOSSES, LossSpec
from .network import NeuronSpec, plan_network
from .surrogates import SURROGATES


@dataclass(frozen=True)
class DataConfig:
    """Which data and how it is encoded; ``T`` is the number of time steps per sample."""

    dataset: str = "digits"
    data_dir: Optional[str] = None
    encoder: str = "bernoulli"
    T: int = 20
    train_samples: Optional[int] = None  # use only the first N training samples
    test_samples: Optional[int] = None
    event_duration_us: Optional[float] = None  # event binning window; None: each sample's span


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation and run control. ``batch_size`` is the global batch (split over processes)."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | adamw | sgd
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | none (per step)
    grad_clip: Optional[float] = None
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_batch_size: int = 256
    checkpoint_every: int = 0  # also checkpoint every N steps inside an epoch (0: at epoch ends only)


@dataclass(frozen=True)
class QuantConfig(QuantSpec):
    """Deployment-aware training and export options: the quantizer's options (``QuantSpec``, the one
    schema export, QAT and studies share) plus two training switches.

    ``qat`` trains with fake quantization (the forward pass uses the integer values export will
    produce; needs the export stage, attached by ``spikeport train``); ``synaptic_delay`` trains
    with Loihi's one-step delay per synaptic layer. For a network meant for lava-dl netx, set
    ``target_vth = 1`` and ``bias_exp = 6``.
    """

    qat: bool = False
    synaptic_delay: bool = False


@dataclass(frozen=True)
class Config:
    network: str = "64-400-10"
    init_gain: float = 1.0  # multiplies PyTorch's default initial weights (sparse event inputs need > 1)
    data: DataConfig = field(default_factory=DataConfig)
    neuron: NeuronSpec = field(default_factory=NeuronSpec)
    loss: LossSpec = field(default_factory=LossSpec)
    optim: OptimConfig = field(default_factory=OptimConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)

    def __post_init__(self):
        for key, value in _flatten(self.to_dict(), self.to_dict()).items():
            check_value(key, value)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        return _build(cls, d, "")

    def with_overrides(self, overrides: dict) -> "Config":
        """Merge a nested or dotted dict of overrides (``{'optim.lr': 0.01}`` or ``{'optim': {'lr': 0.01}}``)."""
        merged = self.to_dict()
        if not isinstance(overrides, dict):
            raise ValueError(f"configuration overrides must be a table, got {type(overrides).__name__}")
        for key, value in _flatten(overrides, merged).items():
            node = merged
            *parents, leaf = key.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
        return Config.from_dict(merged)


def _flatten(d: dict, schema: dict, prefix: str = "") -> dict:
    """Dotted ``{key: value}`` of a nested dict, every key checked against ``schema`` (a
    configuration as a dict) on the way down: an unknown key is refused before anything below it
    is visited, so the work is bounded by the schema, whatever the input (YAML aliases included)."""
    out = {}
    for k, v in d.items():
        if not isinstance(k, str):
            raise ValueError(f"configuration keys must be strings, got {k!r} in {prefix.rstrip('.') or '(top)'}")
        key, node = prefix, schema
        for part in k.split("."):
            if not isinstance(node, dict) or part not in node:
                known = f"; known here: {', '.join(node)}" if isinstance(node, dict) else ""
                raise ValueError(f"unknown configuration key {prefix + k!r}{known}")
            key, node = f"{key}{part}.", node[part]
        key = key[:-1]
        if isinstance(v, dict) and isinstance(node, dict):
            out.update(_flatten(v, node, key + "."))
        else:
            out[key] = v
    return out


# --- value rules: one per key ------------------------------------------------------------------
# A rule returns None for a good value, else what the value must be (the message names the key).

def _integer(lo: int, hi: Optional[int] = None):
    def rule(v):
        if lo <= v and (hi is None or v <= hi):
            return None
        return f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
    return rule


def _real(lo: float, hi: float = math.inf, lo_open: bool = False, hi_open: bool = False):
    def rule(v):
        above = v > lo if lo_open else v >= lo
        below = v < hi if hi_open else v <= hi
        if math.isfinite(v) and above and below:
            return None
        if hi == math.inf:
            return f"a finite number {'>' if lo_open else '>='} {lo:g}"
        return f"a finite number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    return rule


def _choice(options):
    options = tuple(options)

    def rule(v):
        return None if v in options else f"one of {', '.join(options)}"
    return rule


def _optional(rule):
    return lambda v: None if v is None else rule(v)


def _non_empty(v):
    return None if v.strip() else "a non-empty string"


DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d{1,3})$")


def _device(v):
    return None if DEVICE.match(v) else "auto, cpu, cuda or cuda:N"


def _network(v):
    """A spec ``train.network.plan_network`` accepts (grammar, sizes >= 1, fit, parameter budget)."""
    try:
        plan_network(v)
    except ValueError as err:
        return f"a valid network spec ({err})"
    return None


MAX_T = 100_000
"""Largest ``data.T`` accepted (a bound against absurd allocations, far above any preset)."""

RULES = {
    "network": _network,
    "init_gain": _real(0, lo_open=True),
    "data.dataset": _choice(DATASETS),
    "data.data_dir": _optional(_non_empty),
    "data.encoder": _choice(ENCODERS),
    "data.T": _integer(1, MAX_T),
    "data.train_samples": _optional(_integer(1)),
    "data.test_samples": _optional(_integer(1)),
    "data.event_duration_us": _optional(_real(0, lo_open=True)),
    "neuron.model": _choice(("lif", "cuba")),
    "neuron.decay": _real(0, 1),
    "neuron.decay_syn": _real(0, 1),
    "neuron.decay_mem": _real(0, 1),
    "neuron.v_threshold": _real(0, lo_open=True),
    "neuron.surrogate": _choice(SURROGATES),
    "neuron.surrogate_width": _real(0, lo_open=True),
    "loss.name": _choice(LOSSES),
    "loss.tau": _real(0, lo_open=True),
    "loss.target_rate": _real(0, 1, lo_open=True),
    "optim.epochs": _integer(0),
    "optim.batch_size": _integer(1),
    "optim.lr": _real(0, lo_open=True),
    "optim.optimizer": _choice(("adam", "adamw", "sgd")),
    "optim.momentum": _real(0, 1, hi_open=True),
    "optim.weight_decay": _real(0),
    "optim.schedule": _choice(("cosine", "none")),
    "optim.grad_clip": _optional(_real(0, lo_open=True)),  # null: no clipping
    "optim.seed": _integer(0, 2 ** 63 - 1),
    "optim.device": _device,
    "optim.eval_batch_size": _integer(1),
    "optim.checkpoint_every": _integer(0),
    # The quantizer's ranges (export.quantize.QuantSpec checks them again; tests/test_config.py
    # holds the two tables equal).
    "quant.num_weight_bits": _integer(1, 8),
    "quant.rounding": _choice(("nearest", "floor")),
    "quant.target_vth": _integer(1, 2 ** 17 - 1),
    "quant.decay_bits": _integer(1, 12),
    "quant.vth_bits": _integer(1, 17),
    "quant.bias_exp": _optional(_integer(0, 7)),
}
"""What every value must be, by dotted key (booleans and types are checked by ``_coerce``)."""


def check_value(key: str, value) -> None:
    """Refuse a value that is out of range for ``key`` (``ValueError`` naming the key)."""
    rule = RULES.get(key)
    problem = rule(value) if rule is not None else None
    if problem is not None:
        raise ValueError(f"configuration key {key!r} must be {problem}, got {value!r}")


def _coerce(value, tp, key: str):
    """Check and convert one value against a dataclass field type (int, float, str, bool, Optional)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(types, "UnionType", ())):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], key)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ValueError(f"configuration key {key!r} needs a {tp.__name__}, got {value!r}")


def _build(cls, d: dict, prefix: str):
    if not isinstance(d, dict):
        raise ValueError(f"configuration section {prefix.rstrip('.') or '(top)'} must be a table, got {d!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown configuration key(s) {', '.join(prefix + u for u in sorted(unknown))}; "
                         f"known: {', '.join(prefix + n for n in sorted(names))}")
    kwargs = {}
    for name, value in d.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, prefix + name)
            check_value(prefix + name, kwargs[name])  # before a section's own checks can fire
    return cls(**kwargs)


def _yaml(text: str, where: str):
    """``yaml.safe_load`` with every failure as one line naming ``where``."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{where}{line}: invalid YAML ({problem})") from None
    except RecursionError:
        raise ValueError(f"{where}: invalid YAML (nested too deeply)") from None


def parse_set(items) -> dict:
    """``['optim.lr=0.01', 'neuron.model=cuba']`` -> dotted dict; values parsed as YAML scalars."""
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        out[key.strip()] = _yaml(raw, f"--set {key.strip()}") if raw.strip() else None
    return out


MAX_CONFIG_BYTES = 1 << 20
"""Largest configuration file read (1 MiB; a full configuration is about 1 kB)."""


def load_file(path) -> dict:
    """Read a YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON (``.json``) configuration file.

    Returns the top-level mapping; refuses (``ValueError`` naming the file, one line) a missing or
    oversized file, text that is not UTF-8, a parse error, nesting too deep to parse, and a top
    level that is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"configuration file {path} does not exist")
    if path.suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ValueError(f"configuration file {path}: use .yaml, .yml, .toml or .json")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ValueError(f"configuration file {path} is {size} bytes; a configuration is at most "
                         f"{MAX_CONFIG_BYTES} bytes")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"configuration file {path} is not UTF-8 text (byte {exc.start})") from None
    if path.suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python < 3.11
            import tomli as tomllib
        try:
            data = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, RecursionError) as exc:
            problem = str(exc).splitlines()[0] if str(exc) else "nested too deeply"
            raise ValueError(f"configuration file {path}: invalid TOML ({problem})") from None
    elif path.suffix == ".json":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            problem = str(exc) or "nested too deeply"
            raise ValueError(f"configuration file {path}: invalid JSON ({problem})") from None
    else:
        data = _yaml(text, f"configuration file {path}")
        data = {} if data is None else data  # an empty YAML file
    if not isinstance(data, dict):
        raise ValueError(f"configuration file {path} must hold a mapping at the top level, "
                         f"got {type(data).__name__}")
    return data


PRESETS: dict[str, dict] = {
    # 8x8 digits (scikit-learn), the built-in default: seconds on a laptop.
    "digits-mlp": {
        "network": "64-400-10",
        "data": {"dataset": "digits", "encoder": "bernoulli", "T": 16},
        "neuron": {"model": "lif", "decay": 0.2, "v_threshold": 0.5},
        "loss": {"name": "rate_mse"},
        "optim": {"epochs": 40, "batch_size": 32, "lr": 2e-3},
    },
    # A temporal task that needs memory: digits shown one row per step (8 rows x 2 steps), a recurrent
    # hidden layer ("64R": its spikes feed it back one step later), trained with STBP through the loop.
    "digits-rnn": {
        "network": "8-64R-10",
        "data": {"dataset": "digits", "encoder": "rows", "T": 16},
        "neuron": {"model": "lif", "decay": 0.5, "v_threshold": 0.5},
        "loss": {"name": "rate_mse"},
        "optim": {"epochs": 60, "batch_size": 32, "lr": 2e-3},
    },
    # Skip connections (README, "The integer graph"): six layers of neurons, the fifth also hears
    # the first and the third ("64+1+3"); without the skips this depth stays at chance (measured
    # 10% in 5 of 5 runs). QAT with Loihi's synaptic delay, so the exported graph (three Dense
    # edges merging into one group) runs in Lava step for step as trained.
    "digits-skip": {
        "network": "64-64-64-64-64-64+1+3-10",
        "data": {"dataset": "digits", "encoder": "bernoulli", "T": 16},
        "neuron": {"model": "lif", "decay": 0.2, "v_threshold": 0.5},
        "loss": {"name": "rate_mse"},
        "optim": {"epochs": 20, "batch_size": 32, "lr": 2e-3},
        "quant": {"qat": True, "synaptic_delay": True},
    },
    # Skip connections into convolutions (train/network.py: a 1x1 convolution from the source's spike
    # map): five 8-channel 3x3 layers, the fifth also hears the first and the third ("8C3p1+1+3").
    # Measured on the 2-core machine (10 epochs, QAT forward on the 450 test digits, seeds 1-3):
    # 96.89%, 96.00%, 96.44% with the skips; 10.00% in all three without them.
    "digits-conv-skip": {
        "network": "8x8-8C3p1-8C3p1-8C3p1-8C3p1-8C3p1+1+3-10",
        "data": {"dataset": "digits", "encoder": "bernoulli", "T": 16},
        "neuron": {"model": "lif", "decay": 0.2, "v_threshold": 0.5},
        "loss": {"name": "rate_mse"},
        "optim": {"epochs": 10, "batch_size": 32, "lr": 2e-3},
        "quant": {"qat": True, "synaptic_delay": True},
    },
    # STBP paper / authors' code: 784-800-10, T = 20, V_th 0.5, decay 0.2, rectangular a = 1.
    "mnist-mlp": {
        "network": "784-800-10",
        "data": {"dataset": "mnist", "encoder": "bernoulli", "T": 20},
        "neuron": {"model": "lif", "decay": 0.2, "v_threshold": 0.5},
        "loss": {"name": "rate_mse"},
        "optim": {"epochs": 20, "batch_size": 100, "lr": 1e-3},
    },
    # init_gain 2: with default weights the activity dies out before the output (measured: loss
    # exactly 0.1000, a silent output against a one-hot target, and 8% test accuracy after 30
    # batches); with 2 the same 30 batches reach 86.3% (bench/RESULTS.md, "Papers' tables").
    "mnist-conv": {
        "network": "28x28-15C5-P2-40C5-P2-300-10",
        "init_gain": 2.0,
        "data": {"dataset": "mnist", "encoder": "bernoulli", "T": 20},
        "neuron": {"model": "lif", "decay": 0.2, "v_threshold": 0.5},
        "loss": {"name": "rate_mse"},
        "optim": {"epochs": 20, "batch_size": 100, "lr": 1e-3},
    },
    "nmnist-mlp": {
        "network": "34x34x2-800-10",
        "data": {"dataset": "nmnist", "encoder": "events", "T": 30},
        "neuron": {"model": "lif", "decay": 0.2, "v_threshold": 0.5},
        "loss": {"name": "rate_mse"},
        "optim": {"epochs": 30, "batch_size": 50, "lr": 1e-3},
    },
    # Pooling as Loihi does it (a sum of spikes: a pooled neuron fires when any input of its window
    # fires) and a larger initial gain: with average pooling or default weights, activity dies out
    # on sparse event frames before it reaches the output (measured: no output spike at all).
    "nmnist-conv": {
        "network": "34x34x2-12C5-S2-64C5-S2-10",
        "init_gain": 2.0,
        "data": {"dataset": "nmnist", "encoder": "events", "T": 30},
        "neuron": {"model": "lif", "decay": 0.2, "v_threshold": 0.5},
        "loss": {"name": "rate_mse"},
        "optim": {"epochs": 30, "batch_size": 50, "lr": 1e-3},
    },
    # Second seed (spike-sequence labels): CUBA neurons, the label repeated over time as the target
    # train (target_rate 1 = encode_repeat(Y)), van Rossum loss (--set loss.name=hamming for the
    # Hamming distance), T = 25; the network and epochs of nmnist-rate50, its rate-coded STBP
    # baseline at T = 50. Threshold 2 and the arctan surrogate where STBP has 0.5 and a rectangle:
    # this CUBA integrates a constant input 10x (STBP's LIF 1.25x); at 0.5 the untrained network
    # saturates and the first updates push every output far below the rectangle's window, where no
    # gradient reaches it again (measured: all ten outputs silent after 5 steps). README.md,
    # "Spike-sequence labels".
    "nmnist-seq": {
        "network": "34x34x2-12C5-S2-64C5-S2-10",
        "init_gain": 2.0,
        "data": {"dataset": "nmnist", "encoder": "events", "T": 25},
        "neuron": {"model": "cuba", "decay_syn": 0.5, "decay_mem": 0.8, "v_threshold": 2.0,
                   "surrogate": "arctan", "surrogate_width": 1.0},
        "loss": {"name": "van_rossum", "tau": 5.0, "target_rate": 1.0},
        "optim": {"epochs": 10, "batch_size": 50, "lr": 1e-3},
    },
    "nmnist-rate50": {
        "network": "34x34x2-12C5-S2-64C5-S2-10",
        "init_gain": 2.0,
        "data": {"dataset": "nmnist", "encoder": "events", "T": 50},
        "neuron": {"model": "lif", "decay": 0.2, "v_threshold": 0.5},
        "loss": {"name": "rate_mse"},
        "optim": {"epochs": 10, "batch_size": 50, "lr": 1e-3},
    },
    # The same method on digits (seconds): CUBA, van Rossum (or --set loss.name=hamming).
    "digits-seq": {
        "network": "64-400-10",
        "data": {"dataset": "digits", "encoder": "bernoulli", "T": 16},
        "neuron": {"model": "cuba", "decay_syn": 0.5, "decay_mem": 0.8, "v_threshold": 1.0,
                   "surrogate": "arctan", "surrogate_width": 1.0},
        "loss": {"name": "van_rossum", "tau": 5.0, "target_rate": 1.0},
        "optim": {"epochs": 40, "batch_size": 32, "lr": 2e-3},
    },
    # Beyond classes: each digit asks the ten outputs for its own spike pattern (train.patterns.
    # digit_patterns); QAT with Loihi's synaptic delay, so Lava emits the trains step for step
    # (spikeport/pattern_task.py, bench/spike_patterns.py). van Rossum tau 3: sharper timing than 5.
    "digits-patterns": {
        "network": "64-400-10",
        "data": {"dataset": "digits", "encoder": "bernoulli", "T": 16},
        "neuron": {"model": "cuba", "decay_syn": 0.5, "decay_mem": 0.8, "v_threshold": 1.0,
                   "surrogate": "arctan", "surrogate_width": 1.0},
        "loss": {"name": "van_rossum", "tau": 3.0, "targets": "spikeport.train.patterns:digit_patterns"},
        "optim": {"epochs": 100, "batch_size": 32, "lr": 5e-3},
        "quant": {"qat": True, "synaptic_delay": True},
    },
}


def make_config(preset: Optional[str] = None, file=None, overrides: Optional[dict] = None,
                data_dir: Optional[str] = None) -> Config:
    """Resolve a configuration: preset, then file, then overrides, then ``data_dir``."""
    cfg = Config()
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        cfg = cfg.with_overrides(PRESETS[preset])
    if file is not None:
        data = load_file(file)
        try:
            cfg = cfg.with_overrides(data)
        except ValueError as err:
            raise ValueError(f"configuration file {file}: {err}") from None
    if overrides:
        cfg = cfg.with_overrides(overrides)
    if data_dir is not None:
        cfg = cfg.with_overrides({"data.data_dir": str(data_dir)})
    return cfg
