"""Recurrent networks end to end: trained with STBP through the recurrence (fused kernel), quantized
(QAT values = export values), exported to NIR and read back exactly, simulated and run in Lava with
0 mismatches, and a built-in temporal task (digits one row per step) that the recurrent preset learns.
"""
import nir
import numpy as np
import torch

from spikeport.export.nir import read_graph, read_nir, write_nir
from spikeport.export.quantize import attach_fake_quant, quantize_network
from spikeport.sim.graph import IntGraph
from spikeport.sim.simulator import simulate
from spikeport.targets.lava import run_lava
from spikeport.train.config import make_config
from spikeport.train.network import NeuronSpec, build_network, plan_network
from spikeport.train.trainer import train


def recurrent_model(seed=0, model="lif"):
    torch.manual_seed(seed)
    net = build_network("8-16R-4", NeuronSpec(model=model, decay=0.5, decay_syn=0.3, decay_mem=0.6, v_threshold=0.5))
    with torch.no_grad():
        net.layers[0].weight.mul_(2.5)
        net.layers[1].w_rec.mul_(2.0)
        net.layers[2].weight.mul_(2.0)
        net.layers[1].bias.uniform_(-0.05, 0.05)
    return net.eval()


def spikes(seed, shape, p=0.4):
    return (np.random.default_rng(seed).random(shape) < p).astype(np.int8)


def test_spec_grammar_and_parameters():
    plan = plan_network("8-16R-4")
    assert [k for k, *_ in plan] == ["input", "rdense", "dense"]
    net = build_network("8-16R-4", NeuronSpec())
    assert net.layers[1].recurrent and tuple(net.layers[1].w_rec.shape) == (16, 16)
    assert not net.layers[3].recurrent and net.layers[3].w_rec is None
    assert sum(p.numel() for p in net.parameters()) == 8 * 16 + 16 * 16 + 16 * 4 + 16 + 4  # weights, w_rec, biases


def test_qat_export_nir_round_trip_simulator_and_lava(tmp_path):
    model = recurrent_model(1, "cuba")
    attach_fake_quant(model)
    net, report = quantize_network(model)
    assert isinstance(net, IntGraph) and "layer0_rec" in net.nodes and "recurrent_weights" in report[0]
    assert [len(c) for c in net.components()] == [1, 1, 1]  # input, the recurrent group (self-loop), output
    x = spikes(2, (6, 24, 8))
    # the integer network in ideal timing is the fake-quantized float model, step by step
    with torch.no_grad():
        fq = model(torch.as_tensor(x, dtype=torch.float32).transpose(0, 1)).transpose(0, 1).numpy()
    ours = simulate(net, x, timing="ideal")
    assert ours.output.any() and (ours.output == fq).mean() >= 0.97  # float32 threshold crossings aside
    # NIR: the loop is an Affine rec0 between lif0's output and its input, and reads back exactly
    write_nir(tmp_path / "r.nir", model, net, 1e-3)
    g = read_graph(tmp_path / "r.nir")
    assert ("cuba0", "rec0") in [tuple(e) for e in g.edges] and ("rec0", "cuba0") in [tuple(e) for e in g.edges]
    back, info = read_nir(tmp_path / "r.nir")
    assert info["source"] == "spikeport metadata"
    assert np.array_equal(back.nodes["layer0_rec"].weight, net.nodes["layer0_rec"].weight)
    hw = simulate(back, x, record=True)
    assert np.array_equal(hw.output, simulate(net, x).output)
    lava = run_lava(back, x, record=True)
    for name in back.groups():
        assert np.count_nonzero(lava.v[name] != hw.v[name]) == 0, name
        assert np.count_nonzero(lava.spikes[name] != hw.spikes[name]) == 0, name
    # without our metadata, the float parameters alone give the loop back (quantized on the fly)
    for node in g.nodes.values():
        node.metadata = {}
    nir.write(str(tmp_path / "plain.nir"), g)
    plain, info = read_nir(tmp_path / "plain.nir")
    assert info["source"] == "float parameters" and "rec0" in plain.nodes
    assert any(p.src == p.dst == "cuba0" for p in plain.projections())
    assert (simulate(plain, x, timing="ideal").output == fq).mean() >= 0.95


def test_recurrent_preset_learns_the_row_task(tmp_path):
    """digits shown one row per step: the recurrent preset must learn well above chance (10%) in
    a few epochs (measured: 8-64R-10 reaches about 80% after its 60 epochs, see README)."""
    cfg = make_config("digits-rnn", overrides={"optim.epochs": 6, "optim.seed": 3})
    metrics = train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    assert metrics["test_accuracy"] >= 0.40
