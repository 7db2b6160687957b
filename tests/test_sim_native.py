"""The simulator's native neuron steps (sim/native/neuron_steps.c) against the numpy neuron_step
they replace: the same integers, bit for bit, on every branch (wraps, saturation, no-current
layers, late input, resets, per-sample and per-step biases, recording, threads)."""
import itertools

import numpy as np
import pytest

from spikeport.sim import native
from spikeport.sim import formats as F
from spikeport.sim.simulator import NeuronConstants, layer_bounds, neuron_step


def constants(rng, N, no_current=False, bias_shape=None):
    du = np.full(N, 4095) if no_current else rng.integers(0, 4096, N)
    dv = rng.integers(0, 4096, N)
    dv[:2] = (0, 4095)                          # a decay factor of exactly 1 and of 0
    du[2:3] = 0 if not no_current else 4095
    vth = rng.integers(0, 2 ** 17, N).astype(np.float64) * 64
    vth[3] = 0
    bias = rng.integers(-2 ** 13, 2 ** 13, bias_shape or N) * 2.0 ** rng.integers(0, 8)
    return NeuronConstants(cu=(4096 - (du + 1)) / 4096.0, cv=(4096 - dv) / 4096.0, bias=bias.astype(np.float64),
                           vth=vth, no_current=no_current)


def numpy_steps(a, late, c, flags, reset=None, phase=0):
    """What sim.simulator._GraphRun._component does for one group, step by step in numpy."""
    T, B, N = a.shape
    u, v = np.zeros((B, N)), np.zeros((B, N))
    out = np.zeros((T, B, N), dtype=bool)
    ru, rv = np.zeros((T, B, N), np.int32), np.zeros((T, B, N), np.int32)
    for t in range(T):
        at = (a[t - 1] if t else np.zeros((B, N))) if late else a[t]
        if reset is not None and (t + 1) % reset == phase:
            u[...] = 0
            v[...] = 0
        ct = NeuronConstants(c.cu, c.cv, c.bias[t], c.vth, c.no_current) if c.bias.ndim == 3 else c
        ut = neuron_step(u, v, at, ct, out[t], *flags)
        ru[t], rv[t] = ut, v
    return out.view(np.uint8), ru, rv


def native_steps(a, late, c, flags, reset=None, phase=0, threads=1):
    """The native steps, with spikes written as uint8 and (a second run) as float32 0/1: the two
    must agree, and the uint8 ones are returned."""
    T, B, N = a.shape
    runs = []
    for dtype in (np.uint8, np.float32):
        out = np.zeros((T, B, N), dtype)
        ru, rv = np.zeros((T, B, N), np.int32), np.zeros((T, B, N), np.int32)
        native.steps(a, late, np.zeros((B, N)), np.zeros((B, N)), c, out, flags, reset, phase, ru, rv,
                     threads=threads)
        runs.append((out, ru, rv))
    (o8, ru8, rv8), (o32, ru32, rv32) = runs
    assert np.array_equal(o8, o32) and np.array_equal(ru8, ru32) and np.array_equal(rv8, rv32)
    return o8, ru8, rv8


def inputs(rng, T, B, N, scale, dtype):
    a = rng.integers(-scale, scale, (T, B, N)).astype(np.float64) * 64
    a[rng.random((T, B, N)) < 0.3] = 0
    return a.astype(dtype) if np.all(np.abs(a) < 2 ** 24) or dtype == np.float64 else a


def test_the_library_builds_and_loads():
    assert native.available(), native.unavailable_reason()


@pytest.mark.parametrize("flags", list(itertools.product([False, True], repeat=3)))
@pytest.mark.parametrize("no_current", [False, True])
def test_every_guard_combination_equals_numpy(flags, no_current):
    rng = np.random.default_rng(sum(flags) * 7 + no_current)
    T, B, N = 12, 3, 37
    c = constants(rng, N, no_current)
    scale = 2 ** 26 if flags[0] else 2 ** 17   # inputs past 2**31 once << 6 where the 32-bit wrap is on
    a = inputs(rng, T, B, N, scale, np.float64)
    for late in (False, True):
        for got, want in zip(native_steps(a, late, c, flags), numpy_steps(a, late, c, flags)):
            np.testing.assert_array_equal(got, want)


def test_the_full_guards_wrap_and_saturate_where_numpy_does():
    rng = np.random.default_rng(5)
    T, B, N = 30, 4, 64
    c = constants(rng, N)
    a = inputs(rng, T, B, N, 2 ** 27, np.float64)
    flags = layer_bounds(float(np.abs(a).max()), c)
    assert flags == (True, True, True)
    got, want = native_steps(a, True, c, flags), numpy_steps(a, True, c, flags)
    assert np.abs(want[1]).max() > 2 ** 22 and np.abs(want[2]).max() == F.UV_MAX - 1  # the branches ran
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_values_exactly_at_each_boundary():
    """u at -2**23 wraps and at +2**23 does not; v equal to its threshold does not spike; v at the
    saturation limits; the 32-bit wrap at +-2**31."""
    N = 8
    c = NeuronConstants(cu=np.zeros(N), cv=np.full(N, 1 / 4096), bias=np.zeros(N),
                        vth=np.array([64.0, 0, 2 ** 23, 2 ** 23, 0, 64 * 5, 0, 0]), no_current=True)
    col = np.array([64, 0, -2 ** 23, 2 ** 23, 2 ** 23 - 1, 64 * 5, 2 ** 31, -2 ** 31 - 64], dtype=np.float64)
    a = np.stack([col, -col, col + 64, col - 64])[:, None, :]  # (T = 4, B = 1, N)
    for flags in itertools.product([False, True], repeat=3):
        k = N if flags[0] else N - 2  # inputs past int32 only where the 32-bit wrap is on (as layer_bounds sets it)
        cut = NeuronConstants(c.cu[:k], c.cv[:k], c.bias[:k], c.vth[:k], True)
        got, want = native_steps(a[..., :k], False, cut, flags), numpy_steps(a[..., :k], False, cut, flags)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w, err_msg=str(flags))
    spikes, u, _ = want
    assert u[0, 0, 2] == 2 ** 23 and spikes[0, 0, 0] == 0 and spikes[2, 0, 0] == 1  # the boundaries did act


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias_shape", ["N", "BN", "T1N"])
def test_float32_inputs_biases_of_every_shape_and_resets(dtype, bias_shape):
    rng = np.random.default_rng(11)
    T, B, N = 16, 5, 29
    shape = {"N": (N,), "BN": (B, N), "T1N": (T, 1, N)}[bias_shape]
    c = constants(rng, N, bias_shape=shape)
    a = inputs(rng, T, B, N, 2 ** 12, dtype)
    assert a.dtype == dtype
    flags = layer_bounds(float(np.abs(a).max()), NeuronConstants(c.cu, c.cv, np.abs(c.bias).reshape(-1, N).max(0),
                                                                 c.vth, c.no_current))
    for reset, phase in ((None, 0), (5, 0), (4, 3)):
        for g, w in zip(native_steps(a, False, c, flags, reset, phase), numpy_steps(a, False, c, flags, reset, phase)):
            np.testing.assert_array_equal(g, w)


def test_threads_split_the_batch_without_changing_a_bit(monkeypatch):
    monkeypatch.setattr(native, "MIN_STEPS_PER_THREAD", 1)
    rng = np.random.default_rng(3)
    T, B, N = 9, 7, 50
    c = constants(rng, N, bias_shape=(B, N))
    a = inputs(rng, T, B, N, 2 ** 16, np.float32)
    flags = (False, True, True)
    want = numpy_steps(a, True, c, flags)
    for threads in (2, 3, 7):
        for g, w in zip(native_steps(a, True, c, flags, threads=threads), want):
            np.testing.assert_array_equal(g, w)


def test_simulate_is_the_same_with_the_native_steps_off(monkeypatch):
    """A conv, a pool, a dense layer and a recurrent-free chain, recorded, with the native steps on
    (the default) and off."""
    from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons, SumPool2d
    from spikeport.sim.simulator import simulate
    rng = np.random.default_rng(0)

    def neurons(n):
        return Neurons(du=rng.integers(0, 4096, n), dv=rng.integers(0, 4096, n), vth=rng.integers(20, 400, n),
                       bias_mant=rng.integers(-50, 50, n), bias_exp=1)

    net = IntNetwork((2, 8, 8), (
        Layer(Conv2d(rng.integers(-255, 256, (4, 2, 3, 3)), padding=(1, 1)), neurons(4 * 8 * 8)),
        Layer(SumPool2d(2), Neurons(vth=rng.integers(0, 4, 4 * 4 * 4))),
        Layer(Dense(rng.integers(-255, 256, (10, 64)), weight_exp=2), neurons(10)),
    ))
    x = rng.random((6, 20, 2, 8, 8)) < 0.3
    assert native.available()
    fast = simulate(net, x, record=True)
    monkeypatch.setenv("SPIKEPORT_SIM_NATIVE", "0")
    assert not native.available() and "SPIKEPORT_SIM_NATIVE" in native.unavailable_reason()
    slow = simulate(net, x, record=True)
    assert all(s.any() for s in fast.spikes)
    for key in ("spikes", "u", "v"):
        for f, s in zip(getattr(fast, key), getattr(slow, key)):
            np.testing.assert_array_equal(f, s)


def test_a_missing_compiler_leaves_the_numpy_loop(monkeypatch, tmp_path):
    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    native._load.cache_clear()
    try:
        assert not native.available() and "no-such-cc" in native.unavailable_reason()
    finally:
        native._load.cache_clear()


def _same_with_native_off(monkeypatch, graph, **run):
    from spikeport.sim.simulator import simulate
    monkeypatch.delenv("SPIKEPORT_SIM_NATIVE", raising=False)
    assert native.available()
    fast = simulate(graph, record=True, **run)
    monkeypatch.setenv("SPIKEPORT_SIM_NATIVE", "0")
    slow = simulate(graph, record=True, **run)
    monkeypatch.delenv("SPIKEPORT_SIM_NATIVE")
    for key in ("spikes", "u", "v"):
        for name in graph.groups():
            np.testing.assert_array_equal(getattr(fast, key)[name], getattr(slow, key)[name], err_msg=f"{key} {name}")
    assert all(fast.spikes[name].any() for name in graph.groups())


def test_recurrent_components_step_natively_as_numpy_does(monkeypatch):
    """The graphs of test_graph_vs_lava (recurrence, merges, skips, per-neuron registers; a
    bias-driven input group with netx's periodic reset in stream mode): native steps on and off."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from test_graph_vs_lava import bias_driven, recurrent_graph, spikes

    rng = np.random.default_rng(12)
    for per_neuron in (False, True):
        graph = recurrent_graph(rng, per_neuron=per_neuron)
        x = {name: spikes(rng, (3, 25, *graph.shapes[name]), 0.4) for name in graph.inputs()}
        _same_with_native_off(monkeypatch, graph, x=x)
    graph = bias_driven(rng)
    bias = rng.integers(0, 4096, (3, 2, 6, 6)) // 8
    _same_with_native_off(monkeypatch, graph, input_bias=bias, steps=16)
    _same_with_native_off(monkeypatch, graph, input_bias=bias, steps=5, reset_interval=5, reset_offset=3)
