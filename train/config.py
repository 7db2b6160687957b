"""Training configuration: frozen dataclasses, presets, files (YAML/TOML) and ``key=value`` overrides.

A configuration has five sections; ``--set`` addresses fields with dots::

    network = "784-800-10", init_gain = 1.0
    [data]    dataset, data_dir, encoder, T, train_samples, test_samples, event_duration_us
    [neuron]  model, decay, decay_syn, decay_mem, v_threshold, surrogate, surrogate_width, ...
    [loss]    name, tau, target_rate
    [optim]   epochs, batch_size, lr, optimizer, weight_decay, schedule, seed, device, ...
    [quant]   qat, synaptic_delay, num_weight_bits, rounding, target_vth

Precedence: preset < config file < ``--set`` overrides (< ``--data-dir``).
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .losses import LossSpec
from .network import NeuronSpec


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
class QuantConfig:
    """Deployment-aware training and export options.

    ``qat`` trains with fake quantization (the forward pass uses the integer values export will
    produce; needs the export stage, attached by ``spikeport train``); ``synaptic_delay`` trains
    with Loihi's one-step delay per synaptic layer. The other fields are the quantizer's options
    (``export.quantize.QuantSpec``); for a network meant for lava-dl netx, set ``target_vth = 1``
    and ``bias_exp = 6``.
    """

    qat: bool = False
    synaptic_delay: bool = False
    num_weight_bits: int = 8
    rounding: str = "nearest"
    target_vth: int = 1024
    decay_bits: int = 12
    vth_bits: int = 17
    shared_exponent: bool = False
    bias_exp: Optional[int] = None


@dataclass(frozen=True)
class Config:
    network: str = "64-400-10"
    init_gain: float = 1.0  # multiplies PyTorch's default initial weights (sparse event inputs need > 1)
    data: DataConfig = field(default_factory=DataConfig)
    neuron: NeuronSpec = field(default_factory=NeuronSpec)
    loss: LossSpec = field(default_factory=LossSpec)
    optim: OptimConfig = field(default_factory=OptimConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        return _build(cls, d, "")

    def with_overrides(self, overrides: dict) -> "Config":
        """Merge a nested or dotted dict of overrides (``{'optim.lr': 0.01}`` or ``{'optim': {'lr': 0.01}}``)."""
        merged = self.to_dict()
        for key, value in _flatten(overrides).items():
            node = merged
            *parents, leaf = key.split(".")
            for p in parents:
                if not isinstance(node.get(p), dict):
                    raise ValueError(f"unknown configuration key {key!r}")
                node = node[p]
            if leaf not in node:
                raise ValueError(f"unknown configuration key {key!r}; known here: {', '.join(node)}")
            node[leaf] = value
        return Config.from_dict(merged)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


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
    return cls(**kwargs)


def parse_set(items) -> dict:
    """``['optim.lr=0.01', 'neuron.model=cuba']`` -> dotted dict; values parsed as YAML scalars."""
    import yaml

    out = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return out


def load_file(path) -> dict:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) configuration file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"configuration file {path} does not exist")
    text = path.read_text()
    if path.suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python < 3.11
            import tomli as tomllib
        return tomllib.loads(text)
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"configuration file {path} must hold a mapping at the top level")
        return data
    if path.suffix == ".json":
        return json.loads(text)
    raise ValueError(f"configuration file {path}: use .yaml, .yml, .toml or .json")


PRESETS: dict[str, dict] = {
    # 8x8 digits (scikit-learn), the built-in default: seconds on a laptop.
    "digits-mlp": {
        "network": "64-400-10",
        "data": {"dataset": "digits", "encoder": "bernoulli", "T": 16},
        "neuron": {"model": "lif", "decay": 0.2, "v_threshold": 0.5},
        "loss": {"name": "rate_mse"},
        "optim": {"epochs": 40, "batch_size": 32, "lr": 2e-3},
    },
    # STBP paper / authors' code: 784-800-10, T = 20, V_th 0.5, decay 0.2, rectangular a = 1.
    "mnist-mlp": {
        "network": "784-800-10",
        "data": {"dataset": "mnist", "encoder": "bernoulli", "T": 20},
        "neuron": {"model": "lif", "decay": 0.2, "v_threshold": 0.5},
        "loss": {"name": "rate_mse"},
        "optim": {"epochs": 20, "batch_size": 100, "lr": 1e-3},
    },
    "mnist-conv": {
        "network": "28x28-15C5-P2-40C5-P2-300-10",
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
    # Second seed: CUBA neurons, spike-sequence labels, van Rossum loss, T = 25.
    "nmnist-seq": {
        "network": "34x34x2-12C5-S2-64C5-S2-10",
        "init_gain": 2.0,
        "data": {"dataset": "nmnist", "encoder": "events", "T": 25},
        "neuron": {"model": "cuba", "decay_syn": 0.5, "decay_mem": 0.8, "v_threshold": 0.5},
        "loss": {"name": "van_rossum", "tau": 5.0, "target_rate": 0.5},
        "optim": {"epochs": 30, "batch_size": 50, "lr": 1e-3},
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
        cfg = cfg.with_overrides(load_file(file))
    if overrides:
        cfg = cfg.with_overrides(overrides)
    if data_dir is not None:
        cfg = cfg.with_overrides({"data.data_dir": str(data_dir)})
    return cfg
