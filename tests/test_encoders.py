"""Tests for train.encoders: Bernoulli rate coding, repetition, event binning."""

import math

import numpy as np
import pytest
import torch

from spikeport.train.datasets import EVENT_DTYPE
from spikeport.train.encoders import encoded_shape, ENCODERS, bernoulli, bin_events, encode, repeat

# ----------------------------------------------------------------- bernoulli


def test_bernoulli_rate_matches_intensity():
    levels = [0.0, 0.05, 0.25, 0.5, 0.8, 0.97, 1.0]
    B, T = 40, 500
    x = torch.tensor(levels).repeat(B, 1)  # (B, 7)
    gen = torch.Generator().manual_seed(1234)
    s = bernoulli(x, T, gen)
    assert s.shape == (T, B, len(levels)) and s.dtype == torch.float32
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    n = T * B
    rates = s.mean(dim=(0, 1)).tolist()
    for p, r in zip(levels, rates):
        std = math.sqrt(p * (1 - p) / n)  # binomial standard deviation of the mean
        if std == 0:
            assert r == p  # intensities 0 and 1 are deterministic
        else:
            assert abs(r - p) < 5 * std, (p, r, std)


def test_bernoulli_steps_are_independent():
    """Consecutive steps of one input are uncorrelated (i.i.d. per step): P(s[t]=1, s[t+1]=1) = p^2."""
    p, B, T = 0.5, 200, 200
    s = bernoulli(torch.full((B, 1), p), T, torch.Generator().manual_seed(7))
    both = (s[1:] * s[:-1]).mean().item()
    n = (T - 1) * B
    # Z[t] = s[t] s[t+1]: Var Z = p^2 (1 - p^2); neighbours share a factor, Cov(Z[t], Z[t+1]) = p^3 - p^4.
    var = (p * p * (1 - p * p) + 2 * (p ** 3 - p ** 4)) / n
    assert abs(both - p * p) < 5 * math.sqrt(var)


def test_bernoulli_same_seed_same_output_and_shape():
    x = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    a = bernoulli(x, 9, torch.Generator().manual_seed(42))
    b = bernoulli(x, 9, torch.Generator().manual_seed(42))
    c = bernoulli(x, 9, torch.Generator().manual_seed(43))
    assert a.shape == (9, 3, 2, 4, 4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert encode("bernoulli", x, 9, generator=torch.Generator().manual_seed(42)).equal(a)


def test_bernoulli_keeps_dtype():
    x = torch.full((2, 3), 0.5, dtype=torch.float64)
    assert bernoulli(x, 4, torch.Generator().manual_seed(0)).dtype == torch.float64


@pytest.mark.parametrize("bad", [-0.01, 1.01, 255.0])
def test_bernoulli_rejects_intensities_outside_unit_interval(bad):
    x = torch.tensor([[0.2, bad, 0.7]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bernoulli(x, 5)


def test_bernoulli_empty_input():
    assert bernoulli(torch.zeros(0, 3), 4).shape == (4, 0, 3)


# ----------------------------------------------------------------- repeat


def test_repeat():
    x = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(0))
    r = repeat(x, 6)
    assert r.shape == (6, 3, 2, 5)
    for t in range(6):
        assert torch.equal(r[t], x)
    assert r.is_contiguous()
    r[0, 0, 0, 0] = 99.0  # a real copy, not a view of x
    assert x[0, 0, 0] != 99.0
    assert torch.equal(encode("repeat", x, 6), repeat(x, 6))


# ----------------------------------------------------------------- events


def make_events(rows):
    """Structured event array from (x, y, p, t) tuples."""
    return np.array(rows, dtype=EVENT_DTYPE)


def reference_frames(events, T, shape, duration_us=None, binary=True):
    """Frames from the docstring rule: frame k = floor(t T / d) holds k d/T <= t < (k+1) d/T, d defaults to
    the sample's last timestamp + 1; channel p, row y, column x; events at or after d are dropped."""
    C, H, W = shape
    out = torch.zeros(T, len(events), C, H, W)
    for b, ev in enumerate(events):
        if len(ev) == 0:
            continue
        d = duration_us if duration_us is not None else max(int(e["t"]) for e in ev) + 1
        for e in ev:
            t = int(e["t"])
            if t >= d:
                continue
            k = (t * T) // d  # exact integer floor
            out[k, b, int(e["p"]), int(e["y"]), int(e["x"])] += 1
    return out.clamp(max=1.0) if binary else out


SHAPE = (2, 4, 5)  # C, H, W

SAMPLE0 = make_events([
    (0, 0, 0, 0),      # first frame, corner
    (4, 3, 1, 99),     # last timestamp: last frame, opposite corner, on-polarity
    (2, 1, 1, 50),     # t = d/2: frame T/2 exactly
    (2, 1, 1, 55),     # same pixel and frame: counts 2
    (3, 2, 0, 24),     # just before the frame 0 | frame 1 edge (d/T = 25)
    (3, 2, 0, 25),     # on the edge: frame 1
])
SAMPLE1 = make_events([])
SAMPLE2 = make_events([(1, 3, 0, 1000), (1, 3, 1, 1000), (0, 2, 1, 1600), (4, 0, 0, 2999)])


def test_bin_events_lands_each_event_where_the_rule_says():
    T = 4
    got = bin_events([SAMPLE0, SAMPLE1, SAMPLE2], T, SHAPE, binary=False)
    assert got.shape == (T, 3, *SHAPE) and got.dtype == torch.float32
    want = reference_frames([SAMPLE0, SAMPLE1, SAMPLE2], T, SHAPE, binary=False)
    assert torch.equal(got, want)
    # Spot checks of the rule on sample 0 (d = 100, 25 us per frame).
    assert got[0, 0, 0, 0, 0] == 1 and got[3, 0, 1, 3, 4] == 1
    assert got[2, 0, 1, 1, 2] == 2
    assert got[0, 0, 0, 2, 3] == 1 and got[1, 0, 0, 2, 3] == 1
    assert got[:, 1].sum() == 0  # empty sample
    assert got.sum() == len(SAMPLE0) + len(SAMPLE2)  # nothing lost without a duration


def test_bin_events_binary_clips_counts():
    T = 4
    counts = bin_events([SAMPLE0, SAMPLE2], T, SHAPE, binary=False)
    binary = bin_events([SAMPLE0, SAMPLE2], T, SHAPE)
    assert counts.max() == 2
    assert torch.equal(binary, counts.clamp(max=1))
    assert torch.equal(binary, reference_frames([SAMPLE0, SAMPLE2], T, SHAPE, binary=True))
    assert set(binary.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("T", [1, 3, 7])
def test_bin_events_other_frame_counts(T):
    got = bin_events([SAMPLE0, SAMPLE2], T, SHAPE, binary=False)
    assert torch.equal(got, reference_frames([SAMPLE0, SAMPLE2], T, SHAPE, binary=False))


def test_bin_events_duration_drops_late_events():
    T, d = 3, 60
    got = bin_events([SAMPLE0, SAMPLE2], T, SHAPE, duration_us=d, binary=False)
    want = reference_frames([SAMPLE0, SAMPLE2], T, SHAPE, duration_us=d, binary=False)
    assert torch.equal(got, want)
    n_early = sum(int(t) < d for t in SAMPLE0["t"])
    assert got[:, 0].sum() == n_early < len(SAMPLE0)
    assert got[:, 1].sum() == 0  # sample 2 starts at 1000 us: all of it is late
    # The option reaches bin_events through encode().
    assert torch.equal(encode("events", [SAMPLE0, SAMPLE2], T, shape=SHAPE, duration_us=d, binary=False), got)


def test_bin_events_long_duration_leaves_late_frames_empty():
    T = 4
    got = bin_events([SAMPLE0], T, SHAPE, duration_us=400, binary=False)  # 100 us per frame: all in frame 0
    assert got[0].sum() == len(SAMPLE0) and got[1:].sum() == 0
    assert torch.equal(got, reference_frames([SAMPLE0], T, SHAPE, duration_us=400, binary=False))


@pytest.mark.parametrize("field,value", [("x", 5), ("y", 4), ("p", 2)])
def test_bin_events_rejects_addresses_outside_the_sensor(field, value):
    ev = SAMPLE0.copy()
    ev[field][1] = value
    with pytest.raises(ValueError, match="outside the sensor"):
        bin_events([SAMPLE2, ev], 4, SHAPE)


def test_rows_shows_one_row_per_step_group():
    gen = torch.Generator().manual_seed(0)
    img = torch.zeros(2, 1, 4, 3)
    img[0, 0, 1] = 1.0  # second row of the first image fully on
    img[1, 0, 3, 2] = 1.0  # last row, last pixel of the second image
    x = encode("rows", img, 8, generator=gen)
    assert x.shape == (8, 2, 3) and encoded_shape("rows", (1, 4, 3)) == (3,)
    on = x.nonzero().tolist()  # intensity 1 spikes at every step of its row and nowhere else
    assert on == [[2, 0, 0], [2, 0, 1], [2, 0, 2], [3, 0, 0], [3, 0, 1], [3, 0, 2], [6, 1, 2], [7, 1, 2]]
    with pytest.raises(ValueError, match="multiple of 4"):
        encode("rows", img, 6)


def test_unknown_encoder():
    assert set(ENCODERS) == {"bernoulli", "repeat", "events", "rows"}
    with pytest.raises(ValueError, match="poisson"):
        encode("poisson", torch.zeros(1, 1), 3)
