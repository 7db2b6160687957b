"""Spiking neuron models for training: pure step functions and one fused time loop.

Two models, both discrete-time with one step of length ``dt``.

STBP iterative LIF (Wu et al. 2018, eq. 5-6), ``decay`` is the paper's ``tau`` and ``bias`` its
``b`` (kept in the neuron so that synaptic layers carry weights only)::

    u[t] = decay * u[t-1] * (1 - o[t-1]) + x[t] + bias
    o[t] = H(u[t] - v_threshold)

CUBA LIF (current-based; Loihi's neuron and the second seed's), with synaptic current ``i`` and
membrane ``v``, reset to zero on a spike, and an optional per-neuron ``bias``::

    i[t] = decay_syn * i[t-1] + x[t]
    v[t] = decay_mem * v[t-1] * (1 - o[t-1]) + i[t] + bias
    o[t] = H(v[t] - v_threshold)

With ``decay_syn = 0`` the CUBA neuron is the STBP LIF (plus bias); the fused kernel below exploits
this and runs both. ``H(x)`` is 1 for ``x > 0`` (strict, as Loihi/Lava). Multiplying by
``1 - o[t-1]`` before the decay is the same as resetting ``v`` to 0 right after a spike, which is
what Loihi does.

Decays relate to time constants by ``decay = exp(-dt / tau)`` (``decay_from_tau``); this module is
the one home of that conversion on the float side.

Shapes: ``x`` is ``(T, B, *F)``: time first, then batch, then the neuron's feature shape.
Parameters broadcast against ``F``: a scalar (shared by the layer) or a tensor per neuron
(``(N,)`` for dense layers, ``(C, 1, 1)`` per channel for convolutions).

The step functions (``lif_step``, ``cuba_step``) are the definition and serve online, step-by-step
use. ``neuron_sequence`` runs all ``T`` steps as one autograd node whose backward is the exact
reverse-time recurrence of the same equations (checked against autograd through the step
functions in the tests); it saves only the membrane trace and spikes, and works in preallocated
buffers, so it costs a few elementwise kernels per step. That torch loop is the reference; the same
recurrences also run as fused Triton kernels on CUDA (``train.triton_kernels``) and as a C loop on
CPU (``train.native``), chosen by ``resolve_backend`` and sharing the host code ``kernel_sequence``.
"""
from __future__ import annotations

import functools
import importlib
import math
import os
from typing import NamedTuple, Optional

import torch
from torch import nn

from .surrogates import Surrogate, get_surrogate, spike


def decay_from_tau(tau: float, dt: float = 1.0) -> float:
    """Decay factor per step, ``exp(-dt / tau)``, for a time constant ``tau`` (same unit as ``dt``).

    ``tau = inf`` gives 1 (no leak), ``tau = 0`` gives 0 (no memory).

    >>> round(decay_from_tau(4.0, 1.0), 6)
    0.778801
    """
    if tau < 0 or dt <= 0:
        raise ValueError(f"need tau >= 0 and dt > 0, got tau={tau!r}, dt={dt!r}")
    return 0.0 if tau == 0 else math.exp(-dt / tau)


def tau_from_decay(decay: float, dt: float = 1.0) -> float:
    """Inverse of ``decay_from_tau``: ``tau = -dt / ln(decay)``; decay 0 -> 0, decay 1 -> inf."""
    if not 0.0 <= decay <= 1.0 or dt <= 0:
        raise ValueError(f"need 0 <= decay <= 1 and dt > 0, got decay={decay!r}, dt={dt!r}")
    if decay == 0.0:
        return 0.0
    return math.inf if decay == 1.0 else -dt / math.log(decay)


# ---------------------------------------------------------------------------------------------
# Step functions: the definition of each model.


class LIFState(NamedTuple):
    u: torch.Tensor  # membrane potential after the last step (before reset)
    o: torch.Tensor  # last spikes, 0/1


class LIFParams(NamedTuple):
    decay: torch.Tensor | float = 0.2
    v_threshold: torch.Tensor | float = 0.5
    bias: torch.Tensor | float = 0.0


def lif_step(x: torch.Tensor, state: Optional[LIFState], p: LIFParams,
             surrogate: Surrogate) -> tuple[torch.Tensor, LIFState]:
    """One step of the STBP LIF. ``state=None`` starts from rest. Differentiable (surrogate)."""
    if state is None:
        u = x + p.bias
    else:
        u = p.decay * state.u * (1 - state.o) + x + p.bias
    o = spike(u - p.v_threshold, surrogate)
    return o, LIFState(u, o)


class CubaState(NamedTuple):
    i: torch.Tensor  # synaptic current
    v: torch.Tensor  # membrane potential after the last step (before reset)
    o: torch.Tensor  # last spikes


class CubaParams(NamedTuple):
    decay_syn: torch.Tensor | float = 0.0
    decay_mem: torch.Tensor | float = 0.9
    v_threshold: torch.Tensor | float = 1.0
    bias: torch.Tensor | float = 0.0


def cuba_step(x: torch.Tensor, state: Optional[CubaState], p: CubaParams,
              surrogate: Surrogate) -> tuple[torch.Tensor, CubaState]:
    """One step of the CUBA LIF. ``state=None`` starts from rest. Differentiable (surrogate)."""
    if state is None:
        i = x
        v = i + p.bias
    else:
        i = p.decay_syn * state.i + x
        v = p.decay_mem * state.v * (1 - state.o) + i + p.bias
    o = spike(v - p.v_threshold, surrogate)
    return o, CubaState(i, v, o)


# ---------------------------------------------------------------------------------------------
# Fused time loop.


def _reduce_to(grad: torch.Tensor, like: torch.Tensor) -> Optional[torch.Tensor]:
    """Sum a (T, B, *F) gradient down to a parameter's (broadcastable) shape."""
    g = grad.sum(dim=(0, 1))
    if like.dim() == 0:
        return g.sum()
    return g.sum_to_size(like.shape)


class _NeuronSequence(torch.autograd.Function):
    """CUBA neuron over all T steps; ``decay_syn is None`` means no synaptic current (STBP LIF).

    With ``w_rec`` (``(N, N)``, features flat) the layer is recurrent: its input at step ``t`` is
    ``x[t] + o[t-1] @ w_rec.T`` (one step of delay, as every synapse on Loihi), and the backward
    carries ``dL/da[t] @ w_rec`` into ``dL/do[t-1]`` (STBP through the recurrence).

    Memory: saves the membrane ``V`` (before reset) and the spikes (the output); the backward
    allocates the input gradient (and dL/do when the threshold learns), step-sized buffers otherwise.
    """

    @staticmethod
    def forward(ctx, x, decay_syn, decay_mem, v_threshold, bias, w_rec, surrogate, detach_reset):
        # Spikes are written as floats straight by the comparison (o = v > v_th) and the reset is
        # r = v - v o (exact: 0 or v); on CPU this is several times faster than going through bool
        # tensors with torch.where or masked_fill.
        T = x.shape[0]
        V = torch.empty_like(x)  # (T, B, *F) membrane before reset
        O = torch.empty_like(x)  # (T, B, *F) spikes, 0/1, also the output
        I = None if decay_syn is None else torch.empty_like(x)  # (T, B, *F) synaptic current
        r = torch.zeros_like(x[0])  # post-reset membrane of the previous step, reused buffer
        a = None if w_rec is None else torch.empty_like(x[0])  # input with the recurrent term
        # per-step views taken once (indexing inside the loop costs a dispatch per access)
        xs, Vs, Os = x.unbind(0), V.unbind(0), O.unbind(0)
        Is = None if I is None else I.unbind(0)
        for t in range(T):
            xt = xs[t]
            if a is not None and t:
                torch.addmm(xt, Os[t - 1], w_rec.t(), out=a)
                xt = a
            if Is is None:  # STBP LIF: the current is the input itself
                cur = xt
            else:
                if t == 0:
                    Is[0].copy_(xt)
                else:
                    torch.addcmul(xt, Is[t - 1], decay_syn, out=Is[t])
                cur = Is[t]
            v = Vs[t]
            torch.addcmul(cur, r, decay_mem, out=v)
            if bias is not None:
                v.add_(bias)
            torch.gt(v, v_threshold, out=Os[t])
            torch.addcmul(v, v, Os[t], value=-1.0, out=r)
        ctx.save_for_backward(V, O, I, decay_syn, decay_mem, v_threshold, bias, w_rec)
        ctx.surrogate = surrogate
        ctx.detach_reset = detach_reset
        return O

    @staticmethod
    def backward(ctx, grad_out):
        V, O, I, decay_syn, decay_mem, v_threshold, bias, w_rec = ctx.saved_tensors
        T = V.shape[0]
        need = ctx.needs_input_grad
        surrogate = ctx.surrogate
        # Each step reads V[t], O[t] and grad_out[t] once and writes GV[t]; the surrogate, the reset
        # terms and dL/do live in step-sized buffers that stay in the CPU cache (whole-sequence
        # temporaries would cost one pass over memory each).
        GV = torch.empty_like(V)                                  # dL/dv[t], total
        GI = GV if I is None else torch.empty_like(V)             # dL/da[t]: the input's gradient
        GO = torch.empty_like(V) if need[3] else None             # dL/do[t], kept for the threshold
        go, h, carry = (torch.empty_like(V[0]) for _ in range(3))
        gv_sum = torch.zeros_like(V[0]) if (need[4] and I is None) else None  # sum over t of GV, for the bias
        gv_next = torch.zeros_like(V[0])
        gi_next = torch.zeros_like(V[0])
        rec = None if w_rec is None else torch.zeros_like(V[0])  # dL/da[t+1] @ w_rec -> dL/do[t]
        Vs, Os, GVs, GIs, Gs = V.unbind(0), O.unbind(0), GV.unbind(0), GI.unbind(0), grad_out.unbind(0)
        GOs = None if GO is None else GO.unbind(0)
        for t in range(T - 1, -1, -1):
            g = go if GOs is None else GOs[t]
            torch.mul(gv_next, decay_mem, out=carry)           # dL/dr[t] = decay * dL/dv[t+1]
            gout = Gs[t] if rec is None or t == T - 1 else Gs[t] + rec
            if ctx.detach_reset:
                g.copy_(gout)
            else:                                              # r[t] = v[t] (1 - o[t])
                torch.addcmul(gout, carry, Vs[t], value=-1.0, out=g)
            surrogate.derivative_(torch.sub(Vs[t], v_threshold, out=h))
            gv_next = GVs[t]
            torch.mul(g, h, out=gv_next)
            gv_next.add_(carry.addcmul_(carry, Os[t], value=-1.0))  # + carry (1 - o[t])
            if gv_sum is not None:
                gv_sum.add_(gv_next)
            if I is not None:  # i[t] = decay_syn * i[t-1] + a[t]  =>  gi[t] = gv[t] + decay_syn * gi[t+1]
                torch.addcmul(gv_next, gi_next, decay_syn, out=GIs[t])
                gi_next = GIs[t]
            if rec is not None and t:
                torch.mm(GIs[t], w_rec, out=rec)
        g_syn = g_mem = g_th = g_bias = g_rec = None
        if need[1]:
            i_prev = torch.cat([torch.zeros_like(I[:1]), I[:-1]])
            g_syn = _reduce_to(GI * i_prev, decay_syn)
        if need[2]:
            r_prev = torch.cat([torch.zeros_like(V[:1]), V[:-1] - V[:-1] * O[:-1]])
            g_mem = _reduce_to(GV * r_prev, decay_mem)
        if need[3]:
            g_th = _reduce_to(-(GO * surrogate.derivative_(V - v_threshold)), v_threshold)
        if need[4]:
            g_bias = _reduce_to(GV, bias) if gv_sum is None else _reduce_to(gv_sum[None], bias)
        if need[5]:  # a[t] = x[t] + o[t-1] w_rec^T  =>  dL/dw_rec = sum_t dL/da[t]^T o[t-1]
            n = V.shape[-1]
            g_rec = GI[1:].reshape(-1, n).t() @ O[:-1].reshape(-1, n)
        return GI, g_syn, g_mem, g_th, g_bias, g_rec, None, None


# ---------------------------------------------------------------------------------------------
# Host side of the kernel time loops (Triton on CUDA: train.triton_kernels; C on CPU: train.native).
# Both kernels have the same contract: the forward runs steps t0 .. t0+n-1 from the state buffers
# (r, i) or from rest (init), writing V, O (and I); the backward runs steps t_hi-1 down to t_hi-n,
# writing the input gradient GI and per-neuron sums of the parameter gradients. This code prepares
# the buffers, interleaves the recurrent matmuls, and reduces the sums to the parameters' shapes.


def _flat_param(p, feat, like):
    """(tensor, stride) for a kernel: a shared value as is (stride 0), else the parameter expanded to
    the feature shape, flat and contiguous (stride 1), in the input's dtype."""
    if p is None:
        return like, 0  # unused pointer
    p = p.to(like.dtype)
    if p.numel() == 1:
        return p.reshape(1), 0
    return torch.broadcast_to(p, feat).contiguous().reshape(-1), 1


def kernel_sequence(name: str, forward_launch, backward_launch) -> type:
    """An autograd Function with ``_NeuronSequence``'s interface and results whose time loops are
    ``forward_launch`` / ``backward_launch`` (see the contract above)."""

    class KernelSequence(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, decay_syn, decay_mem, v_threshold, bias, w_rec, surrogate, detach_reset):
            x = x.contiguous()                                        # (T, B, *F)
            T, feat = x.shape[0], tuple(x.shape[2:])
            M, nf = x[0].numel(), max(1, math.prod(feat))
            cuba = decay_syn is not None
            (dm, s_mem), (th, s_th) = _flat_param(decay_mem, feat, x), _flat_param(v_threshold, feat, x)
            (ds, s_syn), (b, s_bias) = _flat_param(decay_syn, feat, x), _flat_param(bias, feat, x)
            save_i = cuba and ctx.needs_input_grad[1]
            V, O = torch.empty_like(x), torch.empty_like(x)           # (T, B, *F) membrane, spikes
            I = torch.empty_like(x) if save_i else None               # (T, B, *F) current, for dL/d decay_syn
            r_state, i_state = x.new_empty(M), x.new_empty(M)         # state between launches

            def launch(src, step, t0, n):
                forward_launch(src, step, V, O, V if I is None else I, r_state, i_state, ds, dm, th, b, M, nf,
                               t0, n, cuba=cuba, has_bias=bias is not None, save_i=save_i, init=t0 == 0,
                               strides=(s_syn, s_mem, s_th, s_bias))

            if w_rec is None:
                launch(x, M, 0, T)
            else:  # a[t] = x[t] + o[t-1] @ w_rec.T, one step per launch
                a = torch.empty_like(x[0])                            # (B, N)
                wt = w_rec.to(x.dtype).t()
                launch(x, M, 0, 1)
                for t in range(1, T):
                    torch.addmm(x[t], O[t - 1], wt, out=a)
                    launch(a, 0, t, 1)
            ctx.save_for_backward(V, O, I, decay_syn, decay_mem, v_threshold, bias, w_rec)
            ctx.surrogate, ctx.detach_reset = surrogate, detach_reset
            return O

        @staticmethod
        def backward(ctx, grad_out):
            V, O, I, decay_syn, decay_mem, v_threshold, bias, w_rec = ctx.saved_tensors
            need = ctx.needs_input_grad
            g = grad_out.to(V.dtype).contiguous()                     # (T, B, *F)
            T, feat = V.shape[0], tuple(V.shape[2:])
            M, nf = V[0].numel(), max(1, math.prod(feat))
            cuba = decay_syn is not None
            (dm, s_mem), (th, s_th) = _flat_param(decay_mem, feat, V), _flat_param(v_threshold, feat, V)
            ds, s_syn = _flat_param(decay_syn, feat, V)
            GI = torch.empty_like(V)                                  # dL/da[t]: the input's gradient
            gv_state, gi_state = V.new_empty(M), V.new_empty(M)
            want = {"mem": need[2], "syn": cuba and need[1], "th": need[3], "bias": need[4] and bias is not None}
            acc = {k: (V.new_empty(M) if w else gv_state) for k, w in want.items()}  # per-neuron sums over t

            def launch(rec, t_hi, n):
                backward_launch(g, gv_state if rec is None else rec, V, O, V if I is None else I, GI, gv_state,
                                gi_state, acc["mem"], acc["syn"], acc["th"], acc["bias"], ds, dm, th, ctx.surrogate,
                                M, nf, t_hi, n, cuba=cuba, has_rec=rec is not None, detach=bool(ctx.detach_reset),
                                need_mem=want["mem"], need_syn=want["syn"], need_th=want["th"],
                                need_bias=want["bias"], init=t_hi == T, strides=(s_syn, s_mem, s_th))

            if w_rec is None:
                launch(None, T, T)
            else:  # dL/do[t-1] gets dL/da[t] @ w_rec: one step per launch
                w = w_rec.to(V.dtype)
                rec = torch.empty_like(V[0])                          # (B, N)
                launch(None, T, 1)
                for t in range(T - 1, 0, -1):
                    torch.mm(GI[t], w, out=rec)
                    launch(rec, t, 1)

            def reduce(k, like, sign=1.0):  # per-neuron sums (B, *F) -> the parameter's shape
                total = acc[k].view(V.shape[1:]).sum(0)
                return _reduce_to((total * sign if sign != 1.0 else total)[None, None], like).to(like.dtype)

            g_syn = reduce("syn", decay_syn) if want["syn"] else None
            g_mem = reduce("mem", decay_mem) if want["mem"] else None
            g_th = reduce("th", v_threshold, -1.0) if want["th"] else None
            g_bias = reduce("bias", bias) if want["bias"] else None
            g_rec = None
            if need[5]:  # a[t] = x[t] + o[t-1] w_rec^T  =>  dL/dw_rec = sum_t dL/da[t]^T o[t-1]
                n = V.shape[-1]
                g_rec = (GI[1:].reshape(-1, n).t() @ O[:-1].reshape(-1, n)).to(w_rec.dtype)
            return GI, g_syn, g_mem, g_th, g_bias, g_rec, None, None

    KernelSequence.__name__ = KernelSequence.__qualname__ = name
    return KernelSequence


BACKENDS = ("auto", "reference", "triton", "native")
BACKEND_ENV = "SPIKEPORT_NEURON_BACKEND"
_FLOATS = (torch.float32, torch.float64)


@functools.lru_cache(maxsize=None)
def _triton_importable() -> bool:
    try:
        importlib.import_module("triton")
    except Exception:  # ImportError, or a broken install (no compiler, no driver)
        return False
    return True


def _native():
    from . import native
    return native


@functools.lru_cache(maxsize=None)
def _native_unavailable() -> str:
    """Why the C loop cannot run here ("" when it can): not installed, no compiler, build failed."""
    try:
        native = _native()
    except ImportError as e:
        return f"spikeport.train.native is not installed ({e})"
    return "" if native.available() else native.unavailable_reason()


def resolve_backend(x: torch.Tensor, backend: str = "auto") -> str:
    """The time loop that ``neuron_sequence`` runs for ``x``.

    ``"reference"``: the torch loop of this module (any device, any float dtype).
    ``"triton"``: ``train.triton_kernels`` (float32/float64 CUDA tensors, or CPU tensors under
    Triton's interpreter, ``TRITON_INTERPRET=1``).
    ``"native"``: ``train.native``, the loop in C (float32/float64 CPU tensors; compiled once per
    machine and cached).
    ``"auto"``: ``$SPIKEPORT_NEURON_BACKEND`` when set, else Triton for CUDA tensors when triton
    imports, the native loop for CPU tensors when it builds, the reference otherwise.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown neuron backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV, "auto") or "auto"
        if backend not in BACKENDS:
            raise ValueError(f"{BACKEND_ENV}={backend!r} is not a neuron backend; choose one of "
                             f"{', '.join(BACKENDS)}")
    cpu = x.device.type == "cpu" and x.dtype in _FLOATS
    triton_fits = x.dtype in _FLOATS and (x.is_cuda or (cpu and os.environ.get("TRITON_INTERPRET") == "1"))
    if backend == "auto":
        if x.is_cuda and triton_fits and _triton_importable():
            return "triton"
        return "native" if cpu and not _native_unavailable() else "reference"
    if backend == "triton" and not triton_fits:
        raise ValueError(f"neuron backend 'triton' needs float32/float64 CUDA tensors (or TRITON_INTERPRET=1 "
                         f"on CPU), got {x.dtype} on {x.device}")
    if backend == "triton" and not _triton_importable():
        raise ValueError("neuron backend 'triton' needs the triton package, which does not import here")
    if backend == "native" and not cpu:
        raise ValueError(f"neuron backend 'native' needs float32/float64 CPU tensors, got {x.dtype} on {x.device}")
    if backend == "native" and _native_unavailable():
        raise ValueError(f"neuron backend 'native' is unavailable: {_native_unavailable()}")
    return backend


def neuron_sequence(x: torch.Tensor, decay_mem, v_threshold, *, decay_syn=None, bias=None, w_rec=None,
                    surrogate: Surrogate = Surrogate(), detach_reset: bool = False,
                    backend: str = "auto") -> torch.Tensor:
    """Spikes ``(T, B, *F)`` of a CUBA (or, with ``decay_syn=None``, STBP LIF) neuron layer.

    Parameters
    ----------
    x : Tensor (T, B, *F)
        Synaptic input per step.
    decay_mem, decay_syn : float or Tensor broadcastable to F
        Per-step decay factors in [0, 1].
    v_threshold : float or Tensor broadcastable to F
        Firing threshold; a spike when ``v > v_threshold``.
    bias : None, float or Tensor broadcastable to F
        Constant added to the membrane every step.
    w_rec : None or Tensor (N, N)
        Recurrent weights of a layer with flat features ``(T, B, N)``: ``o[t-1] @ w_rec.T`` is added to
        the input of step ``t``.
    detach_reset : bool
        Treat the reset as a constant in backward (False follows STBP: gradients flow through it).
    backend : str
        ``"auto"`` (fused Triton kernels on CUDA, the C loop on CPU), ``"reference"``, ``"triton"`` or
        ``"native"``; see ``resolve_backend``. All compute the same equations and gradients.
    """
    if x.dim() < 2:
        raise ValueError(f"neuron input must be (T, B, *features), got shape {tuple(x.shape)}")
    if w_rec is not None and (x.dim() != 3 or tuple(w_rec.shape) != (x.shape[-1], x.shape[-1])):
        raise ValueError(f"recurrent weights {tuple(w_rec.shape)} need a flat (T, B, N) input with N = "
                         f"{w_rec.shape[0]}, got {tuple(x.shape)}")

    def as_tensor(p):
        return p if p is None or isinstance(p, torch.Tensor) else torch.tensor(float(p), dtype=x.dtype,
                                                                              device=x.device)
    fn, which = _NeuronSequence, resolve_backend(x, backend)
    if which == "triton":
        from .triton_kernels import TritonNeuronSequence as fn
    elif which == "native":
        fn = _native().NativeNeuronSequence
    return fn.apply(x, as_tensor(decay_syn), as_tensor(decay_mem), as_tensor(v_threshold),
                    as_tensor(bias), w_rec, surrogate, detach_reset)


# ---------------------------------------------------------------------------------------------
# Modules: hold parameters, call neuron_sequence.


class _NeuronLayer(nn.Module):
    """Shared parameter handling; ``param_shape`` is the per-neuron (or per-channel) shape."""

    def _register(self, name: str, value: float, param_shape, per_neuron: bool, learn: bool):
        """A parameter (trainable) or buffer (fixed), both saved in the state dict."""
        t = torch.full(tuple(param_shape) if per_neuron else (), float(value))
        if learn:
            self.register_parameter(name, nn.Parameter(t))
        else:
            self.register_buffer(name, t)

    def _register_recurrent(self, recurrent: bool, param_shape) -> None:
        """``w_rec`` ``(N, N)``: the layer's own spikes of step ``t-1`` feed its input at ``t``
        (initialised as ``nn.Linear``: uniform in ``+-1/sqrt(N)``). Flat layers only."""
        self.recurrent = bool(recurrent)
        if not self.recurrent:
            self.w_rec = None
            return
        if len(param_shape) != 1:
            raise ValueError(f"a recurrent layer needs flat features (N,), got {tuple(param_shape)}")
        n = int(param_shape[0])
        self.w_rec = nn.Parameter(torch.empty(n, n).uniform_(-1 / math.sqrt(n), 1 / math.sqrt(n)))

    def _rec(self, w_rec):
        return (self.w_rec if w_rec is None else w_rec) if self.recurrent else None


class LIF(_NeuronLayer):
    """STBP iterative LIF layer over ``(T, B, *F)`` inputs.

    Parameters
    ----------
    param_shape : tuple
        Shape of per-neuron parameters, broadcastable to the features (``(N,)`` or ``(C, 1, 1)``).
    decay : float
        STBP's ``tau``, the membrane decay per step, in [0, 1].
    v_threshold : float
    surrogate : Surrogate
    per_neuron : bool
        One parameter per neuron (or channel) instead of one per layer.
    learn_decay, learn_threshold, learn_bias : bool
        Make the decay / threshold / bias (per neuron or channel, initially 0) trainable.
    recurrent : bool
        Add trainable recurrent weights ``w_rec`` (flat layers): ``o[t-1] @ w_rec.T`` joins the input.
    """

    kind = "lif"

    def __init__(self, param_shape, decay: float = 0.2, v_threshold: float = 0.5,
                 surrogate: Surrogate = Surrogate(), per_neuron: bool = False, learn_decay: bool = False,
                 learn_threshold: bool = False, learn_bias: bool = True, detach_reset: bool = False,
                 recurrent: bool = False):
        super().__init__()
        self._register_recurrent(recurrent, param_shape)
        self.param_shape = tuple(param_shape)
        self.surrogate = get_surrogate(surrogate)
        self.detach_reset = detach_reset
        self._register("decay_mem", decay, param_shape, per_neuron, learn_decay)
        self._register("v_threshold", v_threshold, param_shape, per_neuron, learn_threshold)
        self._register("bias", 0.0, param_shape, True, learn_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, B, *F) -> (T, B, *F)
        return self.apply_params(x, self.params())

    def params(self) -> LIFParams:
        return LIFParams(self.decay_mem.clamp(0, 1), self.v_threshold, self.bias)

    def apply_params(self, x: torch.Tensor, p: LIFParams, w_rec=None) -> torch.Tensor:
        """The layer with parameters ``p`` (and ``w_rec``) in place of its own (fake quantization)."""
        return neuron_sequence(x, p.decay, p.v_threshold, bias=p.bias, w_rec=self._rec(w_rec),
                               surrogate=self.surrogate, detach_reset=self.detach_reset)


class CUBA(_NeuronLayer):
    """CUBA LIF layer (synaptic current and membrane, both decaying; reset to zero; bias).

    Parameters as ``LIF``, plus ``decay_syn`` (current decay per step, in [0, 1]), ``decay_mem``
    (membrane decay).
    """

    kind = "cuba"

    def __init__(self, param_shape, decay_syn: float = 0.5, decay_mem: float = 0.9, v_threshold: float = 1.0,
                 surrogate: Surrogate = Surrogate(), per_neuron: bool = False, learn_decay: bool = False,
                 learn_threshold: bool = False, learn_bias: bool = True, detach_reset: bool = False,
                 recurrent: bool = False):
        super().__init__()
        self._register_recurrent(recurrent, param_shape)
        self.param_shape = tuple(param_shape)
        self.surrogate = get_surrogate(surrogate)
        self.detach_reset = detach_reset
        self._register("decay_syn", decay_syn, param_shape, per_neuron, learn_decay)
        self._register("decay_mem", decay_mem, param_shape, per_neuron, learn_decay)
        self._register("v_threshold", v_threshold, param_shape, per_neuron, learn_threshold)
        self._register("bias", 0.0, param_shape, True, learn_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, B, *F) -> (T, B, *F)
        return self.apply_params(x, self.params())

    def params(self) -> CubaParams:
        return CubaParams(self.decay_syn.clamp(0, 1), self.decay_mem.clamp(0, 1), self.v_threshold, self.bias)

    def apply_params(self, x: torch.Tensor, p: CubaParams, w_rec=None) -> torch.Tensor:
        """The layer with parameters ``p`` (and ``w_rec``) in place of its own (fake quantization)."""
        return neuron_sequence(x, p.decay_mem, p.v_threshold, decay_syn=p.decay_syn, bias=p.bias,
                               w_rec=self._rec(w_rec), surrogate=self.surrogate, detach_reset=self.detach_reset)
