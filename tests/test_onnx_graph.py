"""ONNX step models of integer graphs (``graph_to_onnx``) stepped in onnxruntime against the
simulator: every group's spikes, u and v equal (``mismatches == 0``) on recurrence, merges, skips,
per-synapse delays, pool-into-dense chains, graded input, a bias-driven input group and netx's
periodic reset."""
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_delays import delayed_graph  # noqa: E402
from test_graph_vs_lava import recurrent_graph  # noqa: E402

from spikeport.export.onnx import graph_to_onnx, run_onnx_graph  # noqa: E402
from spikeport.sim.graph import Flatten, Input, IntGraph, NeuronGroup, Output  # noqa: E402
from spikeport.sim.network import Conv2d, Dense, Neurons, SumPool2d  # noqa: E402
from spikeport.sim.simulator import simulate  # noqa: E402


def equal_to_simulator(graph, tmp_path, **run):
    path = tmp_path / "g.onnx"
    graph_to_onnx(graph, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    ours = run_onnx_graph(path, **run)
    ref = simulate(graph, record=True, **run)
    for name in graph.groups():
        for key in ("spikes", "u", "v"):
            a, b = getattr(ours, key)[name], getattr(ref, key)[name]
            assert a.shape == b.shape
            mismatches = int(np.count_nonzero(a != b))
            assert mismatches == 0, f"{key} of {name}: {mismatches} of {a.size} differ"
        assert ref.spikes[name].any(), f"group {name} never spiked"
    for o in graph.outputs():
        assert np.array_equal(ours.outputs[o], ref.outputs[o])


def test_recurrence_merges_and_skips(tmp_path):
    rng = np.random.default_rng(31)
    equal_to_simulator(recurrent_graph(rng, per_neuron=True), tmp_path, x=(rng.random((3, 20, 10)) < 0.4))


def test_delays_and_graded_input_in_a_stream_with_netx_reset(tmp_path):
    rng = np.random.default_rng(32)
    graph = delayed_graph(rng)
    equal_to_simulator(graph, tmp_path, x=(rng.random((2, 25, 9)) < 0.4).astype(np.uint8))
    graded = (rng.integers(0, 4, (3, 12, 9)) * (rng.random((3, 12, 9)) < 0.5)).astype(np.int64)
    equal_to_simulator(delayed_graph(rng, recurrent=False), tmp_path, x=graded, reset_interval=12, reset_offset=2)


def test_conv_pool_dense_chain_and_bias_driven_input_group(tmp_path):
    rng = np.random.default_rng(33)
    nodes = {
        "img": Input((2, 6, 6), neurons=Neurons(du=4095, dv=200, vth=40, bias_exp=6)),
        "conv": Conv2d(rng.integers(-60, 120, (3, 2, 3, 3)), stride=(1, 1), padding=(1, 1)),
        "c": NeuronGroup((3, 6, 6), Neurons(du=2000, dv=300, vth=30)),
        "pool": SumPool2d(2), "flat": Flatten(),
        "fc": Dense(rng.integers(-50, 110, (5, 27)), weight_exp=-1),
        "o": NeuronGroup((5,), Neurons(du=1000, dv=500, vth=12)), "y": Output(),
    }
    graph = IntGraph(nodes, [("img", "conv"), ("conv", "c"), ("c", "pool"), ("pool", "flat"), ("flat", "fc"),
                             ("fc", "o"), ("o", "y")])
    bias = rng.integers(0, 30, (3, 2, 6, 6))
    equal_to_simulator(graph, tmp_path, input_bias=bias, steps=14)
    equal_to_simulator(graph, tmp_path, input_bias=bias, steps=10, reset_interval=10)


def test_not_a_graph_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a spikeport graph step model"):
        from spikeport.export.onnx import to_onnx
        from spikeport.sim.network import IntNetwork, Layer

        net = IntNetwork((3,), (Layer(Dense(np.ones((2, 3), dtype=int)), Neurons(du=0, dv=0, vth=1)),))
        to_onnx(net, tmp_path / "chain.onnx")
        run_onnx_graph(tmp_path / "chain.onnx", np.zeros((1, 2, 3), dtype=np.uint8))


def test_export_command_writes_the_graph_model_for_a_recurrent_record(tmp_path):
    from spikeport.cli import main

    rng = np.random.default_rng(34)
    graph = recurrent_graph(rng)
    graph.save(tmp_path / "g.npz")
    assert main(["export", str(tmp_path / "g.npz"), "--format", "onnx", "--out", str(tmp_path / "g.onnx")]) == 0
    x = (rng.random((2, 15, 10)) < 0.4).astype(np.uint8)
    assert np.array_equal(run_onnx_graph(tmp_path / "g.onnx", x).output, simulate(graph, x).output)
    assert main(["export", str(tmp_path / "g.npz"), "--format", "onnx", "--timing", "ideal",
                 "--out", str(tmp_path / "i.onnx")]) != 0
