"""sim.metrics against NeuroBench 2.3.0's own metric code on the float twin of an integer graph.

The integer graph (conv with padding -> sum pool -> conv -> flatten -> dense with a recurrent dense)
uses neurons without decay or synaptic current (``du = 4095``, ``dv = 0``), so its float twin in
snnTorch (``Leaky(beta=1, reset_mechanism="zero", reset_delay=False)``, weights = the effective
integer weights, thresholds = ``vth``) computes the same integers in float32, step for step, and
the simulator's ``ideal`` timing is the float network's. NeuroBench then measures the float twin
through its ``Benchmark`` and the figures are compared with ``neurobench_metrics`` on the
recorded integer run: equal where the definitions agree; the footprint by its documented relation.
"""
import numpy as np
import pytest
import snntorch as snn
import torch
from neurobench.benchmarks import Benchmark
from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
from neurobench.metrics.workload import (ActivationSparsity, ActivationSparsityByLayer, MembraneUpdates,
                                         SynapticOperations)
from neurobench.models import SNNTorchModel
from torch import nn

from spikeport.sim import formats as F
from spikeport.sim.graph import Flatten, Input, IntGraph, NeuronGroup, Output
from spikeport.sim.metrics import REGISTER_BITS, neurobench_metrics
from spikeport.sim.network import Conv2d, Dense, Neurons, SumPool2d
from spikeport.sim.simulator import simulate

T, S = 8, 6
VTH = {"lif1": 6, "lif2": 4, "lif3": 3}


def _weights(rng, shape, zero=0.3):
    w = rng.integers(-3, 5, size=shape)
    return np.where(rng.random(shape) < zero, 0, w)


def _graph(seed=3) -> IntGraph:
    rng = np.random.default_rng(seed)
    nodes = {
        "input": Input((1, 6, 6)),
        "conv1": Conv2d(_weights(rng, (4, 1, 3, 3)), padding=(1, 1)),
        "lif1": NeuronGroup((4, 6, 6), Neurons(du=4095, dv=0, vth=VTH["lif1"])),
        "pool": SumPool2d(2),
        "conv2": Conv2d(_weights(rng, (3, 4, 3, 3))),
        "lif2": NeuronGroup((3, 1, 1), Neurons(du=4095, dv=0, vth=VTH["lif2"])),
        "flat": Flatten(),
        "fc3": Dense(2 * _weights(rng, (5, 3))),
        "rec3": Dense(2 * _weights(rng, (5, 5), zero=0.5)),
        "lif3": NeuronGroup((5,), Neurons(du=4095, dv=0, vth=VTH["lif3"])),
        "out": Output(),
    }
    edges = [("input", "conv1"), ("conv1", "lif1"), ("lif1", "pool"), ("pool", "conv2"), ("conv2", "lif2"),
             ("lif2", "flat"), ("flat", "fc3"), ("fc3", "lif3"), ("lif3", "rec3"), ("rec3", "lif3"),
             ("lif3", "out")]
    return IntGraph(nodes, edges)


class _Twin(nn.Module):
    """The graph in snnTorch: same weights (float32), thresholds vth, no decay, reset to zero."""

    def __init__(self, g: IntGraph):
        super().__init__()
        n = g.nodes

        def lif(name):
            return snn.Leaky(beta=1.0, threshold=float(VTH[name]), reset_mechanism="zero", reset_delay=False)

        def weight(layer, node):
            layer.weight.data = torch.tensor(np.asarray(node.effective_weight()), dtype=torch.float32)
            return layer

        self.conv1 = weight(nn.Conv2d(1, 4, 3, padding=1, bias=False), n["conv1"])
        self.lif1 = lif("lif1")
        self.pool = nn.AvgPool2d(2, divisor_override=1)  # a sum pool, as SumPool2d
        self.conv2 = weight(nn.Conv2d(4, 3, 3, bias=False), n["conv2"])
        self.lif2 = lif("lif2")
        self.flat = nn.Flatten()
        self.fc3 = weight(nn.Linear(3, 5, bias=False), n["fc3"])
        self.rec3 = weight(nn.Linear(5, 5, bias=False), n["rec3"])
        self.lif3 = lif("lif3")
        self.spk3 = torch.zeros(0)

    def reset(self):  # SNNTorchModel calls it before each batch
        for lif in (self.lif1, self.lif2, self.lif3):
            lif.reset_mem()
        self.spk3 = torch.zeros(0)

    def forward(self, x):  # one step, (B, 1, 6, 6)
        s1, _ = self.lif1(self.conv1(x))
        s2, _ = self.lif2(self.conv2(self.pool(s1)))
        cur3 = self.fc3(self.flat(s2))
        if self.spk3.shape != cur3.shape:
            self.spk3 = torch.zeros_like(cur3)
        s3, mem3 = self.lif3(cur3 + self.rec3(self.spk3))  # the recurrent Linear reads the previous step
        self.spk3 = s3
        return s3, mem3


def _input(seed=5):
    return (np.random.default_rng(seed).random((S, T, 1, 6, 6)) < 0.35).astype(np.int8)


def _neurobench(g, x, batch_size):
    torch.manual_seed(0)
    model = SNNTorchModel(_Twin(g))
    data = torch.utils.data.TensorDataset(torch.tensor(x, dtype=torch.float32), torch.zeros(S))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    bench = Benchmark(model, loader, [], [], [[Footprint, ConnectionSparsity, ParameterCount],
                                              [ActivationSparsity, ActivationSparsityByLayer, SynapticOperations,
                                               MembraneUpdates]])
    return bench.run(quiet=True), model


@pytest.mark.parametrize("batch_size", [1, 4])
def test_metrics_equal_neurobench_on_the_float_twin(batch_size):
    g, x = _graph(), _input()
    rec = simulate(g, x, timing="ideal", record=True)
    ours = neurobench_metrics(g, rec, x, batch_size=batch_size)
    nb, model = _neurobench(g, x, batch_size)

    # the twin computes the same spikes (else the comparison means nothing)
    with torch.no_grad():
        preds = model(torch.tensor(x, dtype=torch.float32))  # (S, T, 5)
    assert np.array_equal(preds.numpy(), rec.outputs["out"])

    # the run exercises every case: spiking and non-spiking (pooled counts > 1) calls, recurrence
    conv2 = next(o for o in ours.operators if o.name == "conv2")
    assert conv2.acs > 0 and conv2.macs > 0
    if batch_size > 1:  # one count > 1 in a batch makes the whole call MACs
        assert conv2.acs < next(o for o in neurobench_metrics(g, rec, x).operators if o.name == "conv2").acs
    assert next(o for o in ours.operators if o.name == "rec3").recurrent
    assert min(gr.nonzero for gr in ours.groups) > 0

    assert nb["ParameterCount"] == ours.parameter_count
    assert nb["ConnectionSparsity"] == ours.connection_sparsity
    assert nb["ActivationSparsity"] == pytest.approx(ours.activation_sparsity, abs=1e-12)
    by_layer = {gr["name"]: gr["activation_sparsity"] for gr in ours.summary()["groups"]}
    assert nb["ActivationSparsityByLayer"] == pytest.approx(by_layer, abs=1e-12)
    assert nb["SynapticOperations"] == ours.synaptic_operations
    assert nb["MembraneUpdates"] == ours.membrane_updates

    # footprint: NeuroBench's bytes of parameters and buffers of the twin: float32 weights and each
    # Leaky's own buffers beta, threshold, graded_spikes_factor, reset_mechanism_val (mem is empty when
    # Footprint runs, before the data; it holds the last batch's state now)
    leaky_bytes = sum(b.numel() * b.element_size() for lif in (model.net.lif1, model.net.lif2, model.net.lif3)
                      for name, b in lif.named_buffers() if name != "mem")
    assert nb["Footprint"] - leaky_bytes == 4 * ours.parameter_count
    # ours in float32: the same weights plus four parameters per group (all shared here)
    assert ours.float32_footprint_bytes == 4 * (ours.parameter_count + 4 * 3)
    # ours in the integer formats: 9-bit weights, a 4-bit weight_exp per operator, registers per group
    bits = ours.parameter_count * F.WEIGHT.bits + 4 * F.WEIGHT_EXP.bits + 3 * sum(REGISTER_BITS.values())
    assert ours.footprint_bytes == -(-bits // 8) < ours.float32_footprint_bytes
