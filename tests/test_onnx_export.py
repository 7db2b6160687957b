"""The ONNX step model, stepped in onnxruntime, against the simulator: zero mismatches in spikes,
u and v of every layer, for both timings.

Seeded random networks cover dense layers (mixed with odd values, excitatory, inhibitory, fewer
weight bits; negative and positive exponents), convolutions with padding and stride, sum pooling,
du/dv at 0, 4095 and in between (per neuron), biases of every exponent, conv sums past 24 bits,
and inputs strong enough to wrap u (past int32 too) and to saturate v.
"""
import numpy as np
import onnx
import pytest

from spikeport.export.onnx import run_onnx, to_onnx
from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons, SumPool2d
from spikeport.sim.simulator import TIMINGS, simulate


def assert_identical(net, x, timing, tmp_path):
    path = tmp_path / f"step_{timing}.onnx"
    to_onnx(net, path, timing)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    ours = run_onnx(path, x)
    ref = simulate(net, x, timing=timing, record=True)
    assert np.array_equal(ours.output, ref.output)
    for i in range(len(net.layers)):
        for what in ("spikes", "u", "v"):
            a, b = getattr(ours, what)[i], getattr(ref, what)[i]
            assert a.dtype == b.dtype and a.shape == b.shape
            mismatches = int(np.count_nonzero(a != b))
            assert mismatches == 0, f"{timing}: layer {i} {what}: {mismatches} mismatches"
    return ref


def neurons(rng, n, vth, extremes=False):
    levels = [0, 1, 2047, 4094, 4095]
    return Neurons(du=rng.choice(levels, n) if extremes else int(rng.integers(0, 4096)),
                   dv=rng.choice(levels, n) if extremes else int(rng.integers(0, 4096)),
                   vth=vth, bias_mant=rng.integers(-4096, 4096, n), bias_exp=rng.integers(0, 8, n))


def spikes(rng, shape, p=0.5):
    return (rng.random(shape) < p).astype(np.int8)


@pytest.mark.parametrize("timing", TIMINGS)
@pytest.mark.parametrize("exps", [(-8, -5, -2, -1), (0, 3, 5, 7)])
def test_dense_chain_matches_simulator(exps, timing, tmp_path):
    rng = np.random.default_rng(abs(sum(exps)) + 17)
    sizes = [24, 20, 16, 12, 8]
    layers = []
    for k, e in enumerate(exps):
        shape = (sizes[k + 1], sizes[k])
        w, bits = [(rng.integers(-256, 256, shape) | 1, 8), (rng.integers(0, 256, shape), 8),
                   (rng.integers(-255, 1, shape), 8), (rng.integers(-256, 256, shape), 5)][k]
        typical = max(1, int(np.abs(w).mean() * sizes[k] * 0.3 * 2.0 ** e))
        vth = int(np.clip(typical // 8, 0, 131071))
        layers.append(Layer(Dense(w, weight_exp=e, num_weight_bits=bits),
                            neurons(rng, sizes[k + 1], vth, extremes=k % 2 == 0)))
    net = IntNetwork((sizes[0],), layers)
    ref = assert_identical(net, spikes(rng, (3, 14, sizes[0]), 0.6), timing, tmp_path)
    assert ref.spikes[0].any() and ref.spikes[1].any()


@pytest.mark.parametrize("timing", TIMINGS)
def test_conv_pool_dense_matches_simulator(timing, tmp_path):
    rng = np.random.default_rng(7)
    net = IntNetwork((2, 9, 9), (
        Layer(Conv2d(rng.integers(-90, 120, (4, 2, 3, 3)), padding=(1, 1), weight_exp=2),
              neurons(rng, 4 * 9 * 9, 40, extremes=True)),
        Layer(SumPool2d(2), Neurons(du=4095, dv=200, vth=1, bias_mant=rng.integers(-8, 8, 4), bias_exp=3)),
        Layer(Conv2d(rng.integers(-255, 256, (3, 4, 2, 3)), stride=(1, 2), padding=(0, 1), weight_exp=7),
              neurons(rng, 3, 5)),
        Layer(Dense(rng.integers(-256, 256, (5, 3 * 3 * 2)), weight_exp=-1), neurons(rng, 5, 10)),
    ))
    ref = assert_identical(net, spikes(rng, (3, 12, 2, 9, 9)), timing, tmp_path)
    assert all(s.any() for s in ref.spikes[:3])


@pytest.mark.parametrize("timing", TIMINGS)
def test_u_wraps_past_int32_and_v_saturates(timing, tmp_path):
    n_in = 1100  # 254 * 1100 << 7 << 6 > 2**31: Lava's int32 add overflows
    w = np.full((6, n_in), 255)
    w[2], w[3:] = 3, -256
    net = IntNetwork((n_in,), (
        Layer(Dense(w, weight_exp=7), Neurons(du=0, dv=np.array([2000, 0, 0, 0, 0, 0]), vth=131071)),
        Layer(Dense(np.random.default_rng(3).integers(-256, 256, (4, 6))), Neurons(du=4095, dv=0, vth=0)),
    ))
    x = np.ones((2, 8, n_in), dtype=np.int8)
    x[1, 3:] = 0
    ref = assert_identical(net, x, timing, tmp_path)
    assert np.abs(ref.u[0]).max() > 2 ** 23  # left outside 24 bits by the single conditional wrap
    assert ref.v[0].min() == -(2 ** 23 - 1)


@pytest.mark.parametrize("timing", TIMINGS)
def test_u_wrap_boundaries(timing, tmp_path):
    w = np.zeros((2, 32), dtype=np.int64)
    w[0, :16], w[1] = -256, 128  # << 5 << 6: u = -2**23 (wraps to +2**23) and +2**23 (stays)
    net = IntNetwork((32,), (Layer(Dense(w, weight_exp=5), Neurons(du=4095, dv=0, vth=131071)),))
    ref = assert_identical(net, np.ones((1, 3, 32), dtype=np.int8), timing, tmp_path)
    assert ref.u[0][0, -1].tolist() == [2 ** 23, 2 ** 23]


@pytest.mark.parametrize("timing", TIMINGS)
def test_conv_output_wraps_at_24_bits(timing, tmp_path):
    rng = np.random.default_rng(5)
    w = rng.integers(-256, 256, (3, 8, 6, 6))
    w[0] = 255  # 8 * 36 * (255 << 7) > 2**23: channel 0 wraps negative on a full input
    net = IntNetwork((8, 7, 7), (
        Layer(Conv2d(w, stride=(1, 1), weight_exp=7), Neurons(du=4095, dv=100, vth=1000)),
        Layer(SumPool2d(2), neurons(rng, 3, 3)),
    ))
    x = np.ones((2, 6, 8, 7, 7), dtype=np.int8)
    x[1] = spikes(rng, x[1].shape)
    ref = assert_identical(net, x, timing, tmp_path)
    assert ref.u[0][0, :, :4].min() < 0  # all-positive weights, negative input: the wrap happened


def test_bad_arguments_are_value_errors(tmp_path):
    net = IntNetwork((4,), (Layer(Dense(np.ones((2, 4), dtype=np.int64)), Neurons()),))
    with pytest.raises(ValueError, match="timing must be one of"):
        to_onnx(net, tmp_path / "bad.onnx", timing="lava")
    to_onnx(net, tmp_path / "ok.onnx")
    with pytest.raises(ValueError, match="input must have shape"):
        run_onnx(tmp_path / "ok.onnx", np.zeros((1, 3, 5)))
    with pytest.raises(ValueError, match="0/1"):
        run_onnx(tmp_path / "ok.onnx", np.full((1, 3, 4), 2))
