"""Tests for train.losses against hand computations on tiny spike trains."""

import math

import pytest
import torch

from spikeport.train.losses import (
    LOSSES,
    LossSpec,
    hamming_distance,
    target_trains,
    van_rossum_distance,
    van_rossum_filter,
)
from spikeport.train.surrogates import Surrogate, spike

F64 = torch.float64

# A tiny output: T = 4 steps, B = 2 samples, C = 3 classes, as nested lists o[t][b][c].
O = [
    [[1, 0, 0], [0, 1, 1]],
    [[1, 1, 0], [0, 0, 1]],
    [[0, 0, 0], [1, 0, 1]],
    [[1, 0, 1], [0, 0, 0]],
]
LABELS = [0, 2]
T, B, C = 4, 2, 3


def o_tensor(dtype=F64):
    return torch.tensor(O, dtype=dtype)


def labels_tensor():
    return torch.tensor(LABELS)


# ----------------------------------------------------------------- references


def ref_rate_mse(o, labels):
    total = 0.0
    for b in range(B):
        for c in range(C):
            rate = sum(o[t][b][c] for t in range(T)) / T
            total += (rate - (1.0 if c == labels[b] else 0.0)) ** 2
    return total / (B * C)


def ref_count_ce(o, labels):
    total = 0.0
    for b in range(B):
        counts = [sum(o[t][b][c] for t in range(T)) for c in range(C)]
        total += -counts[labels[b]] + math.log(sum(math.exp(k) for k in counts))
    return total / B


def ref_filter(train, tau):
    """f[t] = e f[t-1] + s[t], e = exp(-1/tau), for one neuron's train (list over t)."""
    e = math.exp(-1.0 / tau)
    f, out = 0.0, []
    for s in train:
        f = e * f + s
        out.append(f)
    return out


def ref_van_rossum(o, y, tau):
    """Per-sample 1/(T C) sum_{t,c} (f_o - f_y)^2 with both trains filtered separately."""
    T_, B_, C_ = len(o), len(o[0]), len(o[0][0])
    out = []
    for b in range(B_):
        s = 0.0
        for c in range(C_):
            fo = ref_filter([o[t][b][c] for t in range(T_)], tau)
            fy = ref_filter([y[t][b][c] for t in range(T_)], tau)
            s += sum((p - q) ** 2 for p, q in zip(fo, fy))
        out.append(s / (T_ * C_))
    return out


def ref_hamming(o, y):
    T_, B_, C_ = len(o), len(o[0]), len(o[0][0])
    return [sum(o[t][b][c] != y[t][b][c] for t in range(T_) for c in range(C_)) / (T_ * C_) for b in range(B_)]


def ref_targets(labels, n_classes, T_, rate):
    """Targets from the rule, built through the documented properties (checked separately below)."""
    y = target_trains(torch.tensor(labels), n_classes, T_, rate, F64)
    return y.tolist()


# ----------------------------------------------------------------- target trains


@pytest.mark.parametrize("T_,rate", [(10, 1.0), (10, 0.5), (10, 0.3), (7, 0.4), (20, 0.05), (25, 0.6), (9, 0.7)])
def test_target_trains_pattern(T_, rate):
    labels = torch.tensor([2, 0, 2, 1])
    y = target_trains(labels, 3, T_, rate)
    assert y.shape == (T_, 4, 3) and y.dtype == torch.float32
    n = round(rate * T_)
    for b, lab in enumerate(labels.tolist()):
        for c in range(3):
            train = y[:, b, c].tolist()
            if c != lab:
                assert train == [0.0] * T_  # only the label's neuron fires
                continue
            assert set(train) <= {0.0, 1.0}
            steps = [t for t, s in enumerate(train) if s]
            assert len(steps) == n
            assert steps[-1] == T_ - 1  # the last step is included
            # Evenly spaced: every gap (including the wrap from the last spike to the first of the
            # next period) is floor(T/n) or ceil(T/n).
            gaps = [b_ - a_ for a_, b_ in zip(steps, steps[1:])] + [steps[0] + T_ - steps[-1]]
            assert set(gaps) <= {T_ // n, -(-T_ // n)}
            assert sum(gaps) == T_


def test_target_trains_rate_one_is_repeated_one_hot():
    labels = torch.tensor([1, 0, 3])
    y = target_trains(labels, 4, 6, 1.0, F64)
    onehot = torch.zeros(3, 4, dtype=F64)
    for b, lab in enumerate(labels.tolist()):
        onehot[b, lab] = 1.0
    assert torch.equal(y, onehot.expand(6, 3, 4))
    assert y.dtype == F64


@pytest.mark.parametrize("rate", [0.0, -0.5, 1.5])
def test_target_trains_rejects_bad_rates(rate):
    with pytest.raises(ValueError, match=repr(rate)):
        target_trains(torch.tensor([0]), 2, 5, rate)


# ----------------------------------------------------------------- losses


def test_rate_mse():
    loss = LossSpec("rate_mse")(o_tensor(), labels_tensor())
    assert loss.item() == pytest.approx(ref_rate_mse(O, LABELS), rel=1e-14)


def test_count_ce():
    loss = LossSpec("count_ce")(o_tensor(), labels_tensor())
    assert loss.item() == pytest.approx(ref_count_ce(O, LABELS), rel=1e-14)


@pytest.mark.parametrize("tau", [1.0, 2.5, 10.0])
def test_van_rossum_filter_is_the_recursive_filter(tau):
    gen = torch.Generator().manual_seed(0)
    s = (torch.rand(9, 2, 3, generator=gen) < 0.4).to(F64)
    got = van_rossum_filter(s, tau)
    assert got.shape == s.shape
    for b in range(2):
        for c in range(3):
            want = ref_filter(s[:, b, c].tolist(), tau)
            assert got[:, b, c].tolist() == pytest.approx(want, rel=1e-13, abs=1e-15)


@pytest.mark.parametrize("tau,rate", [(2.0, 1.0), (5.0, 0.5), (0.7, 0.75)])
def test_van_rossum_loss(tau, rate):
    y = ref_targets(LABELS, C, T, rate)
    want = ref_van_rossum(O, y, tau)
    got = van_rossum_distance(o_tensor(), torch.tensor(y, dtype=F64), tau)
    assert got.tolist() == pytest.approx(want, rel=1e-13)
    loss = LossSpec("van_rossum", tau=tau, target_rate=rate)(o_tensor(), labels_tensor())
    assert loss.item() == pytest.approx(sum(want) / B, rel=1e-13)


@pytest.mark.parametrize("rate", [1.0, 0.5])
def test_hamming_loss(rate):
    y = ref_targets(LABELS, C, T, rate)
    want = ref_hamming(O, y)
    assert hamming_distance(o_tensor(), torch.tensor(y, dtype=F64)).tolist() == pytest.approx(want, rel=1e-15)
    loss = LossSpec("hamming", target_rate=rate)(o_tensor(), labels_tensor())
    assert loss.item() == pytest.approx(sum(want) / B, rel=1e-15)


@pytest.mark.parametrize("name", ["van_rossum", "hamming"])
def test_sequence_losses_vanish_on_the_target(name):
    spec = LossSpec(name, target_rate=0.5)
    labels = torch.tensor([0, 2, 1])
    y = target_trains(labels, 3, 8, 0.5, F64)
    assert spec(y, labels).item() == 0.0
    assert spec(y, torch.tensor([1, 2, 1])).item() > 0


def test_loss_spec_validation_and_kinds():
    assert set(LOSSES) == {"rate_mse", "count_ce", "van_rossum", "hamming"}
    with pytest.raises(ValueError, match="'mse'"):
        LossSpec("mse")
    assert [LossSpec(n).is_sequence for n in LOSSES] == [n in ("van_rossum", "hamming") for n in LOSSES]


# ----------------------------------------------------------------- decoding


@pytest.mark.parametrize("name", ["rate_mse", "count_ce"])
def test_rate_decoding_is_argmax_of_counts(name):
    counts = [[1, 4, 2], [3, 0, 0], [0, 2, 5], [2, 2, 3]]  # (B, C), distinct maxima
    T_ = 6
    o = torch.zeros(T_, 4, 3)
    for b, row in enumerate(counts):
        for c, k in enumerate(row):
            o[T_ - k:, b, c] = 1.0  # k spikes, at the end of the window
    assert o.sum(0).tolist() == counts
    want = [row.index(max(row)) for row in counts]
    assert LossSpec(name).decode(o).tolist() == want


@pytest.mark.parametrize("name", ["van_rossum", "hamming"])
@pytest.mark.parametrize("rate", [1.0, 0.5])
def test_sequence_decoding_recovers_exact_targets(name, rate):
    labels = torch.tensor([3, 0, 1, 2, 1])
    o = target_trains(labels, 4, 10, rate)
    assert LossSpec(name, target_rate=rate).decode(o).tolist() == labels.tolist()


@pytest.mark.parametrize("name,ref", [("van_rossum", lambda o, y: ref_van_rossum(o, y, 3.0)[0]),
                                      ("hamming", lambda o, y: ref_hamming(o, y)[0])])
def test_sequence_decoding_picks_the_nearest_target(name, ref):
    T_, C_, B_ = 8, 4, 40
    rate = 0.5
    gen = torch.Generator().manual_seed(5)
    o = (torch.rand(T_, B_, C_, generator=gen) < 0.3).to(F64)
    pred = LossSpec(name, tau=3.0, target_rate=rate).decode(o).tolist()
    checked = 0
    for b in range(B_):
        ob = o[:, b:b + 1].tolist()
        d = [ref(ob, ref_targets([c], C_, T_, rate)) for c in range(C_)]
        best = min(d)
        if sorted(d)[1] - best > 1e-9:  # a unique nearest target
            assert pred[b] == d.index(best)
            checked += 1
    assert checked >= B_ // 3


# ----------------------------------------------------------------- gradients


def test_hamming_gradient_flows_only_through_mismatches():
    a = 1.0
    gen = torch.Generator().manual_seed(9)
    x = (torch.randn(T, B, C, generator=gen, dtype=F64)).requires_grad_()
    o = spike(x, Surrogate("sigmoid", a))
    labels = labels_tensor()
    loss = LossSpec("hamming", target_rate=0.5)(o, labels)
    loss.backward()
    y = target_trains(labels, C, T, 0.5, F64)
    # d/do of mean_b 1/(T C) sum (o - y)^2 is 2 (o - y) / (B T C); times the surrogate h(x).
    mismatches = 0
    for t in range(T):
        for b in range(B):
            for c in range(C):
                xv = x[t, b, c].item()
                e = math.exp(-xv / a)
                h = e / (a * (1 + e) ** 2)
                ov, yv = (1.0 if xv > 0 else 0.0), y[t, b, c].item()
                want = 2 * (ov - yv) / (B * T * C) * h
                assert x.grad[t, b, c].item() == pytest.approx(want, rel=1e-12, abs=1e-16)
                mismatches += ov != yv
    # both kinds of entry occur: matches pass no gradient, mismatches do (sigmoid is nowhere zero)
    assert 0 < mismatches < T * B * C
    assert int((x.grad != 0).sum()) == mismatches


def test_hamming_balances_where_the_sum_form_silences():
    """The sum form o + y - 2 o y (same value) pushes an already silent non-label neuron further
    down; the squared form leaves a correct output alone and pushes only the missing label spike."""
    o = torch.zeros(3, 1, 4, dtype=F64, requires_grad=True)  # every output silent
    y = target_trains(torch.tensor([2]), 4, 3, 1.0, F64)
    hamming_distance(o, y).sum().backward()
    g = o.grad[:, 0]
    assert torch.all(g[:, [0, 1, 3]] == 0)  # silent and correct: no push
    assert torch.all(g[:, 2] < 0)  # the label's missing spikes: pushed up
    o2 = o.detach().clone().requires_grad_()
    (o2 + y - 2 * o2 * y).mean(dim=(0, 2)).sum().backward()
    assert torch.all(o2.grad[:, 0, [0, 1, 3]] > 0)  # the sum form keeps pushing silent neurons down
    assert hamming_distance(o.detach(), y).item() == (o2 + y - 2 * o2 * y).mean().item()
