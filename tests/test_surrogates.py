"""Tests for train.surrogates: each shape against its docstring formula, the spike function, validation."""

import math

import pytest
import torch

from spikeport.train.surrogates import SURROGATES, Surrogate, get_surrogate, spike

# ----------------------------------------------------------------- reference formulas (module docstring)


def ref_rectangular(x, a):
    return (1.0 / a) if abs(x) < a / 2 else 0.0


def ref_polynomial(x, a):
    return (math.sqrt(a) / 2 - a / 4 * abs(x)) if abs(x) < 2 / math.sqrt(a) else 0.0


def ref_sigmoid(x, a):
    e = math.exp(-x / a)
    return e / (a * (1 + e) ** 2)


def ref_gaussian(x, a):
    return math.exp(-x * x / (2 * a)) / math.sqrt(2 * math.pi * a)


def ref_arctan(x, a):
    return 1 / (1 + (math.pi * x / a) ** 2)


def ref_fast_sigmoid(x, a):
    return 1 / (1 + abs(x) / a) ** 2


REFERENCE = {
    "rectangular": ref_rectangular,
    "polynomial": ref_polynomial,
    "sigmoid": ref_sigmoid,
    "gaussian": ref_gaussian,
    "arctan": ref_arctan,
    "fast_sigmoid": ref_fast_sigmoid,
}

WIDTHS = (0.5, 1.0, 2.0, 3.0)


def sample_points(a):
    """Generic points plus each compact shape's boundaries (and points just inside / outside)."""
    pts = [0.0, 0.1, -0.1, 0.37, -0.8, 1.0, -1.3, 2.5, -4.0, 7.0]
    for b in (a / 2, 2 / math.sqrt(a)):  # rectangular and polynomial edges
        pts += [b, -b, b * (1 - 1e-9), -b * (1 - 1e-9), b * (1 + 1e-9), -b * (1 + 1e-9)]
    return pts


def test_all_six_shapes_are_listed():
    assert set(SURROGATES) == set(REFERENCE)
    assert len(SURROGATES) == 6


@pytest.mark.parametrize("a", WIDTHS)
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_derivative_matches_docstring_formula(name, a):
    pts = sample_points(a)
    got = Surrogate(name, a).derivative(torch.tensor(pts, dtype=torch.float64)).tolist()
    want = [REFERENCE[name](x, a) for x in pts]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("a", WIDTHS)
def test_compact_shapes_vanish_at_and_beyond_their_edges(a):
    rect_edge = a / 2
    poly_edge = 2 / math.sqrt(a)
    rect = Surrogate("rectangular", a).derivative(torch.tensor([rect_edge, -rect_edge, 10 * a], dtype=torch.float64))
    assert rect.tolist() == [0.0, 0.0, 0.0]
    inside = Surrogate("rectangular", a).derivative(torch.tensor([0.0, rect_edge * 0.999], dtype=torch.float64))
    assert inside.tolist() == [1 / a, 1 / a]
    poly = Surrogate("polynomial", a).derivative(torch.tensor([poly_edge, -poly_edge, 3 * poly_edge],
                                                              dtype=torch.float64))
    assert poly.tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-14)
    assert (poly >= 0).all()  # never negative beyond the edge
    peak = Surrogate("polynomial", a).derivative(torch.zeros(1, dtype=torch.float64)).item()
    assert peak == pytest.approx(math.sqrt(a) / 2, rel=1e-15)


@pytest.mark.parametrize("name", ["arctan", "fast_sigmoid"])
def test_library_shapes_peak_at_one(name):
    for a in WIDTHS:
        assert Surrogate(name, a).derivative(torch.zeros(1, dtype=torch.float64)).item() == 1.0


def test_sigmoid_is_overflow_free_far_from_threshold():
    x = torch.tensor([-1e4, 1e4], dtype=torch.float64)
    d = Surrogate("sigmoid", 0.5).derivative(x)
    assert torch.isfinite(d).all()
    assert d.tolist() == [0.0, 0.0]


def test_docstring_example():
    s = get_surrogate("rectangular", a=1.0)
    assert s.derivative(torch.tensor([0.0, 0.4, 0.6])).tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("a", WIDTHS)
@pytest.mark.parametrize("name", ["rectangular", "polynomial", "sigmoid", "gaussian"])
def test_stbp_shapes_integrate_to_one(name, a):
    """The four STBP shapes are probability densities: the integral of h over x is 1."""
    # Midpoint rule over a span holding all of the mass: the compact shapes' support (rectangular
    # |x| < a/2, polynomial |x| < 2/sqrt(a)) with margin, 40 scales for the others (tails < 1e-15).
    half = {"rectangular": a, "polynomial": 4 / math.sqrt(a), "sigmoid": 40 * a, "gaussian": 40 * math.sqrt(a)}[name]
    n = 400_001
    dx = 2 * half / n
    x = -half + dx * (torch.arange(n, dtype=torch.float64) + 0.5)
    h = Surrogate(name, a).derivative(x)
    integral = h.sum().item() * dx
    # A jump at each edge of the box costs at most one cell of height max(h); smooth shapes do far better.
    tol = 2 * dx * h.max().item() + 1e-9
    assert integral == pytest.approx(1.0, abs=tol)


def test_spike_forward_is_strict_heaviside():
    x = torch.tensor([-1.0, -1e-12, 0.0, 1e-12, 0.5, 3.0], dtype=torch.float64)
    o = spike(x, Surrogate())
    assert o.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert o.dtype == x.dtype
    # Negative zero is not above zero either.
    assert spike(torch.tensor([-0.0]), Surrogate()).item() == 0.0


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_spike_backward_is_grad_times_derivative(name):
    a = 0.8
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(50, generator=gen, dtype=torch.float64) * 4 - 2).requires_grad_()
    w = torch.randn(50, generator=gen, dtype=torch.float64)
    (spike(x, Surrogate(name, a)) * w).sum().backward()
    want = [wi * REFERENCE[name](xi, a) for wi, xi in zip(w.tolist(), x.detach().tolist())]
    assert x.grad.tolist() == pytest.approx(want, rel=1e-12, abs=1e-14)
    assert x.grad.abs().sum() > 0


def test_get_surrogate_passes_records_through_and_builds_by_name():
    s = Surrogate("gaussian", 0.3)
    assert get_surrogate(s) is s
    t = get_surrogate("arctan", 2)
    assert t == Surrogate("arctan", 2.0)
    assert isinstance(t.a, float)
    assert Surrogate() == Surrogate("rectangular", 1.0)


def test_unknown_name_raises_with_name():
    with pytest.raises(ValueError, match="triangle"):
        Surrogate("triangle", 1.0)
    with pytest.raises(ValueError, match="bogus"):
        get_surrogate("bogus")


@pytest.mark.parametrize("a", [0.0, -1.5, float("inf"), float("nan")])
def test_non_positive_or_non_finite_width_raises_with_value(a):
    with pytest.raises(ValueError) as err:
        Surrogate("sigmoid", a)
    assert repr(a) in str(err.value)


@pytest.mark.parametrize("name", SURROGATES)
@pytest.mark.parametrize("a", [0.3, 1.0, 2.5])
def test_in_place_derivative_equals_the_reference_formula(name, a):
    x = torch.linspace(-4, 4, 801, dtype=torch.float64)
    s = Surrogate(name, a)
    expected = s.derivative(x)
    buf = x.clone()
    out = s.derivative_(buf)
    assert out.data_ptr() == buf.data_ptr()  # really in place
    assert torch.allclose(out, expected, rtol=1e-12, atol=1e-15)
