"""Surrogate derivatives of the Heaviside spike function.

A spike is ``o = H(x)`` with ``x = u - V_th``. ``H`` has no useful derivative, so the backward
pass replaces ``dH/dx`` with a smooth or box-shaped pseudo-derivative of width ``a``.
The four shapes of STBP (Wu et al. 2018, eq. 11-14):

    rectangular  h(x) = 1/a * 1{|x| < a/2}
    polynomial   h(x) = (sqrt(a)/2 - a/4 |x|) * 1{|x| < 2/sqrt(a)}
    sigmoid      h(x) = exp(-x/a) / (a (1 + exp(-x/a))^2)
    gaussian     h(x) = exp(-x^2 / (2a)) / sqrt(2 pi a)

and two common in other libraries (snnTorch, SpikingJelly):

    arctan        h(x) = 1 / (1 + (pi x / a)^2)          (peak 1, SpikingJelly's ATan with alpha = 2/a)
    fast_sigmoid  h(x) = 1 / (1 + |x| / a)^2             (SuperSpike, snnTorch's slope = 1/a)

Each surrogate is a frozen record; ``derivative(x)`` is the only arithmetic, used both by the
fused neuron kernels (``train.neurons``) and by ``spike`` (an autograd function for
step-by-step code).

>>> import torch
>>> s = get_surrogate("rectangular", a=1.0)
>>> s.derivative(torch.tensor([0.0, 0.4, 0.6])).tolist()
[1.0, 1.0, 0.0]
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def _rectangular(x: torch.Tensor, a: float) -> torch.Tensor:
    return (x.abs() < a / 2).to(x.dtype) / a


def _polynomial(x: torch.Tensor, a: float) -> torch.Tensor:
    return (math.sqrt(a) / 2 - a / 4 * x.abs()).clamp_min(0.0)


def _sigmoid(x: torch.Tensor, a: float) -> torch.Tensor:
    s = torch.sigmoid(x / a)  # exp(-x/a) / (1 + exp(-x/a))^2 = s (1 - s), overflow-free
    return s * (1 - s) / a


def _gaussian(x: torch.Tensor, a: float) -> torch.Tensor:
    return torch.exp(-x * x / (2 * a)) / math.sqrt(2 * math.pi * a)


def _arctan(x: torch.Tensor, a: float) -> torch.Tensor:
    return 1.0 / (1.0 + (math.pi * x / a) ** 2)


def _fast_sigmoid(x: torch.Tensor, a: float) -> torch.Tensor:
    return 1.0 / (1.0 + x.abs() / a) ** 2


# The polynomial shape of STBP vanishes exactly at |x| = 2/sqrt(a); clamp_min realises the indicator.
_SHAPES = {
    "rectangular": _rectangular,
    "polynomial": _polynomial,
    "sigmoid": _sigmoid,
    "gaussian": _gaussian,
    "arctan": _arctan,
    "fast_sigmoid": _fast_sigmoid,
}

SURROGATES = tuple(_SHAPES)


def _rectangular_(x, a):
    return x.abs_().lt_(a / 2).div_(a)


def _polynomial_(x, a):
    return x.abs_().mul_(-a / 4).add_(math.sqrt(a) / 2).clamp_min_(0.0)


def _sigmoid_(x, a):
    s = x.div_(a).sigmoid_()
    return torch.addcmul(s, s, s, value=-1.0, out=s).div_(a)  # s (1 - s) / a, in place


def _gaussian_(x, a):
    return x.square_().mul_(-1.0 / (2 * a)).exp_().div_(math.sqrt(2 * math.pi * a))


def _arctan_(x, a):
    return x.mul_(math.pi / a).square_().add_(1.0).reciprocal_()


def _fast_sigmoid_(x, a):
    return x.abs_().div_(a).add_(1.0).square_().reciprocal_()


# The same formulas overwriting their argument: the fused neuron kernels use these on a large
# (T, B, N) buffer to avoid a chain of full-size temporaries. Tests check both forms agree.
_SHAPES_INPLACE = {
    "rectangular": _rectangular_,
    "polynomial": _polynomial_,
    "sigmoid": _sigmoid_,
    "gaussian": _gaussian_,
    "arctan": _arctan_,
    "fast_sigmoid": _fast_sigmoid_,
}


@dataclass(frozen=True)
class Surrogate:
    """A named pseudo-derivative of the Heaviside step.

    Parameters
    ----------
    name : str
        One of ``SURROGATES``.
    a : float
        Width parameter (same units as the membrane potential), > 0.
    """

    name: str = "rectangular"
    a: float = 1.0

    def __post_init__(self):
        if self.name not in _SHAPES:
            raise ValueError(f"unknown surrogate {self.name!r}; choose one of {', '.join(SURROGATES)}")
        if not (self.a > 0 and math.isfinite(self.a)):
            raise ValueError(f"surrogate width a must be a positive finite number, got {self.a!r}")

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """``h(x)``, the stand-in for ``dH/dx`` at ``x = u - V_th``."""
        return _SHAPES[self.name](x, self.a)

    def derivative_(self, x: torch.Tensor) -> torch.Tensor:
        """``derivative`` computed in place: overwrites and returns ``x`` (a float tensor)."""
        return _SHAPES_INPLACE[self.name](x, self.a)


# The kernels' form of each shape (train/triton_kernels.py, train/native/neuron_loop.c): a code and
# the two numbers its formula uses, computed here in double precision and passed to the kernels as
# values of the input's dtype. The formulas are those of _SHAPES above.
KERNEL_CODES = {"rectangular": 0, "polynomial": 1, "sigmoid": 2, "gaussian": 3, "arctan": 4, "fast_sigmoid": 5}


def kernel_constants(s: "Surrogate") -> tuple[int, float, float]:
    """``(code, c0, c1)`` of surrogate ``s`` for the fused kernels."""
    a = s.a
    c0, c1 = {
        "rectangular": (a / 2, a),                           # 1{|x| < a/2} / a
        "polynomial": (math.sqrt(a) / 2, a / 4),             # max(sqrt(a)/2 - a/4 |x|, 0)
        "sigmoid": (a, a),                                   # (s - s^2) / a, s = 1 / (1 + exp(-x / a))
        "gaussian": (2 * a, math.sqrt(2 * math.pi * a)),     # exp(-x^2 / (2a)) / sqrt(2 pi a)
        "arctan": (math.pi / a, 0.0),                        # 1 / (1 + (pi x / a)^2)
        "fast_sigmoid": (a, 0.0),                            # 1 / (1 + |x| / a)^2
    }[s.name]
    return KERNEL_CODES[s.name], c0, c1


def get_surrogate(name: str | Surrogate, a: float = 1.0) -> Surrogate:
    """Surrogate by name (or pass one through)."""
    return name if isinstance(name, Surrogate) else Surrogate(name, float(a))


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, surrogate):
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(x), None


def spike(x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
    """``H(x)`` forward (``1`` where ``x > 0``), ``surrogate.derivative(x)`` backward."""
    return _Spike.apply(x, surrogate)
