"""The simulator against Lava's own fixed_pt models: zero mismatches in spikes, u and v of every layer.

Networks are seeded and random, chosen to cover: dense and conv (with padding and stride) and
sum pooling; positive, negative, mixed and odd weights; every dense weight exponent and
non-negative conv exponents; du/dv at 0, 4095 and in between; biases of every exponent;
thresholds at both ends of their range; inputs strong enough to wrap u (also past int32) and to
saturate v. Lava is required: these tests run in CI and never skip.
"""
import numpy as np
import pytest

from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons, SumPool2d
from spikeport.sim.simulator import simulate
from spikeport.targets.lava import run_lava


def assert_identical(net, x):
    ours = simulate(net, x, record=True)
    lava = run_lava(net, x, record=True)
    assert np.array_equal(ours.output, lava.output)
    for i in range(len(net.layers)):
        for what in ("spikes", "u", "v"):
            a, b = getattr(ours, what)[i], getattr(lava, what)[i]
            mismatches = int(np.count_nonzero(a != b))
            assert mismatches == 0, f"layer {i} {what}: {mismatches} mismatches"
    return ours


def neurons(rng, n, du=None, dv=None, vth=None, bias=True):
    return Neurons(du=int(rng.integers(0, 4096)) if du is None else du,
                   dv=int(rng.integers(0, 4096)) if dv is None else dv,
                   vth=int(rng.integers(1, 400)) if vth is None else vth,
                   bias_mant=rng.integers(-4096, 4096, n) if bias else 0,
                   bias_exp=rng.integers(0, 8, n) if bias else 0)


def spikes(rng, shape, p=0.5):
    return (rng.random(shape) < p).astype(np.int8)


@pytest.mark.parametrize("exps", [(-8, -7, -6, -5), (-4, -3, -2, -1), (0, 1, 2, 3), (4, 5, 6, 7)])
def test_dense_chains_every_weight_exponent(exps):
    rng = np.random.default_rng(abs(hash(exps)) % 2 ** 32)
    sizes = [24, 20, 16, 12, 8]
    layers = []
    for k, e in enumerate(exps):
        kind = k % 4  # mixed with odd values, excitatory, inhibitory, mixed beyond-range-safe
        shape = (sizes[k + 1], sizes[k])
        w = {0: rng.integers(-256, 256, shape), 1: rng.integers(0, 256, shape),
             2: rng.integers(-255, 1, shape), 3: rng.integers(-256, 256, shape) | 1}[kind]
        # keep activity alive: threshold relative to the typical input of this exponent
        typical = max(1, int(np.abs(w).mean() * sizes[k] * 0.3 * 2.0 ** e))
        vth = int(np.clip(typical // 8, 0, 131071))
        layers.append(Layer(Dense(w, weight_exp=e), neurons(rng, sizes[k + 1], vth=vth)))
    net = IntNetwork((sizes[0],), layers)
    out = assert_identical(net, spikes(rng, (3, 12, sizes[0]), 0.6))
    assert out.spikes[0].any()  # the comparison saw activity


@pytest.mark.parametrize("du,dv", [(0, 0), (4095, 4095), (0, 4095), (4095, 0), (1234, 3000)])
def test_decay_extremes(du, dv):
    rng = np.random.default_rng(du * 7 + dv)
    net = IntNetwork((16,), (
        Layer(Dense(rng.integers(-60, 120, (10, 16))), neurons(rng, 10, du=du, dv=dv, vth=150)),
        Layer(Dense(rng.integers(-40, 200, (6, 10)), weight_exp=2), neurons(rng, 6, du=du, dv=dv, vth=300)),
    ))
    out = assert_identical(net, spikes(rng, (3, 14, 16)))
    assert out.spikes[0].any()


def test_conv_pool_dense_with_padding_stride_and_folded_exponent():
    rng = np.random.default_rng(7)
    net = IntNetwork((2, 9, 9), (
        Layer(Conv2d(rng.integers(-90, 120, (4, 2, 3, 3)), padding=(1, 1), weight_exp=2),
              neurons(rng, 4, du=3000, dv=500, vth=40)),
        Layer(SumPool2d(2), Neurons(du=4095, dv=200, vth=1, bias_mant=rng.integers(-8, 8, 4), bias_exp=3)),
        Layer(Conv2d(rng.integers(-255, 256, (3, 4, 2, 3)), stride=(1, 2), weight_exp=0),
              neurons(rng, 3, du=100, dv=4095, vth=5)),
        Layer(Dense(rng.integers(-256, 256, (5, 3 * 3 * 1)), weight_exp=-1), neurons(rng, 5, vth=10)),
    ))
    out = assert_identical(net, spikes(rng, (3, 10, 2, 9, 9)))
    assert all(s.any() for s in out.spikes[:3])


def test_threshold_range_ends_and_v_saturation():
    rng = np.random.default_rng(11)
    n_in = 64
    strong = np.full((6, n_in), 255)
    strong[3:] = -256  # the last three neurons are driven down to negative saturation
    net = IntNetwork((n_in,), (
        # du = 4095: u = a << 6 = 254 * 64 << 6 every step; dv = 0: v integrates without leak.
        # vth = max (131071 << 6 = 2**23 - 64): the positive neurons fire only once v is near
        # saturation; the negative ones saturate at -(2**23 - 1).
        Layer(Dense(strong), Neurons(du=4095, dv=0, vth=131071)),
        # vth = 0: any positive v spikes
        Layer(Dense(rng.integers(-256, 256, (4, 6))), Neurons(du=4095, dv=0, vth=0)),
    ))
    out = assert_identical(net, np.ones((2, 12, n_in), dtype=np.int8))
    step = 254 * n_in << 6
    first_spike = -(-(131071 << 6) // step)  # v = k * step after k input steps (input arrives at step 1)
    assert out.spikes[0][0, first_spike, 0] == 1 and not out.spikes[0][0, :first_spike, 0].any()
    assert out.v[0].min() == -(2 ** 23 - 1)


def test_u_wraps_at_24_bits_and_past_int32():
    n_in = 1100  # 255 * 1100 << 7 << 6 > 2**31: Lava's int32 add overflows too
    net = IntNetwork((n_in,), (
        Layer(Dense(np.full((3, n_in), 255) * np.array([[1], [1], [0]]) + np.array([[0], [0], [3]]),
                    weight_exp=np.int64(7)), Neurons(du=0, dv=2000, vth=500)),
    ))
    x = np.ones((2, 5, n_in), dtype=np.int8)
    x[1, 2:] = 0
    out = assert_identical(net, x)
    assert np.abs(out.u[0]).max() > 0


def test_odd_mixed_weights_lose_their_lowest_bit_like_lava():
    net = IntNetwork((3,), (Layer(Dense(np.array([[1, 3, -1]])), Neurons(du=4095, dv=4095, vth=131071)),))
    out = assert_identical(net, np.ones((1, 3, 3), dtype=np.int8))
    assert out.u[0][0, 1, 0] == (0 + 2 - 2) << 6  # W = [1, 3, -1] acts as [0, 2, -2]


def test_u_exactly_at_the_24_bit_boundaries():
    w = np.zeros((2, 32), dtype=np.int64)
    w[0, :16], w[1] = -256, 128  # << 5 << 6: u = -2**23 (wraps to +2**23) and +2**23 (stays)
    net = IntNetwork((32,), (Layer(Dense(w, weight_exp=5), Neurons(du=4095, dv=0, vth=131071)),))
    out = assert_identical(net, np.ones((1, 3, 32), dtype=np.int8))
    assert out.u[0][0, 1].tolist() == [2 ** 23, 2 ** 23]


@pytest.mark.parametrize("spec,neuron", [("36-20-5", dict(model="lif", decay=0.2, v_threshold=0.5)),
                                         ("6x6x2-4C3p1-P2-5", dict(model="cuba", decay_syn=0.4, decay_mem=0.7,
                                                                   v_threshold=0.3))])
def test_lava_floating_pt_matches_the_float_model_with_synaptic_delay(spec, neuron):
    import torch

    from spikeport.pipeline import float_layer_specs
    from spikeport.targets.lava import run_lava_float
    from spikeport.train.network import NeuronSpec, build_network

    torch.manual_seed(0)
    model = build_network(spec, NeuronSpec(**neuron), synaptic_delay=True)
    with torch.no_grad():
        for n in model.neuron_layers():
            n.bias.uniform_(-0.05, 0.1)
        for syn, *_ in model.blocks():
            if hasattr(syn, "weight"):
                syn.weight.mul_(2.5)
    x = spikes(np.random.default_rng(3), (3, 10, *model.input_shape), 0.4)
    lava = run_lava_float(model.input_shape, float_layer_specs(model), x)
    with torch.no_grad():
        ours = model(torch.as_tensor(x, dtype=torch.float32).transpose(0, 1)).transpose(0, 1).numpy()
    assert ours.sum() > 0
    # Lava computes in float64, the model in float32: a threshold tie may round differently, rarely
    assert (lava.output == ours).mean() >= 0.995
