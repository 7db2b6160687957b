"""Sparse synaptic products (sim.simulator.sparse_product, use_sparse): exact, and chosen by the
documented cost model. Whole-graph equality of dense, sparse and automatic products on every node
type is in tests/test_sim_backends.py."""
from __future__ import annotations

import numpy as np
import pytest

from spikeport.sim import simulator as S
from spikeport.sim.graph import Input, IntGraph, NeuronGroup, Output
from spikeport.sim.network import Dense, Neurons


@pytest.mark.parametrize("p", [0.0, 0.01, 0.2, 1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_product_equals_the_int64_product(p, dtype):
    rng = np.random.default_rng(int(p * 100))
    s = (rng.random((37, 50)) < p).astype(np.uint8)
    s[3] = 0  # an empty row inside (CSR rows of length 0)
    hi = 2 ** 14 if dtype == np.float32 else 2 ** 40  # float32: sums below 2**24, float64: far beyond it
    w = rng.integers(-hi, hi, (50, 11))
    got = S.sparse_product(s, w.astype(dtype))
    assert got.dtype == dtype and got.shape == (37, 11)
    assert np.array_equal(got.astype(np.int64), s.astype(np.int64) @ w)


def test_sparse_product_of_graded_payloads():
    rng = np.random.default_rng(1)
    s = rng.integers(-2 ** 23, 2 ** 23, (20, 30)) * (rng.random((20, 30)) < 0.1)
    w = rng.integers(-255, 256, (30, 7)) << 7
    assert np.array_equal(S.sparse_product(s, w.astype(np.float64)).astype(np.int64), s @ w)


def test_cost_model_picks_sparse_only_where_it_is_cheaper(monkeypatch):
    monkeypatch.setattr(S, "blas_threads", lambda: 1)
    m, k = 5120, 800
    # a wide layer (N = 800): sparse below ~17% activity (the module's measured constants), as
    # timed there: at 12% sparse 34 ms vs dense 50 ms, at 20% sparse 63 ms vs dense 49 ms
    assert S.use_sparse(m, k, 800, int(0.05 * m * k)) and S.use_sparse(m, k, 800, int(0.12 * m * k))
    assert not S.use_sparse(m, k, 800, int(0.2 * m * k))
    # a narrow layer (N = 10): the per-nonzero cost exceeds the whole dense product from a few %
    assert not S.use_sparse(m, k, 10, int(0.04 * m * k)) and not S.use_sparse(m, k, 10, int(0.2 * m * k))
    assert S.use_sparse(m, k, 10, 0)  # nothing active: a scan and no additions


def test_cost_model_counts_blas_threads(monkeypatch):
    """BLAS runs the dense product on its threads, the sparse one runs on one: with two threads the
    wide layer at 12% activity goes dense (timed on 2 threads: dense 27 ms, sparse 40 ms), at 4%
    still sparse (dense 27 ms, sparse 16 ms)."""
    monkeypatch.setattr(S, "blas_threads", lambda: 2)
    m, k = 5120, 784
    assert not S.use_sparse(m, k, 800, int(0.12 * m * k))
    assert S.use_sparse(m, k, 800, int(0.04 * m * k))
    monkeypatch.setattr(S, "blas_threads", lambda: 1)
    assert S.use_sparse(m, k, 800, int(0.12 * m * k))


def test_blas_threads_follow_the_environment(monkeypatch):
    import os
    cpus = len(os.sched_getaffinity(0))
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    S.blas_threads.cache_clear()
    try:
        assert S.blas_threads() == cpus
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        S.blas_threads.cache_clear()
        assert S.blas_threads() == 1
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", str(cpus + 7))  # never more than the CPUs
        S.blas_threads.cache_clear()
        assert S.blas_threads() == cpus
    finally:
        S.blas_threads.cache_clear()


def test_auto_products_use_the_sparse_path_at_low_activity(monkeypatch):
    calls = []
    real = S.sparse_product
    monkeypatch.setattr(S, "sparse_product", lambda s, w: calls.append(s.shape) or real(s, w))
    rng = np.random.default_rng(2)
    nodes = {"in": Input((300,)), "w": Dense(rng.integers(-40, 90, (300, 300))),
             "h": NeuronGroup((300,), Neurons(dv=200, vth=200)),
             "o": Dense(rng.integers(-40, 90, (4, 300))), "out": NeuronGroup((4,), Neurons(vth=5)), "y": Output()}
    graph = IntGraph(nodes, [("in", "w"), ("w", "h"), ("h", "o"), ("o", "out"), ("out", "y")])
    x = (rng.random((8, 30, 300)) < 0.02).astype(np.uint8)
    auto = S.simulate(graph, x, batch_size=8, record=True)
    assert calls == [(240, 300)]  # the wide 2%-active product only; the 4-output one stays dense
    dense = S.simulate(graph, x, batch_size=8, record=True, products="dense")
    assert np.array_equal(auto.spikes["h"], dense.spikes["h"]) and auto.spikes["h"].any()
    assert np.array_equal(auto.v["out"], dense.v["out"])


def test_without_scipy_auto_is_dense_and_sparse_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(S, "_scipy_sparse", lambda: None)
    s = np.eye(6, dtype=np.uint8)
    w = np.arange(36, dtype=np.float32).reshape(6, 6)
    assert np.array_equal(S._product(s, w, "auto"), w)
    with pytest.raises(ValueError, match="products='sparse' needs scipy"):
        S._product(s, w, "sparse")
