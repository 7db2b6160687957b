"""Fused Triton kernels for the neuron time loop (``train.neurons``), forward and backward.

The equations are those of ``train.neurons`` (CUBA LIF; ``decay_syn is None`` is the STBP LIF)::

    i[t] = decay_syn * i[t-1] + a[t]            a[t] = x[t] (+ o[t-1] @ w_rec.T, recurrent layers)
    v[t] = decay_mem * r[t-1] + i[t] + bias     r[t] = v[t] (1 - o[t])   (reset to zero)
    o[t] = H(v[t] - v_threshold)

and the backward is the same reverse-time recurrence as ``neurons._NeuronSequence.backward``
(STBP, Wu et al. 2018): with ``h[t] = surrogate'(v[t] - v_threshold)`` and ``c[t] = decay_mem *
dL/dv[t+1]`` (the gradient reaching ``r[t]``)::

    dL/do[t] = grad_out[t] (+ dL/da[t+1] @ w_rec)  (- c[t] v[t] unless detach_reset)
    dL/dv[t] = dL/do[t] h[t] + c[t] (1 - o[t])
    dL/da[t] = dL/dv[t] + decay_syn dL/da[t+1]     (LIF: dL/da[t] = dL/dv[t])

Layout: one program owns ``BLOCK`` neurons of the flat ``(B * prod(F))`` step and loops over time
with the state (``r``, ``i``; backward ``dL/dv[t+1]``, ``dL/da[t+1]``) in registers. The forward
writes ``v[t]`` and ``o[t]`` (and ``i[t]`` when the synaptic decay learns); the backward writes
``dL/da[t]`` (the input's gradient) and accumulates the parameter gradients per neuron in registers
(``sum_t dL/dv[t] r[t-1]``, ``sum_t dL/da[t] i[t-1]``, ``sum_t dL/do[t] h[t]``, ``sum_t dL/dv[t]``),
which the host sums over the batch. No whole-sequence temporaries besides the outputs.

Recurrent layers need the matmul ``o[t-1] @ w_rec.T`` between two steps, so there the kernels run
one step per launch (state kept in step-sized buffers between launches) and torch does the matmul
in between; without recurrence one launch covers all ``T`` steps.

Every constant of the arithmetic (the surrogate's width and the numbers derived from it) is passed
as a tensor of the input's dtype, never as a Python float literal, which Triton would round to
float32; in float64 the kernels then agree with the torch reference to rounding.

On a CPU these kernels run under Triton's interpreter (``TRITON_INTERPRET=1`` set before triton is
imported), which is how the tests check them without a GPU. ``train.neurons.neuron_sequence`` picks
this path for CUDA tensors.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .neurons import kernel_sequence
from .surrogates import KERNEL_CODES, Surrogate, kernel_constants


@triton.jit
def _surrogate(x, c0, c1, SG: tl.constexpr):
    if SG == 0:
        h = tl.where(tl.abs(x) < c0, 1.0, 0.0).to(x.dtype) / c1
    elif SG == 1:
        h = tl.maximum(c0 - c1 * tl.abs(x), 0.0)
    elif SG == 2:
        s = 1.0 / (1.0 + tl.exp(-(x / c0)))
        h = (s - s * s) / c1
    elif SG == 3:
        h = tl.exp(-(x * x) / c0) / c1
    elif SG == 4:
        y = x * c0
        h = 1.0 / (1.0 + y * y)
    else:
        y = 1.0 + tl.abs(x) / c0
        h = 1.0 / (y * y)
    return h


@triton.jit
def _forward_kernel(x_ptr, x_step, v_ptr, o_ptr, i_ptr, r_state, i_state,
                    dsyn_ptr, dmem_ptr, th_ptr, bias_ptr, M, NF, t0, n_steps,
                    CUBA: tl.constexpr, HAS_BIAS: tl.constexpr, SAVE_I: tl.constexpr, INIT: tl.constexpr,
                    S_SYN: tl.constexpr, S_MEM: tl.constexpr, S_TH: tl.constexpr, S_BIAS: tl.constexpr,
                    BLOCK: tl.constexpr):
    """Steps ``t0 .. t0 + n_steps - 1``; input of step t at ``x_ptr + t * x_step`` (x_step 0: one buffer).
    INIT: start from rest (else from the state buffers). S_*: parameter stride, 0 shared, 1 per neuron."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    p = offs % NF                                   # the neuron's index in the feature shape F
    dm = tl.load(dmem_ptr + p * S_MEM, mask=mask, other=0.0)
    th = tl.load(th_ptr + p * S_TH, mask=mask, other=0.0)
    if INIT:
        r = tl.zeros([BLOCK], dtype=dm.dtype)
    else:
        r = tl.load(r_state + offs, mask=mask, other=0.0)  # post-reset membrane of step t0 - 1
    if HAS_BIAS:
        b = tl.load(bias_ptr + p * S_BIAS, mask=mask, other=0.0)
    if CUBA:
        ds = tl.load(dsyn_ptr + p * S_SYN, mask=mask, other=0.0)
        if INIT:
            cur = tl.zeros([BLOCK], dtype=dm.dtype)
        else:
            cur = tl.load(i_state + offs, mask=mask, other=0.0)
    for k in range(n_steps):
        t = (t0 + k).to(tl.int64)
        xt = tl.load(x_ptr + t * x_step + offs, mask=mask, other=0.0)
        if CUBA:
            cur = xt + cur * ds
            if SAVE_I:
                tl.store(i_ptr + t * M + offs, cur, mask=mask)
            v = cur + r * dm
        else:
            v = xt + r * dm
        if HAS_BIAS:
            v = v + b
        o = tl.where(v > th, 1.0, 0.0).to(v.dtype)
        tl.store(v_ptr + t * M + offs, v, mask=mask)
        tl.store(o_ptr + t * M + offs, o, mask=mask)
        r = v - v * o                               # exact: v or 0
    tl.store(r_state + offs, r, mask=mask)
    if CUBA:
        tl.store(i_state + offs, cur, mask=mask)


@triton.jit
def _backward_kernel(g_ptr, rec_ptr, v_ptr, o_ptr, i_ptr, gi_ptr, gv_state, gi_state,
                     acc_mem, acc_syn, acc_th, acc_bias, dsyn_ptr, dmem_ptr, th_ptr, sg_ptr,
                     M, NF, t_hi, n_steps,
                     CUBA: tl.constexpr, HAS_REC: tl.constexpr, DETACH: tl.constexpr, SG: tl.constexpr,
                     NEED_MEM: tl.constexpr, NEED_SYN: tl.constexpr, NEED_TH: tl.constexpr,
                     NEED_BIAS: tl.constexpr, INIT: tl.constexpr, S_SYN: tl.constexpr, S_MEM: tl.constexpr,
                     S_TH: tl.constexpr, BLOCK: tl.constexpr):
    """Steps ``t_hi - 1`` down to ``t_hi - n_steps``; with HAS_REC, ``rec`` (step-sized) joins dL/do.
    INIT: the first launch (zero state and sums), else continue from the buffers."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    p = offs % NF
    dm = tl.load(dmem_ptr + p * S_MEM, mask=mask, other=0.0)
    th = tl.load(th_ptr + p * S_TH, mask=mask, other=0.0)
    c0 = tl.load(sg_ptr)
    c1 = tl.load(sg_ptr + 1)
    if CUBA:
        ds = tl.load(dsyn_ptr + p * S_SYN, mask=mask, other=0.0)
    # dL/dv[t_hi], dL/da[t_hi], and the per-neuron partial sums of the parameter gradients
    if INIT:
        zero = tl.zeros([BLOCK], dtype=dm.dtype)
        gv_next = zero
        gi_next = zero
        s_mem = zero
        s_syn = zero
        s_th = zero
        s_bias = zero
    else:  # unused buffers are loaded too (each is a valid pointer of M elements): simpler than more branches
        gv_next = tl.load(gv_state + offs, mask=mask, other=0.0)
        gi_next = tl.load(gi_state + offs, mask=mask, other=0.0)
        s_mem = tl.load(acc_mem + offs, mask=mask, other=0.0)
        s_syn = tl.load(acc_syn + offs, mask=mask, other=0.0)
        s_th = tl.load(acc_th + offs, mask=mask, other=0.0)
        s_bias = tl.load(acc_bias + offs, mask=mask, other=0.0)
    for k in range(n_steps):
        t = (t_hi - 1 - k).to(tl.int64)
        vt = tl.load(v_ptr + t * M + offs, mask=mask, other=0.0)
        ot = tl.where(vt > th, 1.0, 0.0).to(vt.dtype)  # o[t] recomputed from v[t]: one read fewer
        g = tl.load(g_ptr + t * M + offs, mask=mask, other=0.0)
        if HAS_REC:
            g = g + tl.load(rec_ptr + offs, mask=mask, other=0.0)
        carry = gv_next * dm                      # dL/dr[t]
        if not DETACH:
            g = g - carry * vt                    # r[t] = v[t] (1 - o[t]) depends on o[t]
        gh = g * _surrogate(vt - th, c0, c1, SG)  # dL/do[t] h[t]
        gv = gh + (carry - carry * ot)
        if CUBA:
            ga = gv + gi_next * ds
            gi_next = ga
        else:
            ga = gv
        tl.store(gi_ptr + t * M + offs, ga, mask=mask)
        gv_next = gv
        if NEED_TH:
            s_th += gh
        if NEED_BIAS:
            s_bias += gv
        if NEED_MEM or NEED_SYN:
            prev = mask & (t > 0)                 # step t - 1 exists
            if NEED_MEM:
                vp = tl.load(v_ptr + (t - 1) * M + offs, mask=prev, other=0.0)
                s_mem += gv * (vp - vp * tl.where(vp > th, 1.0, 0.0).to(vp.dtype))  # r[t-1]
            if NEED_SYN:
                s_syn += ga * tl.load(i_ptr + (t - 1) * M + offs, mask=prev, other=0.0)
    tl.store(gv_state + offs, gv_next, mask=mask)
    if CUBA:
        tl.store(gi_state + offs, gi_next, mask=mask)
    if NEED_MEM:
        tl.store(acc_mem + offs, s_mem, mask=mask)
    if NEED_SYN:
        tl.store(acc_syn + offs, s_syn, mask=mask)
    if NEED_TH:
        tl.store(acc_th + offs, s_th, mask=mask)
    if NEED_BIAS:
        tl.store(acc_bias + offs, s_bias, mask=mask)


def _block(m: int) -> int:
    """Neurons per program: 128 (many programs: the time loop is latency-bound), up to 1024 for
    layers of millions of neurons."""
    return max(128, min(1024, triton.next_power_of_2(max(1, m // 2048))))


@functools.lru_cache(maxsize=64)
def _sg_tensor(s: Surrogate, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The surrogate's two constants on the device, made once (a host-to-device copy per call would
    synchronise)."""
    return torch.tensor(kernel_constants(s)[1:], dtype=dtype, device=device)


def _forward_launch(src, step, V, O, I, r_state, i_state, ds, dm, th, b, M, nf, t0, n, *, cuba, has_bias,
                    save_i, init, strides):
    BLOCK = _block(M)
    s_syn, s_mem, s_th, s_bias = strides
    _forward_kernel[(triton.cdiv(M, BLOCK),)](
        src, step, V, O, I, r_state, i_state, ds, dm, th, b, M, nf, t0, n, CUBA=cuba, HAS_BIAS=has_bias,
        SAVE_I=save_i, INIT=init, S_SYN=s_syn, S_MEM=s_mem, S_TH=s_th, S_BIAS=s_bias, BLOCK=BLOCK)


def _backward_launch(g, rec, V, O, I, GI, gv_state, gi_state, acc_mem, acc_syn, acc_th, acc_bias, ds, dm, th,
                     surrogate, M, nf, t_hi, n, *, cuba, has_rec, detach, need_mem, need_syn, need_th, need_bias,
                     init, strides):
    BLOCK = _block(M)
    s_syn, s_mem, s_th = strides
    _backward_kernel[(triton.cdiv(M, BLOCK),)](
        g, rec, V, O, I, GI, gv_state, gi_state, acc_mem, acc_syn, acc_th, acc_bias, ds, dm, th,
        _sg_tensor(surrogate, V.dtype, V.device), M, nf, t_hi, n, CUBA=cuba, HAS_REC=has_rec, DETACH=detach,
        SG=KERNEL_CODES[surrogate.name], NEED_MEM=need_mem, NEED_SYN=need_syn, NEED_TH=need_th, NEED_BIAS=need_bias,
        INIT=init, S_SYN=s_syn, S_MEM=s_mem, S_TH=s_th, BLOCK=BLOCK)


# Same interface and results as ``neurons._NeuronSequence``, computed by the kernels above.
TritonNeuronSequence = kernel_sequence("TritonNeuronSequence", _forward_launch, _backward_launch)
