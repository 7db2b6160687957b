"""Losses on output spike trains and the matching decoders.

Output spikes ``o`` are ``(T, B, C)``; labels are integer indices ``(B,)``.

- ``rate_mse`` (STBP): ``mean_{b,c} (1/T sum_t o[t,b,c] - onehot[b,c])^2``.
- ``count_ce``: cross-entropy with the spike counts ``sum_t o`` as logits.
- ``van_rossum``: both trains filtered by the causal kernel ``exp(-t/tau)``
  (``f[t] = e f[t-1] + s[t]``, ``e = exp(-1/tau)``), then ``1/(T C) sum_{t,c} (f_o - f_y)^2``,
  averaged over the batch.
- ``hamming``: the fraction of mismatching (step, neuron) pairs, ``1/(T C) sum_{t,c} |o - y|``,
  computed as ``1/(T C) sum_{t,c} (o - y)^2`` (see below).

Sequence losses (``van_rossum``, ``hamming``; the second seed's spike-sequence labels) compare the
output with a target train ``y`` per sample, looked up by the label in a target table
``(K, T, C)`` (``LossSpec.table``):

- by default (``targets = None``) the table holds one train per class (``K = C``,
  ``target_trains``): the class's own neuron spikes at a regular fraction ``target_rate`` of the
  steps, the others stay silent. ``target_rate = 1`` is the seed's ``encode_repeat(Y)``: the
  one-hot label repeated at every step.
- ``targets = "FILE.npy"``: any table, a 0/1 array ``(K, T, C)``; the label ``k`` selects train
  ``k`` (per-sample targets: label each sample with its own row).
- ``targets = "spikeport.module:function"``: ``function(T, C)`` returns the table (a function
  giving every label's train, e.g. ``spikeport.train.patterns:digit_patterns``). Only modules of
  spikeport itself are imported: a configuration file is data, and naming another module in it
  must not run that module's code.

The decoder of a sequence loss returns the label whose target train is nearest to the output.

Choices the second seed leaves open, and why (measured on digits; ``README.md``, "Spike-sequence
labels"):

- Hamming's gradient. On 0/1 trains ``|o - y| = (o - y)^2 = o + y - 2 o y``; the forms differ only
  in the derivative the surrogate spike passes back. ``o + y - 2 o y`` has ``dL/do = 1 - 2 y``
  at every (step, neuron), matching or not: each non-label neuron is pushed down at every step
  even when it is already silent, nine classes against one, and within an epoch every output
  neuron falls below the surrogate's window and stays silent (accuracy 10%). ``(o - y)^2`` has
  ``dL/do = 2 (o - y)``: a gradient only where the trains disagree, an error-driven rule as
  van Rossum's is, and the classes balance themselves.
- Targets with ``target_rate < 1`` fix the phase of every target spike; the Hamming distance then
  punishes a neuron that fires at the right rate one step off as much as a silent one. The seed's
  ``encode_repeat`` (rate 1) is the default.
"""
from __future__ import annotations

import functools
import importlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

LOSSES = ("rate_mse", "count_ce", "van_rossum", "hamming")
SEQUENCE_LOSSES = ("van_rossum", "hamming")

_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def target_trains(labels: torch.Tensor, n_classes: int, T: int, rate: float = 1.0,
                  dtype=torch.float32) -> torch.Tensor:
    """``(T, B, C)`` target spike trains: class ``labels[b]`` fires at ``max(1, round(rate*T))`` evenly
    spaced steps (the last step included), the others never."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"target rate must be in (0, 1], got {rate!r}")
    n = max(1, round(rate * T))
    steps = torch.tensor([T - 1 - (k * T) // n for k in range(n)], dtype=torch.long)
    pattern = torch.zeros(T, dtype=dtype)
    pattern[steps] = 1.0
    onehot = F.one_hot(labels.long(), n_classes).to(dtype)  # (B, C)
    return pattern[:, None, None].to(labels.device) * onehot.unsqueeze(0)


def check_table(table, T: int, C: int, source: str) -> np.ndarray:
    """A target table as float32 ``(K, T, C)`` of 0/1 values, or a ``ValueError`` naming what is wrong."""
    a = np.asarray(table)
    if a.ndim != 3 or a.shape[1:] != (T, C) or a.shape[0] < 1:
        raise ValueError(f"target table {source} must have shape (labels, T={T}, outputs={C}), "
                         f"got {a.shape}")
    if a.dtype.kind not in "biuf" or not np.all((a == 0) | (a == 1)):
        raise ValueError(f"target table {source} must hold 0/1 spikes, got values of dtype {a.dtype} "
                         f"outside {{0, 1}}")
    return a.astype(np.float32)


@functools.lru_cache(maxsize=16)
def _read_table(source: str, T: int, C: int, stamp) -> np.ndarray:
    if source.endswith(".npy"):
        try:
            table = np.load(source, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read target table {source!r}: {err}") from None
    else:
        module, name = source.split(":")
        if not (module == "spikeport" or module.startswith("spikeport.")) or not name.isidentifier():
            raise ValueError(f"target function {source!r}: only spikeport's own modules are imported "
                             "(e.g. 'spikeport.train.patterns:digit_patterns'); use a .npy table for other targets")
        try:
            fn = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"target function {source!r} not found: {err}") from None
        table = fn(T, C)
        if isinstance(table, torch.Tensor):
            table = table.detach().cpu().numpy()
    out = check_table(table, T, C, repr(source))
    out.setflags(write=False)
    return out


def load_target_table(source: str, T: int, C: int) -> np.ndarray:
    """The table named by ``source`` (``FILE.npy`` or ``module:function``), ``(K, T, C)`` float32,
    read once per file version (a changed file is read again)."""
    stamp = None
    if source.endswith(".npy"):
        p = Path(source)
        if not p.is_file():
            raise ValueError(f"target table file {source!r} does not exist")
        st = p.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    return _read_table(source, int(T), int(C), stamp)


def van_rossum_filter(s: torch.Tensor, tau: float) -> torch.Tensor:
    """Causal exponential filter over time: ``(T, ...) -> (T, ...)``, one matrix multiply."""
    T = s.shape[0]
    e = math.exp(-1.0 / tau)
    t = torch.arange(T, device=s.device)
    lag = (t[:, None] - t[None, :]).to(s.dtype)  # (T, T)
    kernel = torch.where(lag >= 0, e ** lag.clamp_min(0), torch.zeros((), dtype=s.dtype, device=s.device))
    return (kernel @ s.reshape(T, -1)).reshape(s.shape)


def van_rossum_distance(o: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    """Per-sample distance ``(B,)`` between trains ``(T, B, C)``."""
    d = van_rossum_filter(o - y, tau)  # linear filter: filter(o) - filter(y)
    return (d * d).mean(dim=(0, 2))


def hamming_distance(o: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample fraction of mismatching (step, neuron) pairs ``(B,)`` for 0/1 trains, written
    ``(o - y)^2`` so that only mismatches pass a gradient (module docstring)."""
    d = o - y
    return (d * d).mean(dim=(0, 2))


@dataclass(frozen=True)
class LossSpec:
    """Which loss, with its options.

    ``tau``: van Rossum time constant in steps; ``target_rate``: the class targets' spike rate;
    ``targets``: another target table (``FILE.npy`` or ``module:function``, module docstring).
    """

    name: str = "rate_mse"
    tau: float = 5.0
    target_rate: float = 1.0
    targets: Optional[str] = None

    def __post_init__(self):
        if self.name not in LOSSES:
            raise ValueError(f"unknown loss {self.name!r}; choose one of {', '.join(LOSSES)}")
        if not (isinstance(self.tau, (int, float)) and math.isfinite(self.tau) and self.tau > 0):
            raise ValueError(f"van Rossum tau must be a positive number of steps, got {self.tau!r}")
        if not (isinstance(self.target_rate, (int, float)) and 0.0 < self.target_rate <= 1.0):
            raise ValueError(f"target rate must be in (0, 1], got {self.target_rate!r}")
        if self.targets is not None:
            if not isinstance(self.targets, str) or not (self.targets.endswith(".npy")
                                                         or _FUNCTION.match(self.targets)):
                raise ValueError(f"targets must be a .npy file or 'package.module:function', got {self.targets!r}")
            if not self.is_sequence:
                raise ValueError(f"targets={self.targets!r} needs a sequence loss (van_rossum or hamming), "
                                 f"not {self.name!r}")

    @property
    def is_sequence(self) -> bool:
        return self.name in SEQUENCE_LOSSES

    def distance(self, o: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample distance ``(B,)`` of the loss between trains ``(T, B, C)``."""
        if self.name == "van_rossum":
            return van_rossum_distance(o, y, self.tau)
        if self.name == "hamming":
            return hamming_distance(o, y)
        raise ValueError(f"loss {self.name!r} is not a distance between spike trains")

    def table(self, T: int, C: int, device=None, dtype=torch.float32) -> torch.Tensor:
        """The target table ``(K, T, C)``: one train per label."""
        if self.targets is None:
            return target_trains(torch.arange(C), C, T, self.target_rate, dtype).transpose(0, 1).to(device)
        return torch.tensor(load_target_table(self.targets, T, C), dtype=dtype, device=device)  # a copy: the cache stays intact

    def target(self, labels: torch.Tensor, T: int, C: int, dtype=torch.float32) -> torch.Tensor:
        """Target trains ``(T, B, C)`` of a batch of labels."""
        table = self.table(T, C, labels.device, dtype)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= table.shape[0]):
            bad = int(labels.max()) if int(labels.max()) >= table.shape[0] else int(labels.min())
            raise ValueError(f"label {bad} has no target train (the table holds {table.shape[0]})")
        return table[labels.long()].transpose(0, 1)

    def __call__(self, o: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        T, _, C = o.shape
        if self.name == "rate_mse":
            return ((o.mean(0) - F.one_hot(labels, C).to(o.dtype)) ** 2).mean()
        if self.name == "count_ce":
            return F.cross_entropy(o.sum(0), labels)
        return self.distance(o, self.target(labels, T, C, o.dtype)).mean()

    def distances(self, o: torch.Tensor) -> torch.Tensor:
        """Distance of every output to every target train: ``(B, K)``."""
        T, B, C = o.shape
        table = self.table(T, C, o.device, o.dtype)  # (K, T, C)
        return torch.stack([self.distance(o, table[k][:, None].expand(T, B, C)) for k in range(table.shape[0])], -1)

    def decode(self, o: torch.Tensor) -> torch.Tensor:
        """Predicted labels ``(B,)``: most spikes, or the nearest target train for sequence losses."""
        if not self.is_sequence:
            return o.sum(0).argmax(-1)
        return self.distances(o).argmin(-1)
