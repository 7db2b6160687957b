"""The simulator's torch backend equals the numpy one bit for bit, and dense, sparse and automatic
synaptic products agree, on every node type: dense (positive and negative weight exponents, int32
wrap of graded sums), conv2d (asymmetric kernels, stride, padding, the 24-bit wrap of Lava's Conv),
sum pooling, flatten, recurrence, per-synapse delays, graded input, input bias, periodic reset.

The numpy simulator itself is checked against independent references (tests/test_graph.py,
tests/test_simulator.py) and against Lava (tests/test_graph_vs_lava.py). Runs on CPU; on a machine
with CUDA the torch backend is compared on the GPU as well.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spikeport.sim.graph import Flatten, Input, IntGraph, NeuronGroup, Output
from spikeport.sim.network import Conv2d, Dense, Neurons, SumPool2d
from spikeport.sim.simulator import simulate

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def spikes(rng, shape, p=0.3):
    return (rng.random(shape) < p).astype(np.uint8)


def dense_graph(rng):
    nodes = {"in": Input((12,)), "w": Dense(rng.integers(-80, 200, (9, 12)), weight_exp=2),
             "h": NeuronGroup((9,), Neurons(du=rng.integers(0, 4096, 9), dv=300, vth=rng.integers(20, 90, 9),
                                            bias_mant=rng.integers(-20, 30, 9), bias_exp=2)),
             "o": Dense(rng.integers(-100, 150, (5, 9)), weight_exp=-2),
             "out": NeuronGroup((5,), Neurons(du=4095, dv=600, vth=15)), "y": Output()}
    edges = [("in", "w"), ("w", "h"), ("h", "o"), ("o", "out"), ("out", "y")]
    return IntGraph(nodes, edges), {"x": spikes(rng, (5, 16, 12))}


def conv_graph(rng):
    # 48 channels x 3 x 3 taps of ~220 << 7 (a few negative): sums of dense inputs pass 2**23 and
    # wrap into 24 bits (Lava's Conv)
    w1 = rng.integers(180, 256, (6, 48, 3, 3)) * np.where(rng.random((6, 48, 3, 3)) < 0.05, -1, 1)
    nodes = {"in": Input((48, 7, 8)), "c1": Conv2d(w1, stride=(1, 2), padding=(1, 0), weight_exp=7),
             "g1": NeuronGroup((6, 7, 3), Neurons(du=500, dv=100, vth=rng.integers(1000, 80000, 6)[:, None, None]
                                                  * np.ones((6, 7, 3), dtype=int))),
             "c2": Conv2d(rng.integers(-50, 120, (4, 6, 2, 3)), stride=(2, 1), padding=(0, 1)),
             "g2": NeuronGroup((4, 3, 3), Neurons(du=2000, dv=400, vth=20)),
             "p": SumPool2d(3), "g3": NeuronGroup((4, 1, 1), Neurons(dv=100, vth=0)),
             "f": Flatten(), "d": Dense(rng.integers(-90, 160, (3, 4))),
             "out": NeuronGroup((3,), Neurons(dv=200, vth=10)), "y": Output()}
    edges = [("in", "c1"), ("c1", "g1"), ("g1", "c2"), ("c2", "g2"), ("g2", "p"), ("p", "g3"), ("g3", "f"),
             ("f", "d"), ("d", "out"), ("out", "y")]
    return IntGraph(nodes, edges), {"x": spikes(rng, (4, 10, 48, 7, 8), 0.9)}


def recurrent_graph(rng, delay=False):
    rec_w = rng.integers(-120, 90, (8, 8))
    nodes = {"in": Input((9,)), "w": Dense(rng.integers(-60, 120, (8, 9))),
             "h": NeuronGroup((8,), Neurons(du=900, dv=200, vth=30, bias_mant=rng.integers(-30, 40, 8), bias_exp=3)),
             "r": Dense(rec_w, weight_exp=1, delay=rng.integers(0, 4, (8, 8)) if delay else None),
             "o": Dense(rng.integers(-40, 110, (4, 8)), weight_exp=-1,
                        delay=rng.integers(0, 3, (4, 8)) if delay else None),
             "skip": Dense(rng.integers(-30, 90, (4, 9))),
             "out": NeuronGroup((4,), Neurons(du=4095, dv=700, vth=25)),
             "back": Dense(rng.integers(-50, 60, (8, 4))), "y": Output()}
    edges = [("in", "w"), ("w", "h"), ("h", "r"), ("r", "h"), ("h", "o"), ("o", "out"), ("in", "skip"),
             ("skip", "out"), ("out", "back"), ("back", "h"), ("out", "y")]
    return IntGraph(nodes, edges), {"x": spikes(rng, (5, 20, 9))}


def graded_graph(rng):
    # graded payloads up to 2**23 into weights up to 255 << 7: sums beyond 2**31 wrap in int32 (Lava's Dense)
    nodes = {"in": Input((6,)), "w": Dense(rng.integers(-256, 256, (5, 6)), weight_exp=7),
             "h": NeuronGroup((5,), Neurons(du=300, dv=100, vth=500)), "y": Output(), "x_out": Output()}
    x = rng.integers(-2 ** 23, 2 ** 23, (4, 12, 6)) * (rng.random((4, 12, 6)) < 0.5)
    return IntGraph(nodes, [("in", "w"), ("w", "h"), ("h", "y"), ("in", "x_out")]), {"x": x}


def input_bias_graph(rng):
    nodes = {"in": Input((6,), Neurons(du=4095, dv=100, vth=40, bias_exp=4)), "w": Dense(rng.integers(-50, 150, (4, 6))),
             "h": NeuronGroup((4,), Neurons(du=1000, dv=500, vth=30)), "y": Output()}
    graph = IntGraph(nodes, [("in", "w"), ("w", "h"), ("h", "y")])
    return graph, {"input_bias": rng.integers(-20, 200, (5, 6)), "steps": 15}


CASES = {
    "dense": (dense_graph, {}),
    "conv_pool_flatten": (conv_graph, {}),
    "recurrent": (recurrent_graph, {}),
    "recurrent_ideal": (recurrent_graph, {"timing": "ideal"}),
    "delays": (lambda rng: recurrent_graph(rng, delay=True), {}),
    "graded": (graded_graph, {}),
    "input_bias": (input_bias_graph, {}),
    "reset_interval": (recurrent_graph, {"reset_interval": 7, "reset_offset": 2}),
    "input_bias_stream": (input_bias_graph, {"reset_interval": 5}),
}


def run(graph, args, kw, **more):
    return simulate(graph, args.get("x"), input_bias=args.get("input_bias"), steps=args.get("steps"),
                    record=True, batch_size=2, **kw, **more)


def assert_same(a, b, graph):
    for name in a.outputs:
        assert np.array_equal(a.outputs[name], b.outputs[name]) and a.outputs[name].dtype == b.outputs[name].dtype
    for g in graph.groups():
        for key in ("spikes", "u", "v"):
            x, y = getattr(a, key)[g], getattr(b, key)[g]
            assert x.dtype == y.dtype and np.array_equal(x, y), (key, g)


@pytest.mark.parametrize("case", list(CASES))
def test_torch_backend_and_sparse_products_equal_numpy(case):
    build, kw = CASES[case]
    graph, args = build(np.random.default_rng(len(case)))
    ref = run(graph, args, kw, products="dense")
    for g in graph.groups():  # the case exercises the neurons (not all silent, not all firing)
        assert ref.spikes[g].any() and not ref.spikes[g].all(), g
    for products in ("sparse", "auto"):
        assert_same(ref, run(graph, args, kw, products=products), graph)
    for device in DEVICES:
        assert_same(ref, run(graph, args, kw, backend="torch", device=device), graph)


def test_the_cases_reach_the_wraps_they_claim():
    from spikeport.sim.simulator import _Synapse

    graph, args = conv_graph(np.random.default_rng(len("conv_pool_flatten")))
    p = next(p for p in graph.projections() if p.dst == "g1")
    x = args["x"].reshape(-1, *graph.shapes["in"]).astype(np.float64)
    w = p.op.effective_weight().astype(np.float64)
    full = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=p.op.stride,
                                      padding=p.op.padding)  # float64: exact here (sums < 2**53)
    assert full.abs().max() > 2 ** 23  # the conv sums of this input wrap
    graph, args = graded_graph(np.random.default_rng(len("graded")))
    p = graph.projections()[0]
    assert _Synapse(p.op, (6,), (5,), "w", int(np.abs(args["x"]).max())).wrap32


def test_torch_backend_on_a_chain_network_and_ieee_matmul_restored():
    from spikeport.sim.network import IntNetwork, Layer

    rng = np.random.default_rng(9)
    net = IntNetwork((20,), (Layer(Dense(rng.integers(-50, 100, (15, 20))), Neurons(du=1000, dv=100, vth=20)),
                             Layer(Dense(rng.integers(-50, 100, (3, 15))), Neurons(dv=300, vth=15))))
    x = spikes(rng, (7, 12, 20))
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        a = simulate(net, x, record=True, batch_size=3)
        b = simulate(net, x, record=True, batch_size=3, backend="torch", device="cpu")
        assert torch.get_float32_matmul_precision() == "medium"  # the run's IEEE setting is undone
    finally:
        torch.set_float32_matmul_precision(before)
    assert np.array_equal(a.output, b.output) and a.output.any()
    for i in range(2):
        assert np.array_equal(a.v[i], b.v[i]) and np.array_equal(a.u[i], b.u[i])


@pytest.mark.parametrize("kw,match", [
    ({"backend": "jax"}, "backend must be one of"),
    ({"products": "csr"}, "products must be one of"),
    ({"backend": "torch", "device": "not-a-device"}, "device must be a torch device.*not-a-device"),
])
def test_bad_backend_arguments_are_named(kw, match):
    graph, args = dense_graph(np.random.default_rng(0))
    with pytest.raises(ValueError, match=match):
        simulate(graph, args["x"], **kw)


def test_cli_simulate_backend_torch_equals_numpy(tmp_path, capsys):
    from spikeport.cli import main as cli_main

    graph, args = recurrent_graph(np.random.default_rng(11))
    graph.save(tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", args["x"])
    outs = []
    for extra in ([], ["--backend", "torch", "--device", "cpu"]):
        out = tmp_path / f"y{len(extra)}.npy"
        code = cli_main(["simulate", str(tmp_path / "net.npz"), "--input", str(tmp_path / "x.npy"), "--output",
                         str(out), "--no-progress", *extra])
        assert code == 0, capsys.readouterr().err
        outs.append(np.load(out))
    assert outs[0].shape == (5, 20, 4) and outs[0].any()
    assert np.array_equal(outs[0], outs[1])
    code = cli_main(["simulate", str(tmp_path / "net.npz"), "--input", str(tmp_path / "x.npy"), "--backend", "torch",
                     "--device", "tpu9", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "tpu9" in err and len(err.strip().splitlines()) == 1, err
