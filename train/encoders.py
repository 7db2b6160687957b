"""Input encoders: turn a batch of samples into time-major spike (or current) trains ``(T, B, *F)``.

- ``bernoulli``: rate coding of intensities in [0, 1] (STBP): ``x[t] ~ Bernoulli(p)`` i.i.d. per step.
- ``repeat``: the same analog input at every step (direct input, the second seed's ``encode_repeat``).
- ``events``: address events binned into ``T`` frames (N-MNIST), one channel per polarity.
- ``rows``: an image presented one row per step (``T / H`` steps each, Bernoulli spikes of the
  row's intensities), so the network sees ``C * W`` inputs per step and must remember earlier rows:
  a temporal task for recurrent networks (digits: 8 rows of 8 pixels).
"""
from __future__ import annotations

import numpy as np
import torch

ENCODERS = ("bernoulli", "repeat", "events", "rows")


def encoded_shape(name: str, input_shape: tuple) -> tuple:
    """The per-step feature shape an encoder produces from samples of ``input_shape``."""
    if name == "rows":
        if len(input_shape) != 3:
            raise ValueError(f"the rows encoder needs (C, H, W) images, got samples of shape {tuple(input_shape)}")
        return (input_shape[0] * input_shape[2],)
    return tuple(input_shape)


def rows(x: torch.Tensor, T: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(B, C, H, W)`` intensities in [0, 1] -> ``(T, B, C*W)`` spikes: row ``h`` during steps
    ``[h T/H, (h+1) T/H)``, each step Bernoulli of that row's intensities."""
    if x.dim() != 4:
        raise ValueError(f"the rows encoder needs (B, C, H, W) images, got {tuple(x.shape)}")
    B, C, H, W = x.shape
    if T % H:
        raise ValueError(f"the rows encoder shows each of the {H} rows for the same number of steps: T = {T} must "
                         f"be a multiple of {H}")
    seq = x.permute(2, 0, 1, 3).reshape(H, B, C * W).repeat_interleave(T // H, dim=0)  # (T, B, C*W)
    return bernoulli(seq, 1, generator)[0]


def bernoulli(x: torch.Tensor, T: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(B, *F)`` intensities in [0, 1] -> ``(T, B, *F)`` 0/1 spikes, ``P(spike) = x``."""
    if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ValueError(f"Bernoulli encoding needs intensities in [0, 1], got range "
                         f"[{float(x.min())}, {float(x.max())}]")
    u = torch.rand((T, *x.shape), generator=generator, dtype=x.dtype, device="cpu").to(x.device)
    return (u < x).to(x.dtype)


def repeat(x: torch.Tensor, T: int) -> torch.Tensor:
    """``(B, *F) -> (T, B, *F)``: the same input at every step."""
    return x.unsqueeze(0).expand(T, *x.shape).contiguous()


def bin_events(events, T: int, shape=(2, 34, 34), duration_us: float | None = None,
               binary: bool = True) -> torch.Tensor:
    """Bin address events into ``T`` frames.

    Parameters
    ----------
    events : sequence of structured arrays with fields ``x``, ``y``, ``p``, ``t`` (microseconds)
        One array per sample (``train.datasets.EVENT_DTYPE``).
    T : int
        Number of frames; frame ``k`` holds events with ``k*d/T <= t < (k+1)*d/T``.
    shape : (C, H, W)
        Polarity channels, rows (y) and columns (x).
    duration_us : float, optional
        Window length ``d``; events at or after it are dropped. Default: each sample's own span
        (last timestamp + 1), so every sample fills all ``T`` frames.
    binary : bool
        Clip counts at 1 (a spike per pixel and frame) or keep event counts.

    Returns
    -------
    Tensor, float32, ``(T, B, C, H, W)``.
    """
    C, H, W = shape
    B = len(events)
    frames = np.zeros((B, T, C, H, W), dtype=np.float32)
    for b, ev in enumerate(events):
        if len(ev) == 0:
            continue
        if int(ev["x"].max()) >= W or int(ev["y"].max()) >= H or int(ev["p"].max()) >= C:
            raise ValueError(f"sample {b}: event address outside the sensor {shape} "
                             f"(max x={int(ev['x'].max())}, y={int(ev['y'].max())}, p={int(ev['p'].max())})")
        t = ev["t"].astype(np.float64)
        d = float(duration_us) if duration_us else float(t.max()) + 1.0
        k = np.floor(t * T / d).astype(np.int64)
        keep = (k >= 0) & (k < T)
        flat = (((k[keep] * C + ev["p"][keep]) * H + ev["y"][keep]) * W + ev["x"][keep])
        frames[b].reshape(-1)[:] = np.bincount(flat, minlength=T * C * H * W)
    if binary:
        np.minimum(frames, 1.0, out=frames)
    return torch.from_numpy(frames).transpose(0, 1).contiguous()


def encode(name: str, inputs, T: int, generator: torch.Generator | None = None, **options) -> torch.Tensor:
    """Encode a batch by encoder name (``ENCODERS``)."""
    if name == "bernoulli":
        return bernoulli(inputs, T, generator)
    if name == "repeat":
        return repeat(inputs, T)
    if name == "events":
        return bin_events(inputs, T, **options)
    if name == "rows":
        return rows(inputs, T, generator)
    raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
