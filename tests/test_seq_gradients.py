"""The fused kernel's CUBA gradients against the spike-sequence-label seed's backward equations,
computed directly with scalar loops (not autograd through the step functions).

A two-layer CUBA network, per layer ``l``, neuron ``j``, step ``t`` (``train.neurons``):

    i[t] = tau_s i[t-1] + a[t],    a[t] = sum_k w_jk o^{l-1}_k[t]       (PSP)
    v[t] = tau_m v[t-1] (1 - o[t-1]) + i[t] + b
    o[t] = H(v[t] - V_th)

and the loss is the van Rossum distance to target trains. The seed's backward pass writes the
gradient with two iteration factors:

    PSP factor (spatial)          eps_psp[t, t'] = di[t] / da[t']   = tau_s^(t - t')   (t >= t')
    membrane factor (temporal)    eps_mem[t]     = dv[t+1] / dv[t]  = tau_m (1 - o[t] - v[t] h[t])
                                  (h: the surrogate dH/dv; without the reset path, detach_reset:
                                   tau_m (1 - o[t]))

    delta_v[t] = dL/do[t] h[t] + delta_v[t+1] eps_mem[t]        (dL/do: loss or layer above)
    dL/da[t']  = sum_{t >= t'} delta_v[t] eps_psp[t, t']
    dL/dw_jk   = sum_t dL/da_j[t] o^{l-1}_k[t]
    dL/db_j    = sum_t delta_v_j[t]
    dL/do^{l-1}_k[t] = sum_j w_jk dL/da_j[t]                   (into the layer below)

The PSP factor is summed as the explicit kernel here, where the fused kernel runs a reverse-time
recursion; both must give the same numbers.
"""
import math

import pytest
import torch

from spikeport.train.losses import van_rossum_distance
from spikeport.train.neurons import neuron_sequence
from spikeport.train.surrogates import Surrogate

F64 = torch.float64
T, B, N_IN, N_HID, N_OUT = 9, 2, 3, 4, 2
TAU_VR = 3.0


def _direct_layer_backward(a, v, o, dL_do, tau_s, tau_m, v_th, sg, detach_reset):
    """dL/da (T x N) and dL/db (N) of one CUBA layer from the iteration factors (lists of floats)."""
    n = len(a[0])
    h = [[float(sg.derivative(torch.tensor(v[t][j] - v_th, dtype=F64))) for j in range(n)] for t in range(T)]
    eps_mem = [[tau_m * (1 - o[t][j] - (0.0 if detach_reset else v[t][j] * h[t][j])) for j in range(n)]
               for t in range(T)]
    delta_v = [[0.0] * n for _ in range(T)]
    for t in range(T - 1, -1, -1):
        for j in range(n):
            later = delta_v[t + 1][j] * eps_mem[t][j] if t + 1 < T else 0.0
            delta_v[t][j] = dL_do[t][j] * h[t][j] + later
    dL_da = [[sum(delta_v[t][j] * tau_s ** (t - tp) for t in range(tp, T)) for j in range(n)] for tp in range(T)]
    dL_db = [sum(delta_v[t][j] for t in range(T)) for j in range(n)]
    return dL_da, dL_db


def _forward(a, tau_s, tau_m, v_th, bias):
    """CUBA forward over lists: membrane (before reset) and spikes, T x N."""
    n = len(a[0])
    i_prev, v_prev, o_prev = [0.0] * n, [0.0] * n, [0.0] * n
    vs, os_ = [], []
    for t in range(T):
        i = [tau_s * i_prev[j] + a[t][j] for j in range(n)]
        v = [tau_m * v_prev[j] * (1 - o_prev[j]) + i[j] + bias[j] for j in range(n)]
        o = [1.0 if v[j] > v_th else 0.0 for j in range(n)]
        vs.append(v)
        os_.append(o)
        i_prev, v_prev, o_prev = i, v, o
    return vs, os_


def _matvec(w, x):  # w: out x in (lists), x: in
    return [sum(w[j][k] * x[k] for k in range(len(x))) for j in range(len(w))]


@pytest.mark.parametrize("surrogate", [Surrogate("arctan", 1.0), Surrogate("rectangular", 1.0),
                                       Surrogate("sigmoid", 0.5)])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_fused_cuba_gradients_equal_the_iteration_factor_equations(surrogate, detach_reset):
    gen = torch.Generator().manual_seed(3)
    tau_s, tau_m, v_th = 0.5, 0.8, 1.0
    x = (torch.rand(T, B, N_IN, generator=gen, dtype=F64) < 0.6).to(F64).requires_grad_()
    w1 = (torch.randn(N_HID, N_IN, generator=gen, dtype=F64) * 0.8).requires_grad_()
    w2 = (torch.randn(N_OUT, N_HID, generator=gen, dtype=F64) * 0.8).requires_grad_()
    b1 = (torch.randn(N_HID, generator=gen, dtype=F64) * 0.2).requires_grad_()
    b2 = (torch.randn(N_OUT, generator=gen, dtype=F64) * 0.2).requires_grad_()
    y = (torch.rand(T, B, N_OUT, generator=gen, dtype=F64) < 0.4).to(F64)

    # The fused kernel, through autograd.
    kw = dict(decay_syn=tau_s, surrogate=surrogate, detach_reset=detach_reset)
    o1 = neuron_sequence(x @ w1.T, tau_m, v_th, bias=b1, **kw)
    o2 = neuron_sequence(o1 @ w2.T, tau_m, v_th, bias=b2, **kw)
    loss = van_rossum_distance(o2, y, TAU_VR).mean()
    loss.backward()

    # The equations, by hand, per sample.
    e = math.exp(-1.0 / TAU_VR)
    W1, W2, Bi1, Bi2 = w1.tolist(), w2.tolist(), b1.tolist(), b2.tolist()
    gw1 = [[0.0] * N_IN for _ in range(N_HID)]
    gw2 = [[0.0] * N_HID for _ in range(N_OUT)]
    gb1, gb2 = [0.0] * N_HID, [0.0] * N_OUT
    spikes = [0, 0]
    for b in range(B):
        xb = x[:, b].tolist()
        a1 = [_matvec(W1, xb[t]) for t in range(T)]
        v1, s1 = _forward(a1, tau_s, tau_m, v_th, Bi1)
        a2 = [_matvec(W2, s1[t]) for t in range(T)]
        v2, s2 = _forward(a2, tau_s, tau_m, v_th, Bi2)
        assert s2 == o2[:, b].tolist() and s1 == o1[:, b].tolist()  # same forward
        spikes[0] += sum(map(sum, s1))
        spikes[1] += sum(map(sum, s2))
        # van Rossum: L = 1/B sum_b 1/(T C) sum_{t,c} f[t,c]^2,  f[t] = e f[t-1] + (o - y)[t]
        yb = y[:, b].tolist()
        f, fs = [0.0] * N_OUT, []
        for t in range(T):
            f = [e * f[c] + s2[t][c] - yb[t][c] for c in range(N_OUT)]
            fs.append(f)
        dL_do2 = [[2.0 / (B * T * N_OUT) * sum(fs[tp][c] * e ** (tp - t) for tp in range(t, T))
                   for c in range(N_OUT)] for t in range(T)]
        dL_da2, dL_db2 = _direct_layer_backward(a2, v2, s2, dL_do2, tau_s, tau_m, v_th, surrogate, detach_reset)
        dL_do1 = [[sum(W2[j][k] * dL_da2[t][j] for j in range(N_OUT)) for k in range(N_HID)] for t in range(T)]
        dL_da1, dL_db1 = _direct_layer_backward(a1, v1, s1, dL_do1, tau_s, tau_m, v_th, surrogate, detach_reset)
        dL_dx = [[sum(W1[j][k] * dL_da1[t][j] for j in range(N_HID)) for k in range(N_IN)] for t in range(T)]
        assert torch.allclose(x.grad[:, b], torch.tensor(dL_dx, dtype=F64), rtol=1e-9, atol=1e-13)
        for t in range(T):
            for j in range(N_OUT):
                for k in range(N_HID):
                    gw2[j][k] += dL_da2[t][j] * s1[t][k]
            for j in range(N_HID):
                for k in range(N_IN):
                    gw1[j][k] += dL_da1[t][j] * xb[t][k]
        gb1 = [g + d for g, d in zip(gb1, dL_db1)]
        gb2 = [g + d for g, d in zip(gb2, dL_db2)]
    # both layers spike, and not at every step: reset, surrogate and silent paths are all exercised
    assert 0 < spikes[0] < T * B * N_HID and 0 < spikes[1] < T * B * N_OUT
    for got, want in ((w2.grad, gw2), (w1.grad, gw1), (b2.grad, gb2), (b1.grad, gb1)):
        assert torch.allclose(got, torch.tensor(want, dtype=F64), rtol=1e-9, atol=1e-13)
    assert w1.grad.abs().sum() > 0 and w2.grad.abs().sum() > 0  # gradients reached both layers


def test_the_reset_path_is_part_of_the_membrane_factor():
    """The membrane factor with and without its reset term gives different weight gradients here,
    so the comparison above distinguishes the two (it would fail if the kernel dropped the term)."""
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(T, B, N_IN, generator=gen, dtype=F64) < 0.6).to(F64)
    w = (torch.randn(N_HID, N_IN, generator=gen, dtype=F64) * 0.8)
    grads = []
    for detach in (False, True):
        wr = w.clone().requires_grad_()
        o = neuron_sequence(x @ wr.T, 0.8, 1.0, decay_syn=0.5, surrogate=Surrogate("arctan"), detach_reset=detach)
        (o * torch.arange(T, dtype=F64)[:, None, None]).sum().backward()
        grads.append(wr.grad)
    assert not torch.allclose(grads[0], grads[1])
