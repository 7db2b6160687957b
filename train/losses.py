"""Losses on output spike trains and the matching decoders.

Output spikes ``o`` are ``(T, B, C)``; labels are class indices ``(B,)``.

- ``rate_mse`` (STBP): ``mean_{b,c} (1/T sum_t o[t,b,c] - onehot[b,c])^2``.
- ``count_ce``: cross-entropy with the spike counts ``sum_t o`` as logits.
- ``van_rossum``: both trains filtered by the causal kernel ``exp(-t/tau)``
  (``f[t] = e f[t-1] + s[t]``, ``e = exp(-1/tau)``), then ``1/(T C) sum_{t,c} (f_o - f_y)^2``,
  averaged over the batch.
- ``hamming``: ``1/(T C) sum_{t,c} |o - y|``, written ``o + y - 2 o y`` (exact for 0/1 values and
  differentiable through the surrogate).

Sequence losses compare with target trains ``y`` built from the label (``target_trains``): the
label's neuron spikes at a regular fraction ``rate`` of the steps (``rate = 1``: every step, i.e.
the one-hot label repeated over time), the others stay silent. Their decoder picks the class whose
target train is nearest to the output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOSSES = ("rate_mse", "count_ce", "van_rossum", "hamming")


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
    """Per-sample fraction of mismatching (step, neuron) pairs ``(B,)`` for 0/1 trains."""
    return (o + y - 2 * o * y).mean(dim=(0, 2))


@dataclass(frozen=True)
class LossSpec:
    """Which loss, with its options: ``tau`` (van Rossum, steps), ``target_rate`` (sequence targets)."""

    name: str = "rate_mse"
    tau: float = 5.0
    target_rate: float = 1.0

    def __post_init__(self):
        if self.name not in LOSSES:
            raise ValueError(f"unknown loss {self.name!r}; choose one of {', '.join(LOSSES)}")

    @property
    def is_sequence(self) -> bool:
        return self.name in ("van_rossum", "hamming")

    def distance(self, o: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.name == "van_rossum":
            return van_rossum_distance(o, y, self.tau)
        return hamming_distance(o, y)

    def __call__(self, o: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        T, _, C = o.shape
        if self.name == "rate_mse":
            return ((o.mean(0) - F.one_hot(labels, C).to(o.dtype)) ** 2).mean()
        if self.name == "count_ce":
            return F.cross_entropy(o.sum(0), labels)
        return self.distance(o, target_trains(labels, C, T, self.target_rate, o.dtype)).mean()

    def decode(self, o: torch.Tensor) -> torch.Tensor:
        """Predicted classes ``(B,)``: most spikes, or the nearest target train for sequence losses."""
        T, B, C = o.shape
        if not self.is_sequence:
            return o.sum(0).argmax(-1)
        classes = torch.arange(C, device=o.device)
        targets = target_trains(classes, C, T, self.target_rate, o.dtype)  # (T, C, C): one train per class
        d = torch.stack([self.distance(o, targets[:, c:c + 1].expand(T, B, C)) for c in range(C)], -1)
        return d.argmin(-1)
