"""Synaptic layers over time-major tensors ``(T, B, *F)``.

Each layer applies its operator to all ``T`` steps at once (time folded into the batch), so the
synaptic input of a layer for a whole sequence is one batched matrix multiply or convolution;
only neurons (``train.neurons``) loop over time. Synaptic layers carry weights only: biases live
in the neuron that follows (as on Loihi, where the bias is a neuron register).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _fold(x: torch.Tensor) -> torch.Tensor:  # (T, B, *F) -> (T*B, *F)
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _unfold(y: torch.Tensor, T: int) -> torch.Tensor:  # (T*B, *F) -> (T, B, *F)
    return y.reshape(T, y.shape[0] // T, *y.shape[1:])


class Linear(nn.Linear):
    """Dense synapses, no bias: ``(T, B, in) -> (T, B, out)``."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x):
        return self.apply_weight(x, self.weight)

    def apply_weight(self, x, weight):
        """The layer with ``weight`` in place of its own (used by fake quantization)."""
        return F.linear(x, weight)


class Skip(nn.Linear):
    """Dense synapses of a skip connection, no bias: the spikes of an earlier layer (flattened in
    C order) into the input current of a later dense layer, ``(T, B, *F) -> (T, B, out)``.

    ``source``: the spec's layer number of the sender (0 the network input, ``k`` the k-th layer
    with neurons); ``target``: the block it feeds (0-based, as ``SpikingNetwork.blocks()``).
    """

    def __init__(self, source: int, target: int, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)
        self.source, self.target = int(source), int(target)

    def forward(self, x):
        return self.apply_weight(x, self.weight)

    def apply_weight(self, x, weight):
        """The skip with ``weight`` in place of its own (used by fake quantization)."""
        return F.linear(x.reshape(x.shape[0], x.shape[1], -1), weight)

    def extra_repr(self):
        return f"source={self.source}, target={self.target}, " + super().extra_repr()


class ConvSkip(nn.Conv2d):
    """A 1x1 convolution of a skip connection, no bias: the spike map of an earlier layer
    ``(T, B, C_s, H_s, W_s)`` into the input current of a later convolution layer,
    ``(T, B, C, H, W)``, with ``stride`` (per axis) chosen by ``train.network`` so that the
    shapes meet; a pixel ``(y, x)`` of the target hears the source's pixel ``(y s_h, x s_w)``.

    ``source``, ``target``: as ``Skip``.
    """

    def __init__(self, source: int, target: int, in_channels: int, out_channels: int, stride: tuple = (1, 1)):
        super().__init__(in_channels, out_channels, 1, stride=tuple(stride), padding=0, bias=False)
        self.source, self.target = int(source), int(target)

    def forward(self, x):
        return self.apply_weight(x, self.weight)

    def apply_weight(self, x, weight):
        """The skip with ``weight`` in place of its own (used by fake quantization)."""
        return _unfold(self._conv_forward(_fold(x), weight, None), x.shape[0])

    def extra_repr(self):
        return f"source={self.source}, target={self.target}, " + super().extra_repr()


class Conv2d(nn.Conv2d):
    """2-d convolution, no bias: ``(T, B, C, H, W) -> (T, B, C', H', W')``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)

    def forward(self, x):
        return self.apply_weight(x, self.weight)

    def apply_weight(self, x, weight):
        """The layer with ``weight`` in place of its own (used by fake quantization)."""
        return _unfold(self._conv_forward(_fold(x), weight, None), x.shape[0])


class Pool2d(nn.Module):
    """Non-overlapping ``k x k`` pooling: ``mode='avg'`` (mean, STBP) or ``'sum'`` (Loihi's unit-weight
    convolution). ``(T, B, C, H, W) -> (T, B, C, H//k, W//k)``."""

    def __init__(self, kernel_size: int, mode: str = "avg"):
        super().__init__()
        if mode not in ("avg", "sum"):
            raise ValueError(f"pooling mode must be 'avg' or 'sum', got {mode!r}")
        self.kernel_size = int(kernel_size)
        self.mode = mode

    def forward(self, x):
        y = F.avg_pool2d(_fold(x), self.kernel_size)
        if self.mode == "sum":
            y = y * (self.kernel_size ** 2)
        return _unfold(y, x.shape[0])

    def equivalent_weight(self, channels: int) -> torch.Tensor:
        """The pooling as a convolution kernel ``(C, C, k, k)``: ``1/k**2`` (avg) or 1 (sum) on the
        channel diagonal, applied with stride ``k``."""
        k = self.kernel_size
        w = torch.zeros(channels, channels, k, k)
        w[torch.arange(channels), torch.arange(channels)] = 1.0 / (k * k) if self.mode == "avg" else 1.0
        return w

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, mode={self.mode}"


class Flatten(nn.Module):
    """``(T, B, *F) -> (T, B, prod(F))`` in PyTorch's C-order."""

    def forward(self, x):
        return x.reshape(x.shape[0], x.shape[1], -1)


class Dropout(nn.Module):
    """Dropout with one mask per sample shared by all time steps (a dropped neuron stays silent for
    the whole sequence, as in STBP's code), scaled by ``1/(1-p)`` in training."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        mask = torch.empty_like(x[0]).bernoulli_(1 - self.p) / (1 - self.p)  # (B, *F)
        return x * mask

    def extra_repr(self):
        return f"p={self.p}"
