"""Tests for sim.simulator against an independent pure-Python-int reference of Lava's fixed_pt step.

The reference below is written from LOIHI.md and the simulator's module docstring (where Lava's real
code differs from LOIHI.md: one conditional 24-bit wrap of u, int32 wrap of the sums, conv output
wrapped modulo 2**24, conv weights untruncated). Equivalence against Lava itself lives in
tests/test_sim_vs_lava.py.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons, SumPool2d
from spikeport.sim.simulator import check_input, simulate

# ------------------------------------------------------------------------ Python reference


def decay(x: int, k: int) -> int:
    """x * k / 4096, rounding toward zero: sign(x k) * (|x k| >> 12)."""
    p = x * k
    return (1 if p >= 0 else -1) * (abs(p) >> 12)


def wrap_bits(x: int, bits: int) -> int:
    half = 1 << (bits - 1)
    return ((x + half) % (1 << bits)) - half


def ref_neurons(a_seq, du, dv, vth, bias_mant, bias_exp):
    """One neuron group over time. ``a_seq[t][n]`` synaptic input; registers are per-neuron lists.
    Returns (spikes, u, v) as lists [t][n] of Python ints."""
    n = len(du)
    u, v = [0] * n, [0] * n
    S, U, V = [], [], []
    for a in a_seq:
        s_t = []
        for i in range(n):
            ui = decay(u[i], 4096 - (du[i] + 1))
            ui = wrap_bits(ui + (a[i] << 6), 32)          # int32 add
            if ui > 2 ** 23:                                # one conditional wrap
                ui -= 2 ** 24
            if ui <= -(2 ** 23):
                ui += 2 ** 24
            vi = wrap_bits(decay(v[i], 4096 - dv[i]) + ui + (bias_mant[i] << bias_exp[i]), 32)
            vi = min(max(vi, -(2 ** 23 - 1)), 2 ** 23 - 1)
            spike = vi > (vth[i] << 6)
            if spike:
                vi = 0
            u[i], v[i] = ui, vi
            s_t.append(int(spike))
        S.append(s_t)
        U.append(list(u))
        V.append(list(v))
    return S, U, V


def ref_dense_input(spikes, w_eff, exp):
    """a[t][o] = (sum_j w[o][j] s[t][j]) << exp, or >> -exp (floor) of the SUM."""
    out = []
    for s in spikes:
        row = []
        for wo in w_eff:
            tot = sum(w * x for w, x in zip(wo, s))
            row.append(tot << exp if exp >= 0 else tot >> -exp)
        out.append(row)
    return out


def ref_conv_input(spikes, in_shape, w, stride, padding):
    """Cross-correlation in plain ints, wrapped into signed 24 bits. spikes[t] flat (C*H*W)."""
    c_in, h, wd = in_shape
    c_out, _, kh, kw = len(w), len(w[0]), len(w[0][0]), len(w[0][0][0])
    oh = (h + 2 * padding[0] - kh) // stride[0] + 1
    ow = (wd + 2 * padding[1] - kw) // stride[1] + 1
    out = []
    for s in spikes:
        row = []
        for co in range(c_out):
            for y in range(oh):
                for x in range(ow):
                    tot = 0
                    for ci in range(c_in):
                        for dy in range(kh):
                            for dx in range(kw):
                                iy, ix = y * stride[0] - padding[0] + dy, x * stride[1] - padding[1] + dx
                                if 0 <= iy < h and 0 <= ix < wd:
                                    tot += w[co][ci][dy][dx] * s[(ci * h + iy) * wd + ix]
                    row.append(wrap_bits(tot, 24))
        out.append(row)
    return out


def delay_one_step(a_seq):
    return [[0] * len(a_seq[0])] + a_seq[:-1]


def ref_network(net: IntNetwork, x_sample, timing):
    """Per-layer reference for one sample ``x_sample`` (T, n_in) 0/1; returns per-layer (S, U, V)."""
    s = [[int(v) for v in row] for row in np.asarray(x_sample).reshape(len(x_sample), -1)]
    results = []
    for i, layer in enumerate(net.layers):
        syn, shape_in, shape_out = layer.synapse, net.shapes[i], net.shapes[i + 1]
        if isinstance(syn, Dense):
            a = ref_dense_input(s, syn.effective_weight().tolist(), int(syn.weight_exp))
        else:
            conv = syn.as_conv(shape_in[0]) if isinstance(syn, SumPool2d) else syn
            w = (np.asarray(conv.weight).astype(np.int64) << int(conv.weight_exp)).tolist()
            a = ref_conv_input(s, shape_in, w, tuple(conv.stride), tuple(conv.padding))
        if timing == "hardware":
            a = delay_one_step(a)
        regs = [layer.neurons.expand(name, shape_out).tolist() for name in Neurons.FIELDS]
        S, U, V = ref_neurons(a, *regs)
        results.append((S, U, V))
        s = S
    return results


def assert_matches_reference(net, x, timing):
    res = simulate(net, x, timing=timing, record=True)
    for k in range(x.shape[0]):
        ref = ref_network(net, x[k], timing)
        for li, (S, U, V) in enumerate(ref):
            assert res.spikes[li][k].tolist() == S, f"sample {k} layer {li} spikes"
            assert res.u[li][k].tolist() == U, f"sample {k} layer {li} u"
            assert res.v[li][k].tolist() == V, f"sample {k} layer {li} v"
        assert res.output[k].tolist() == ref[-1][0]
    return res


def spikes(rng, shape, p=0.5):
    return (rng.random(shape) < p).astype(np.int8)


def test_reference_helpers_follow_the_equations():
    # decay rounds toward zero in both signs; the wrap is two's complement
    assert decay(4097, 4095) == (4097 * 4095) // 4096 and decay(-4097, 4095) == -((4097 * 4095) // 4096)
    assert wrap_bits(2 ** 23, 24) == -(2 ** 23) and wrap_bits(-(2 ** 23) - 1, 24) == 2 ** 23 - 1


# ------------------------------------------------------------------------- single neurons

@pytest.mark.parametrize("timing", ["ideal", "hardware"])
@pytest.mark.parametrize("du,dv,vth,bm,be", [
    (4095, 0, 50, 0, 0), (0, 0, 300, 0, 0), (0, 4095, 20, 0, 0), (1000, 300, 100, -37, 3),
    (2047, 2048, 0, 5, 0), (3000, 100, 131071, 4095, 7), (10, 4000, 7, -4096, 7)])
def test_single_neuron_matches_reference(du, dv, vth, bm, be, timing):
    rng = np.random.default_rng(du + dv + vth)
    n_in = 12
    w = rng.integers(-256, 256, (1, n_in))
    net = IntNetwork((n_in,), (Layer(Dense(w, weight_exp=1), Neurons(du=du, dv=dv, vth=vth, bias_mant=bm,
                                                                      bias_exp=be)),))
    x = spikes(rng, (2, 25, n_in), 0.6)
    res = assert_matches_reference(net, x, timing)
    assert res.u[0].any()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("timing", ["ideal", "hardware"])
def test_small_layer_per_neuron_registers_match_reference(seed, timing):
    rng = np.random.default_rng(seed)
    n_in, n = 10, 6
    mode = ["mixed", "excitatory", "inhibitory", "mixed"][seed]
    w = {"mixed": rng.integers(-256, 256, (n, n_in)), "excitatory": rng.integers(0, 256, (n, n_in)),
         "inhibitory": rng.integers(-255, 1, (n, n_in))}[mode]
    exp = int(rng.integers(-8, 8))
    net = IntNetwork((n_in,), (Layer(Dense(w, weight_exp=exp, num_weight_bits=int(rng.integers(5, 9))),
                                     Neurons(du=rng.integers(0, 4096, n), dv=rng.integers(0, 4096, n),
                                             vth=rng.integers(0, 300, n) << max(exp, 0),
                                             bias_mant=rng.integers(-4096, 4096, n),
                                             bias_exp=rng.integers(0, 8, n))),))
    assert_matches_reference(net, spikes(rng, (2, 20, n_in)), timing)


def test_u_wraps_at_24_bits_and_int32_like_the_reference():
    n_in = 1100  # 1100 * 255 << 7 << 6 > 2**31: the int32 add wraps too
    w = np.full((3, n_in), 255)
    w[2] = 3
    net = IntNetwork((n_in,), (Layer(Dense(w, weight_exp=7), Neurons(du=0, dv=2000, vth=500)),))
    x = np.ones((2, 6, n_in), dtype=np.int8)
    x[1, 3:] = 0
    x[1, :, : n_in // 3] = 0
    res = assert_matches_reference(net, x, "ideal")
    a64_max = (n_in * 255) << 7 << 6
    assert a64_max > 2 ** 31  # this input does exercise the int32 wrap
    u = res.u[0]
    assert u.max() > 0 and u.min() < 0  # positive weights, yet u went negative: wrapped


def test_v_saturates_and_strict_threshold():
    # du = 4095: u = a << 6; dv = 0: v integrates. vth << 6 == exactly the first-step input: no spike
    # at step 0 (strict >), a spike at step 1.
    w = np.array([[40]])
    net = IntNetwork((1,), (
        Layer(Dense(w), Neurons(du=4095, dv=0, vth=40)),
    ))
    res = simulate(net, np.ones((1, 3, 1), dtype=np.int8), timing="ideal", record=True)
    assert res.v[0][0, 0, 0] == 40 << 6 and res.spikes[0][0, :, 0].tolist() == [0, 1, 0]
    neg = IntNetwork((4,), (Layer(Dense(np.full((1, 4), -255), weight_exp=7), Neurons(du=4095, dv=0, vth=0)),))
    res = assert_matches_reference(neg, np.ones((1, 12, 4), dtype=np.int8), "ideal")
    assert res.v[0].min() == -(2 ** 23 - 1)


# ------------------------------------------------------------------------- multi-layer timing

def _chain(rng, sizes, bias=True):
    layers = []
    for k in range(len(sizes) - 1):
        n = sizes[k + 1]
        w = rng.integers(-120, 256, (n, sizes[k]))
        layers.append(Layer(Dense(w), Neurons(du=rng.integers(0, 4096, n), dv=rng.integers(0, 4096, n),
                                              vth=int(np.abs(w).mean() * sizes[k] * 0.15),
                                              bias_mant=rng.integers(-200, 200, n) if bias else 0,
                                              bias_exp=3 if bias else 0)))
    return IntNetwork((sizes[0],), layers)


@pytest.mark.parametrize("timing", ["ideal", "hardware"])
def test_three_layer_chain_matches_per_layer_reference(timing):
    rng = np.random.default_rng(11)
    net = _chain(rng, [14, 10, 8, 5])
    res = assert_matches_reference(net, spikes(rng, (2, 18, 14), 0.6), timing)
    assert all(s.any() for s in res.spikes)


def test_hardware_output_is_ideal_output_delayed_by_one_step_per_layer():
    # With zero bias a neuron at rest stays at rest while its (delayed) input is still empty, so
    # layer l of the hardware run reproduces the ideal run l + 1 steps later.
    rng = np.random.default_rng(12)
    net = _chain(rng, [14, 10, 8, 5], bias=False)
    L, T = len(net.layers), 20
    x = spikes(rng, (3, T, 14), 0.6)
    ideal = simulate(net, x, timing="ideal", record=True)
    hw = simulate(net, x, timing="hardware", record=True)
    assert ideal.output.any()
    for li in range(L):
        d = li + 1
        assert not hw.spikes[li][:, :d].any()
        assert np.array_equal(hw.spikes[li][:, d:], ideal.spikes[li][:, :T - d])
        assert np.array_equal(hw.v[li][:, d:], ideal.v[li][:, :T - d])
    assert np.array_equal(hw.output[:, L:], ideal.output[:, :T - L])
    assert not hw.output[:, :L].any()


# ------------------------------------------------------------------- dense negative exponent

def test_negative_weight_exp_shifts_the_sum_not_each_weight():
    # excitatory and inhibitory weights are kept exactly at 8 bits (no truncation)
    w_pos, w_neg = np.array([[3, 3, 3]]), np.array([[-3, -3, -1]])
    x = np.array([[[1, 1, 0], [1, 1, 1], [0, 0, 1], [1, 0, 0]]], dtype=np.int8)
    for w in (w_pos, w_neg):
        for exp in (-1, -2):
            net = IntNetwork((3,), (Layer(Dense(w, weight_exp=exp), Neurons(du=4095, dv=4095, vth=131071)),))
            u = simulate(net, x, timing="ideal", record=True).u[0][0, :, 0].tolist()
            sums = [int(np.dot(w[0], s)) for s in x[0]]
            expected = [(t >> -exp) << 6 for t in sums]              # floor of the SUM
            per_weight = [sum((int(wi) * int(si)) >> -exp for wi, si in zip(w[0], s)) << 6 for s in x[0]]
            truncated = [int(math.trunc(t / 2 ** -exp)) << 6 for t in sums]
            assert u == expected
            assert expected != per_weight  # the case tells the two rules apart
            if w is w_neg:
                assert expected != truncated  # and floor from truncation toward zero


# --------------------------------------------------------------------------------- convolution

@pytest.mark.parametrize("timing", ["ideal", "hardware"])
@pytest.mark.parametrize("stride,padding,exp", [((1, 1), (0, 0), 0), ((2, 1), (1, 2), 2), ((2, 3), (2, 1), 5)])
def test_conv_input_equals_torch_conv2d(stride, padding, exp, timing):
    rng = np.random.default_rng(sum(stride) * 10 + sum(padding) + exp)
    in_shape = (2, 7, 8)
    w = rng.integers(-256, 256, (3, 2, 3, 3))  # odd values included: conv weights are not truncated
    assert np.any(w % 2)
    net = IntNetwork(in_shape, (Layer(Conv2d(w, stride=stride, padding=padding, weight_exp=exp),
                                      Neurons(du=4095, dv=4095, vth=131071)),))
    S, T = 2, 4
    x = spikes(rng, (S, T, *in_shape))
    res = simulate(net, x, timing=timing, record=True)
    a = TF.conv2d(torch.tensor(x.reshape(S * T, *in_shape), dtype=torch.float64),
                  torch.tensor(w * 2 ** exp, dtype=torch.float64), stride=stride, padding=padding)
    assert tuple(a.shape[1:]) == net.shapes[1]
    a = a.numpy().astype(np.int64).reshape(S, T, -1)
    assert np.abs(a).max() < 2 ** 17  # no wrap of u = a << 6 in this test
    if timing == "hardware":
        a = np.concatenate([np.zeros_like(a[:, :1]), a[:, :-1]], axis=1)
    assert np.array_equal(res.u[0], a << 6)


def test_conv_output_wraps_modulo_2_pow_24():
    # 32 channels x 3 x 3 taps of 255 << 7: the sum reaches 9.4e6 > 2**23 and wraps negative
    w = np.full((2, 32, 3, 3), 255)
    w[1] = 1
    net = IntNetwork((32, 3, 3), (Layer(Conv2d(w, weight_exp=7), Neurons(du=4095, dv=0, vth=10)),))
    x = np.ones((1, 3, 32, 3, 3), dtype=np.int8)
    x[0, 1, :4] = 0
    res = assert_matches_reference(net, x, "ideal")
    full = 32 * 9 * 255 << 7
    assert full > 2 ** 23
    a64 = wrap_bits(full, 24) << 6
    assert a64 < -(2 ** 23)
    # one conditional wrap of u (not a modulo): it stays out of the 24-bit range, as in Lava
    assert res.u[0][0, 0, 0] == a64 + 2 ** 24 < -(2 ** 23)


def test_conv_pool_dense_chain_matches_reference():
    rng = np.random.default_rng(21)
    net = IntNetwork((2, 6, 5), (
        Layer(Conv2d(rng.integers(-60, 120, (3, 2, 3, 2)), stride=(1, 2), padding=(1, 1), weight_exp=1),
              Neurons(du=rng.integers(0, 4096, 3), dv=900, vth=60, bias_mant=rng.integers(-50, 50, 3), bias_exp=2)),
        Layer(SumPool2d(2), Neurons(du=4095, dv=100, vth=1)),
        Layer(Dense(rng.integers(-256, 256, (4, 3 * 3 * 1)), weight_exp=-1), Neurons(du=300, dv=300, vth=5)),
    ))
    for timing in ("ideal", "hardware"):
        res = assert_matches_reference(net, spikes(rng, (2, 12, 2, 6, 5), 0.6), timing)
        assert res.spikes[0].any() and res.spikes[1].any()


def test_sum_pool_is_reshape_sum():
    rng = np.random.default_rng(22)
    in_shape, k = (3, 6, 7), 2  # the odd last column is dropped
    net = IntNetwork(in_shape, (Layer(SumPool2d(k), Neurons(du=4095, dv=4095, vth=131071)),))
    x = spikes(rng, (2, 5, *in_shape))
    res = simulate(net, x, timing="ideal", record=True)
    c, oh, ow = in_shape[0], in_shape[1] // k, in_shape[2] // k
    expected = x[..., :oh * k, :ow * k].reshape(2, 5, c, oh, k, ow, k).sum(axis=(4, 6)).astype(np.int64)
    assert net.shapes[1] == (c, oh, ow)
    assert np.array_equal(res.u[0], expected.reshape(2, 5, -1) << 6)
    assert expected.max() == k * k  # some window was full


# ----------------------------------------------------------------------------- API details

def test_record_shapes_and_dtypes():
    rng = np.random.default_rng(31)
    net = IntNetwork((1, 6, 6), (
        Layer(Conv2d(rng.integers(-5, 10, (2, 1, 3, 3))), Neurons(vth=3)),
        Layer(SumPool2d(2), Neurons()),
        Layer(Dense(rng.integers(0, 9, (3, 2 * 2 * 2))), Neurons()),
    ))
    S, T = 3, 7
    x = spikes(rng, (S, T, 1, 6, 6))
    res = simulate(net, x, record=True)
    assert res.output.shape == (S, T, 3) and res.output.dtype == np.int8
    sizes = [math.prod(s) for s in net.shapes[1:]]
    assert [a.shape for a in res.spikes] == [(S, T, n) for n in sizes]
    assert all(a.dtype == np.int8 for a in res.spikes)
    assert all(a.dtype == np.int32 for a in res.u + res.v)
    assert [a.shape for a in res.u] == [a.shape for a in res.v] == [(S, T, n) for n in sizes]
    assert np.array_equal(res.output, res.spikes[-1])
    plain = simulate(net, x)
    assert plain.spikes is None and plain.u is None and plain.v is None
    assert np.array_equal(plain.output, res.output)


def test_batch_size_chunking_is_invisible():
    rng = np.random.default_rng(32)
    net = _chain(rng, [12, 9, 4])
    x = spikes(rng, (7, 10, 12), 0.6)
    whole = simulate(net, x, record=True, batch_size=256)
    for bs in (1, 3):
        part = simulate(net, x, record=True, batch_size=bs)
        assert np.array_equal(part.output, whole.output)
        for what in ("spikes", "u", "v"):
            for a, b in zip(getattr(part, what), getattr(whole, what)):
                assert np.array_equal(a, b)
    # every sample starts from rest: alone it gives the same answer
    alone = simulate(net, x[4:5], record=True)
    assert np.array_equal(alone.v[0][0], whole.v[0][4])


def test_check_input_accepts_binary_and_flat_spatial():
    net = IntNetwork((2, 3, 3), (Layer(SumPool2d(3), Neurons()),))
    x = np.ones((2, 4, 2, 3, 3), dtype=bool)
    out = check_input(net, x)
    assert out.shape == (2, 4, 18) and out.dtype == np.uint8
    assert check_input(net, x.reshape(2, 4, 18).astype(np.float32)).shape == (2, 4, 18)
    assert simulate(net, x.astype(np.float64)).output.shape == (2, 4, 2)


@pytest.mark.parametrize("shape", [(2, 4, 5), (2, 4), (4,), (2, 4, 2, 3)])
def test_check_input_wrong_shape(shape):
    net = IntNetwork((4,), (Layer(Dense(np.ones((2, 4), dtype=np.int64)), Neurons()),))
    with pytest.raises(ValueError) as err:
        simulate(net, np.zeros(shape, dtype=np.int8))
    msg = str(err.value)
    assert "(samples, T, 4)" in msg and str(tuple(shape)) in msg


@pytest.mark.parametrize("bad", [2, -1, 0.5])
def test_check_input_non_binary(bad):
    net = IntNetwork((4,), (Layer(Dense(np.ones((2, 4), dtype=np.int64)), Neurons()),))
    x = np.zeros((1, 3, 4))
    x[0, 1, 2] = bad
    with pytest.raises(ValueError, match="0/1"):
        simulate(net, x)
    with pytest.raises(ValueError, match="0/1"):
        check_input(net, np.array([["a"] * 4] * 3)[None])


def test_bogus_timing():
    net = IntNetwork((4,), (Layer(Dense(np.ones((2, 4), dtype=np.int64)), Neurons()),))
    with pytest.raises(ValueError, match="bogus"):
        simulate(net, np.zeros((1, 2, 4), dtype=np.int8), timing="bogus")


def test_zero_steps_or_samples_give_empty_results():
    net = IntNetwork((4,), (Layer(Dense(np.ones((3, 4), dtype=np.int64)), Neurons(vth=1)),))
    for shape in ((2, 0, 4), (0, 5, 4)):
        res = simulate(net, np.zeros(shape, dtype=np.int8), record=True)
        assert res.output.shape == (shape[0], shape[1], 3) and res.u[0].shape == (shape[0], shape[1], 3)
