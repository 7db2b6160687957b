"""lava-dl netx HDF5 exchange, checked against netx itself running in Lava fixed_pt.

(1) our graphs -> write_netx -> netx in Lava == simulate, every block's spikes, u and v, exactly;
    among them lava-dl's deployment protocol: an Input block driven through its bias, as lava-dl
    drives PilotNet and its tinynet test, with netx's Network(reset_interval, reset_offset), a
    recurrent block and a readout without a neuron group (netx's default neuron);
(2) networks exported by lava-dl slayer itself (Dense, Conv, cuba.Recurrent; committed files,
    tests/data/lava_dl) -> read_netx -> simulate == netx in Lava == spikeport's Lava deployment
    (run_lava), exactly; and slayer's own float output on the same input, stated per file;
(3) hand-made files at the value extremes and netx's quirks, likewise;
(4) round trips (write -> read gives the same graph arithmetic) and refusals (ValueError naming the
    layer or node). Lava runs in its managed runtime through the bridge, and is required.
"""
from pathlib import Path

import h5py
import numpy as np
import pytest

from spikeport.export.netx import (BLOCKS_KEY, TRANSFORM_KEY, as_chain, netx_dense_effective,
                                   netx_optimize_weight_bits, netx_rec_effective, read_netx, write_netx)
from spikeport.sim import formats as F
from spikeport.sim.graph import Flatten, Input, IntGraph, NeuronGroup, Output, as_graph
from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons, SumPool2d
from spikeport.sim.simulator import simulate
from spikeport.targets.lava import run_lava
from spikeport.targets.netx import lavadl_optimize_weight_bits, netx_dense_synapse, run_netx

NETX_READOUT = Neurons(du=F.NETX_DEFAULT_DU, dv=F.NETX_DEFAULT_DV, vth=F.NETX_DEFAULT_VTH)


def spikes(rng, shape, p=0.5):
    return (rng.random(shape) < p).astype(np.int8)


def never_spikes(graph, name) -> bool:
    return int(np.min(graph.neurons(name).expand("vth", graph.shapes[name]))) == F.NETX_DEFAULT_VTH


def netx_and_ours(path, graph, **run):
    """netx in Lava == simulate(graph): spikes (payloads), u and v of every block at every step,
    same dtypes, mismatches == 0, and the same output. Returns (ours, theirs). test_sdnn and test_rf
    use it too."""
    theirs = run_netx(path, graph=graph, record=True, **run)
    ours = simulate(graph, record=True, **run)
    assert list(theirs.spikes) == graph.meta[BLOCKS_KEY] and set(theirs.spikes) == set(graph.groups())
    for name in graph.groups():
        for key in ("spikes", "u", "v"):
            a, b = getattr(ours, key)[name], getattr(theirs, key)[name]
            assert a.dtype == b.dtype, (name, key, a.dtype, b.dtype)
            mismatches = int(np.count_nonzero(a != b))
            assert mismatches == 0, f"{key} of {name}: {mismatches} of {a.size} differ from netx in Lava"
    (out,) = graph.outputs()
    assert np.array_equal(ours.outputs[out], theirs.outputs[out])
    return ours, theirs


def equal_to_netx(path, graph, **run):
    """``netx_and_ours``, and every block active (it spikes, or -- a readout that cannot spike --
    its v moves). Returns our record."""
    ours, _ = netx_and_ours(path, graph, **run)
    for name in graph.groups():
        if never_spikes(graph, name):
            assert ours.v[name].any() and not ours.spikes[name].any(), f"readout {name} is idle or spiked"
        else:
            assert ours.spikes[name].any(), f"block {name} never spiked"
    return ours


def equal_to_deploy(graph, ours, **run):
    """spikeport's own Lava deployment of the graph (run_lava) == the simulator's record ``ours``."""
    dep = run_lava(graph, record=True, **run)
    for name in graph.groups():
        for key in ("spikes", "u", "v"):
            mismatches = int(np.count_nonzero(getattr(ours, key)[name] != getattr(dep, key)[name]))
            assert mismatches == 0, f"{key} of {name}: {mismatches} differ from run_lava"


def write_h5(path, layers, attrs=None):
    """A netx file from a list of layer dicts (``neuron`` a dict; strings as slayer writes them)."""
    with h5py.File(path, "w") as f:
        g = f.create_group("layer")
        for i, layer in enumerate(layers):
            h = g.create_group(str(i))
            for k, v in layer.items():
                if k == "neuron":
                    for nk, nv in v.items():
                        if isinstance(nv, str):
                            h.create_dataset(f"neuron/{nk}", (1,), "S10", [nv.encode()])
                        else:
                            h.create_dataset(f"neuron/{nk}", data=nv)
                elif isinstance(v, str):
                    h.create_dataset(k, (1,), "S10", [v.encode()])
                else:
                    h.create_dataset(k, data=v)
    return path


def cuba(**kw):
    n = dict(type="CUBA", iDecay=4096, vDecay=0, vThMant=10, refDelay=1, gradedSpike=False)
    n.update(kw)
    return n


def effective(op, shape):
    """What a synaptic operator computes, comparable across records: ``(kind, weights, exponent,
    stride, padding)`` with the Dense exponent folded where exact."""
    if isinstance(op, SumPool2d):
        op = op.as_conv(shape[0])
    if isinstance(op, Dense):
        w, e = op.effective_weight(), int(op.weight_exp)
        while e < 0 and not np.any(w & 1):
            w, e = w >> 1, e + 1
        return ("dense", (w << e if e > 0 else w).tolist(), min(e, 0))
    return ("conv", op.effective_weight().tolist(), tuple(op.stride), tuple(op.padding))


def same_arithmetic(a: IntGraph, b: IntGraph, names=True):
    """The same groups (shapes, every register per neuron) and the same lowered synapses."""
    ga, gb = a.groups(), b.groups()
    assert len(ga) == len(gb) and (not names or ga == gb)
    pair = dict(zip(ga, gb)) | dict(zip(a.inputs(), b.inputs()))
    for n in ga:
        assert a.shapes[n] == b.shapes[pair[n]]
        na, nb, shape = a.neurons(n), b.neurons(pair[n]), a.shapes[n]
        for f in ("du", "dv", "vth"):
            assert np.array_equal(na.expand(f, shape), nb.expand(f, shape)), (n, f)
        bias = [m.expand("bias_mant", shape) << m.expand("bias_exp", shape) for m in (na, nb)]
        assert np.array_equal(*bias), (n, "bias")
    pa = sorted((pair[p.src], pair[p.dst], effective(p.op, a.shapes[p.src])) for p in a.projections())
    pb = sorted((p.src, p.dst, effective(p.op, b.shapes[p.src])) for p in b.projections())
    assert pa == pb


# --- (1) our graphs -> netx ----------------------------------------------------------------------

def per_neuron_bias(rng, n):
    """Biases netx can hold: (bias_mant << bias_exp) a multiple of 64 with quotient in 13 bits."""
    exp = rng.integers(6, 8, n)
    mant = np.where(exp == 6, rng.integers(-4096, 4096, n), rng.integers(-2048, 2048, n))
    return mant, exp


def test_dense_chain_weights_exponents_biases(tmp_path):
    rng = np.random.default_rng(1)
    m, e = per_neuron_bias(rng, 12)
    net = IntNetwork((16,), (
        # mixed signs with odd values (Lava drops their lowest bit), du/dv at opposite extremes
        Layer(Dense(rng.integers(-256, 256, (12, 16)) | 1), Neurons(du=0, dv=4095, vth=300, bias_mant=m // 4,
                                                                     bias_exp=e)),
        # excitatory with a positive exponent (weights <= 127, so W << 1 stays within netx's 8 bits)
        Layer(Dense(rng.integers(0, 128, (10, 12)), weight_exp=1), Neurons(du=4095, dv=0, vth=900)),
        # inhibitory with a negative exponent that divides exactly (weights multiples of 4)
        Layer(Dense(rng.integers(-60, 0, (8, 10)) * 4 - 4, weight_exp=-2),
              Neurons(du=1234, dv=3000, vth=0, bias_mant=2047, bias_exp=7)),
        # fewer weight bits: Lava truncates 3 low bits (mixed), our effective weights carry that
        Layer(Dense(rng.integers(-256, 255, (6, 8)), num_weight_bits=6), Neurons(du=0, dv=0, vth=40)),
    ))
    x = spikes(rng, (2, 20, 16), 0.6)
    path = tmp_path / "dense.net"
    write_netx(net, path)
    graph = read_netx(path)
    assert graph.meta[BLOCKS_KEY] == [f"layer{i}" for i in range(4)]
    ours = equal_to_netx(path, graph, x=x)
    same_arithmetic(as_graph(net), graph)  # our own file reads back to the same arithmetic
    chain = as_chain(graph)  # and, being a chain, back to a chain for callers that take one
    assert isinstance(chain, IntNetwork) and np.array_equal(simulate(chain, x).output, ours.output)


def test_dense_first_on_feature_map_input_and_decay_extremes(tmp_path):
    rng = np.random.default_rng(2)
    net = IntNetwork((2, 3, 3), (
        # a dense first layer reads the (C, H, W) input flattened in C order: netx's flat port
        Layer(Dense(rng.integers(-128, 128, (10, 18)) * 2), Neurons(du=4095, dv=4095, vth=20, bias_mant=-64,
                                                                   bias_exp=6)),
        Layer(Dense(rng.integers(-100, 128, (8, 10)) * 2, weight_exp=0, sign_mode="mixed"),
              Neurons(du=0, dv=0, vth=400)),
        Layer(Dense(rng.integers(0, 3, (5, 8)) * 32, weight_exp=1), Neurons(du=2047, dv=1, vth=1000,
                                                                           bias_mant=4095, bias_exp=6)),
    ))
    path = tmp_path / "flat.net"
    write_netx(net, path)
    with h5py.File(path) as f:
        assert [f[f"layer/{i}/type"][0].decode() for i in range(len(f["layer"]))] == \
            ["input", "flatten", "dense", "dense", "dense"]
        assert f["layer/2/neuron/iDecay"][()] == 4096 and f["layer/3/neuron/iDecay"][()] == 1
    equal_to_netx(path, read_netx(path), x=spikes(rng, (2, 18, 2, 3, 3), 0.6))


def test_conv_pool_dense(tmp_path):
    rng = np.random.default_rng(3)
    per_neuron = rng.integers(-30, 30, 3 * 3 * 2) * 64
    net = IntNetwork((2, 9, 10), (
        # padding, a folded exponent, per-channel bias
        Layer(Conv2d(rng.integers(-90, 120, (4, 2, 3, 3)), padding=(1, 1), weight_exp=2),
              Neurons(du=3000, dv=500, vth=40, bias_mant=rng.integers(-8, 8, 4) * 64, bias_exp=0)),
        # sum pooling is written as a unit-kernel conv (netx has no 'pool')
        Layer(SumPool2d(2), Neurons(du=4095, dv=200, vth=1)),
        # asymmetric stride, per-neuron bias (written in Lava's (W, H, C) order)
        Layer(Conv2d(rng.integers(-255, 256, (3, 4, 2, 3)), stride=(1, 2)),
              Neurons(du=100, dv=4095, vth=5, bias_mant=per_neuron, bias_exp=0)),
        Layer(Dense(rng.integers(-128, 128, (5, 3 * 3 * 2)) * 2), Neurons(du=4095, dv=100, vth=10)),
    ))
    path = tmp_path / "conv.net"
    write_netx(net, path)
    graph = read_netx(path)
    equal_to_netx(path, graph, x=spikes(rng, (2, 14, 2, 9, 10), 0.5))
    same_arithmetic(as_graph(net), graph)


def pilotnet_like(rng):
    """lava-dl's PilotNet shape of deployment, small: an Input block whose bias is the image, conv,
    pooling into a recurrent dense block, and a readout without neurons of its own (netx's default:
    a current that never decays, read through u and v; it never spikes)."""
    nodes = {
        "image": Input((2, 8, 8), Neurons(du=4095, dv=0, vth=90, bias_exp=6)),
        "conv": Conv2d(rng.integers(-30, 80, (4, 2, 3, 3)), padding=(1, 1)),
        "features": NeuronGroup((4, 8, 8), Neurons(du=3000, dv=400, vth=40, bias_mant=-64, bias_exp=6)),
        "pool": SumPool2d(2),
        "flat": Flatten(),
        "fc": Dense(rng.integers(-64, 128, (16, 64)) * 2),
        "hidden": NeuronGroup((16,), Neurons(du=2000, dv=300, vth=60)),
        "rec": Dense(rng.integers(-100, 60, (16, 16)) * 2),
        "head": Dense(rng.integers(-100, 120, (3, 16)) * 2),
        "readout": NeuronGroup((3,), Neurons(du=NETX_READOUT.du, dv=NETX_READOUT.dv, vth=NETX_READOUT.vth,
                                             bias_mant=np.array([64, -128, 0]), bias_exp=6)),
        "steering": Output(),
    }
    edges = [("image", "conv"), ("conv", "features"), ("features", "pool"), ("pool", "flat"), ("flat", "fc"),
             ("fc", "hidden"), ("hidden", "rec"), ("rec", "hidden"), ("hidden", "head"), ("head", "readout"),
             ("readout", "steering")]
    return IntGraph(nodes, edges)


@pytest.mark.parametrize("interval,offset", [(12, 0), (8, 3)])
def test_bias_driven_input_block_with_reset_interval_as_lava_dl_drives_pilotnet(tmp_path, interval, offset):
    rng = np.random.default_rng(20 + offset)
    graph = pilotnet_like(rng)
    path = tmp_path / "pilot.net"
    write_netx(graph, path)
    with h5py.File(path, "a") as f:  # the readout as other exporters write it: no neuron group at all
        types = [f[f"layer/{i}/type"][0].decode() for i in range(len(f["layer"]))]
        assert types == ["input", "conv", "flatten", "dense_rec", "dense"]
        assert int(f["layer/4/neuron/iDecay"][()]) == 0  # netx's du = iDecay - 1 = -1, written explicitly
        del f["layer/4/neuron"]
    back = read_netx(path)
    assert isinstance(back.nodes["image"], Input) and back.meta[BLOCKS_KEY] == ["image", "features", "hidden",
                                                                                  "readout"]
    same_arithmetic(graph, back)  # names restored; the readout's registers are netx's default
    assert back.depths() == {"image": 0, "features": 1, "hidden": 2, "readout": 3}  # netx's block index
    image = rng.integers(0, 256, (3, 2, 8, 8))  # one "picture" per sample: the input neurons' bias mantissa
    run = dict(input_bias=image, steps=12, reset_interval=interval, reset_offset=offset)
    ours = equal_to_netx(path, back, **run)
    if interval == 12:
        equal_to_deploy(back, ours, **run)
    # the reset is exercised: without it (one stream, no reset reached) the readout differs
    free = simulate(back, record=True, **dict(run, reset_interval=10 ** 6, reset_offset=0))
    assert not np.array_equal(free.u["readout"], ours.u["readout"])


# --- (2) slayer's own exports -> read_netx ----------------------------------------------------------
# Files written by lava-dl slayer itself (Block.export_hdf5) in the Lava runtime, with slayer's own
# float output on a fixed input next to each; regenerate with
# `spikeport lava python scripts/make_lavadl_netx.py`.
LAVA_DL = Path(__file__).parent / "data" / "lava_dl"


@pytest.mark.parametrize("name", ["slayer_dense", "slayer_conv", "slayer_recurrent"])
def test_slayer_exports_simulate_equal_netx_and_deploy_and_slayer(name):
    path = LAVA_DL / f"{name}.net"
    data = np.load(LAVA_DL / f"{name}.npz")
    graph = read_netx(path)
    assert isinstance(graph.nodes["input"], Input) and graph.neurons("input") is not None  # netx's Input block
    if name == "slayer_dense":  # pass-through input neurons (iDecay 4096, vThMant 0)
        assert int(graph.neurons("input").du) == 4095 and int(graph.neurons("input").vth) == 0
        assert int(graph.neurons("layer0").du) == 1023 and int(graph.neurons("layer0").vth) == 32
    if name == "slayer_conv":
        assert graph.shapes["input"] == (2, 6, 6) and graph.shapes["layer0"] == (4, 6, 6)
    if name == "slayer_recurrent":  # cuba.Recurrent -> dense_rec -> a Dense onto its own group
        assert [(p.src, p.dst) for p in graph.projections() if p.src == p.dst] == [("layer0", "layer0")]
        assert [len(c) for c in graph.components()] == [1, 1, 1] and graph.shapes["layer0"] == (24,)
    # slayer's input 1.0 is a_in = 64 in netx's Input block (its transform, applied by the data
    # pipeline: hdf5.py 279-289); slayer's own run saw the same spikes
    assert graph.meta[TRANSFORM_KEY] == {"weight": 64, "bias": 0}
    x = data["x"].astype(np.int64) * graph.meta[TRANSFORM_KEY]["weight"]
    ours = equal_to_netx(path, graph, x=x)
    equal_to_deploy(graph, ours, x=x)
    # agreement with slayer's float output: slayer delays every block's output by one step
    # (delay_shift), so its y[:, t + 1] is netx's output at t. Measured: 0 of 4 x 23 x N differ in
    # each of the three files (slayer_dense 552, slayer_conv 460, slayer_recurrent 552 entries).
    y = data["y"]
    differ = int(np.count_nonzero(y[:, 1:] != ours.output[:, :-1]))
    assert y[:, 1:].sum() > 50 and differ == 0, f"{differ} of {y[:, 1:].size} output spikes differ from slayer"


# --- (3) hand-made files at the extremes --------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:divide by zero")  # netx's 127 / max for a max == 0 matrix
def test_handmade_dense_extremes(tmp_path):
    rng = np.random.default_rng(6)
    odd_small = rng.integers(-128, 128, (10, 12)) | 1          # netx keeps them odd (num_weight_bits 9)
    odd_small = odd_small + rng.random(odd_small.shape) * np.sign(odd_small) * 0.9  # netx truncates floats
    excit = rng.integers(0, 256, (8, 10))
    excit[0, 0] = 255                                         # excitatory maximum
    # non-positive with zeros (netx: mixed, Lava: inhibitory) and a power-of-two minimum: netx scales
    # -128 to -256, Lava clips it to -255 and drops a bit (num_weight_bits 7): it acts as -127
    nonpos = -2 * rng.integers(0, 64, (6, 8))
    nonpos[0, 0], nonpos[1, 1] = -128, 0
    extreme = rng.integers(-128, 128, (4, 6)) * 2
    extreme[0, :2] = [254, -256]                              # mixed maxima
    path = write_h5(tmp_path / "dense_extremes.net", [
        # pass-through input neurons with vDecay = 4096 (dv = 4096 keeps no voltage)
        dict(type="input", shape=np.array([12]), neuron=cuba(iDecay=4096, vDecay=4096, vThMant=0),
             weight=np.float32(2.0), bias=np.float32(7.0)),  # netx never applies these
        dict(type="dense", shape=np.array([10]), weight=odd_small.astype(np.float32), delay=np.zeros(10),
             bias=np.array([4095.9, -4096.7] + [0.0] * 8), neuron=cuba(iDecay=1, vDecay=0, vThMant=150)),
        # vThMant at its 17-bit maximum: only a saturated v (2**23 - 1 > 131071 << 6) spikes; bias 8190 << 6
        dict(type="dense", shape=np.array([8]), weight=excit, bias=np.full(8, 8190),
             neuron=cuba(iDecay=4096, vDecay=0, vThMant=131071)),
        dict(type="dense", shape=np.array([6]), weight=nonpos, bias=np.full(6, 3000),
             neuron=cuba(iDecay=4096, vDecay=4095, vThMant=20)),
        dict(type="dense", shape=np.array([4]), weight=extreme.reshape(-1).astype(np.float64),  # 1-d: netx reshapes
             neuron=cuba(iDecay=2048, vDecay=100, vThMant=0)),
    ])
    graph = read_netx(path)
    assert graph.meta[BLOCKS_KEY] == ["input", "layer0", "layer1", "layer2", "layer3"]
    assert graph.meta[TRANSFORM_KEY] == {"weight": 2, "bias": 7}  # kept as information, never applied
    assert int(graph.neurons("input").dv) == 4096 and int(graph.neurons("input").bias_mant) == 0
    assert int(graph.neurons("layer1").vth) == 131071 and int(graph.neurons("layer0").du) == 0
    assert np.array_equal(graph.nodes["layer0.synapse"].effective_weight() >> 1, np.trunc(odd_small).astype(int))
    quirk = graph.nodes["layer2.synapse"]
    assert quirk.effective_weight()[0, 0] * 2.0 ** quirk.weight_exp == -127
    equal_to_netx(path, graph, x=spikes(rng, (2, 24, 12), 0.7))


def test_handmade_conv_groups_big_weights_and_neuron_bias(tmp_path):
    rng = np.random.default_rng(7)
    w = rng.integers(-250, 250, (4, 2, 3, 3)) * 4      # beyond 8 bits: Lava's Conv takes them as given
    bias_whc = rng.integers(-40, 40, (2, 5, 4))          # per neuron, Lava's (W, H, C) order
    path = write_h5(tmp_path / "conv_extremes.net", [
        dict(type="input", shape=np.array([4, 5, 5])),
        dict(type="conv", shape=np.array([4, 5, 2]), weight=w[..., None].astype(np.float32),  # slayer's 5-d
             stride=np.array([1, 2]), padding=np.array([1, 0]), dilation=np.array([1, 1]), groups=np.int64(2),
             bias=bias_whc, neuron=cuba(iDecay=3000, vDecay=2000, vThMant=300), delay=np.ones(4)),  # ignored
        dict(type="flatten", shape=np.array([40, 1, 1])),
        dict(type="dense", shape=np.array([5]), weight=rng.integers(-128, 128, (5, 40)) * 2,
             neuron=cuba(iDecay=4096, vDecay=0, vThMant=60)),
    ])
    graph = read_netx(path)
    conv = graph.nodes["layer0.synapse"]
    assert conv.weight.shape == (4, 4, 3, 3) and int(conv.weight_exp) == 2
    assert not conv.weight[:2, 2:].any() and not conv.weight[2:, :2].any()  # groups: block diagonal
    assert graph.neurons("input") is None and graph.meta[BLOCKS_KEY] == ["layer0", "layer1"]
    equal_to_netx(path, graph, x=spikes(rng, (2, 12, 4, 5, 5), 0.5))


def test_handmade_recurrent_with_delay_quirk_and_default_readout(tmp_path):
    """A dense_rec block with (zero) delays: netx builds its DelayDense synapses without weight_exp
    (blocks/process.py 273-286), so its own weight shift is never undone; then a dense layer with no
    neuron group (netx's default neuron) and a bias."""
    rng = np.random.default_rng(8)
    w, r = rng.integers(-20, 31, (8, 8)) * 2, rng.integers(-30, 21, (8, 8)) * 2
    path = write_h5(tmp_path / "rec.net", [
        dict(type="input", shape=np.array([8])),
        dict(type="dense_rec", shape=np.array([8]), weight=w.astype(np.float32), weight_rec=r, delay=np.zeros(8),
             neuron=cuba(iDecay=1500, vDecay=300, vThMant=250)),
        dict(type="dense", shape=np.array([3]), weight=rng.integers(-60, 100, (3, 8)) * 2, bias=np.array([5, -3, 0])),
    ])
    graph = read_netx(path)
    # derived from netx's rescaling: the joint matrix is shifted by k = -weight_exp and never shifted back
    _, _, exp = netx_optimize_weight_bits(np.hstack([w, r]))
    assert exp < 0
    for name, m in (("layer0.synapse", w), ("layer0.recurrent", r)):
        op = graph.nodes[name]
        assert np.array_equal(op.effective_weight() * 2.0 ** op.weight_exp, m * 2.0 ** -exp)
    readout = graph.neurons("layer1")
    assert (int(readout.du), int(readout.dv), int(readout.vth)) == (-1, 4096, 2 ** 17)
    assert np.array_equal(readout.expand("bias_mant", (3,)) << readout.expand("bias_exp", (3,)),
                          np.array([5, -3, 0]) << 6)
    equal_to_netx(path, graph, x=spikes(rng, (2, 20, 8), 0.4))


def test_handmade_synaptic_delays(tmp_path):
    """Non-zero delays as netx expands them (hdf5.py 425-448): a full matrix, a per-row vector, values
    above 62 clamped (with netx's warning), and a recurrent block whose two DelayDense synapses share
    the matrix and drop weight_exp (blocks/process.py 263-286)."""
    rng = np.random.default_rng(18)
    d_full = rng.integers(0, 7, (9, 6))
    d_rows = np.array([0, 3, 70, 1, 0, 2, 5])  # 70: netx clamps to 62
    w_rec, r_rec = rng.integers(-30, 40, (5, 5)) * 2, rng.integers(-40, 30, (5, 5)) * 2
    path = write_h5(tmp_path / "delays.net", [
        dict(type="input", shape=np.array([6])),
        dict(type="dense", shape=np.array([9]), weight=rng.integers(-60, 120, (9, 6)) * 2, delay=d_full,
             neuron=cuba(iDecay=1200, vDecay=300, vThMant=60)),
        dict(type="dense", shape=np.array([7]), weight=rng.integers(-50, 110, (7, 9)) * 2, delay=d_rows,
             neuron=cuba(iDecay=2000, vDecay=400, vThMant=40)),
        dict(type="dense", shape=np.array([5]), weight=rng.integers(-40, 110, (5, 7)) * 2,
             neuron=cuba(iDecay=2000, vDecay=400, vThMant=40)),
        dict(type="dense_rec", shape=np.array([5]), weight=w_rec, weight_rec=r_rec, delay=rng.integers(0, 4, (5, 5)),
             neuron=cuba(iDecay=1500, vDecay=300, vThMant=120)),
    ])
    with pytest.warns(UserWarning, match="delays up to 70 clamped to 62"):
        graph = read_netx(path)
    w0 = graph.nodes["layer0.synapse"]
    assert np.array_equal(np.where(w0.effective_weight() != 0, w0.delay, 0), np.where(w0.weight != 0, d_full, 0))
    assert graph.nodes["layer1.synapse"].delay[2].tolist() == [62] * 9
    assert np.array_equal(graph.nodes["layer3.recurrent"].delay, graph.nodes["layer3.synapse"].delay)
    assert graph.latency() == 4 + 6 + 62 + 3
    equal_to_netx(path, graph, x=spikes(rng, (1, 90, 6), 0.5))


# --- (4) round trips, the simulator's netx-default arithmetic, refusals (no Lava runs) --------------

def test_graph_round_trips_exactly(tmp_path):
    rng = np.random.default_rng(9)
    graph = pilotnet_like(rng)
    path = tmp_path / "g.net"
    write_netx(graph, path)
    back = read_netx(path)
    same_arithmetic(graph, back)
    assert list(back.nodes) == ["image", "conv", "features", "fc", "hidden", "rec", "head", "readout",
                                "steering"]  # our names (the composed pool -> dense is named by its dense)
    write_netx(back, tmp_path / "again.net")  # and again: a fixed point
    same_arithmetic(back, read_netx(tmp_path / "again.net"))
    x = spikes(rng, (2, 10, 2, 8, 8), 0.3)
    assert np.array_equal(simulate(graph, x, record=True).v["readout"], simulate(back, x, record=True).v["readout"])
    # a file without our attribute reads with netx's block names, and the same arithmetic
    with h5py.File(path, "a") as f:
        del f.attrs["spikeport"]
    plain = read_netx(path)
    assert plain.meta[BLOCKS_KEY] == ["input", "layer0", "layer1", "layer2"]
    same_arithmetic(graph, plain, names=False)
    assert as_chain(plain) is None  # input neurons and recurrence: not a chain


def test_sum_pool_into_conv_round_trip(tmp_path):
    rng = np.random.default_rng(10)
    nodes = {"in": Input((2, 8, 8)), "c1": Conv2d(rng.integers(-60, 90, (3, 2, 3, 3)), padding=(1, 1)),
             "g1": NeuronGroup((3, 8, 8), Neurons(du=4095, dv=100, vth=20)), "p": SumPool2d(2),
             "c2": Conv2d(rng.integers(-60, 90, (2, 3, 2, 2))),
             "g2": NeuronGroup((2, 3, 3), Neurons(du=1000, dv=0, vth=30)), "y": Output()}
    edges = [("in", "c1"), ("c1", "g1"), ("g1", "p"), ("p", "c2"), ("c2", "g2"), ("g2", "y")]
    graph = IntGraph(nodes, edges)
    write_netx(graph, tmp_path / "pc.net")
    back = read_netx(tmp_path / "pc.net")
    same_arithmetic(graph, back)
    chain = as_chain(back)
    assert [layer.name for layer in chain.layers] == ["g1", "g2"]
    assert chain.layers[1].synapse.weight.shape == (2, 3, 4, 4)  # pooling composed into the kernel


def test_netx_default_neuron_arithmetic_in_the_simulator():
    """du = -1, dv = 4096, vth = 2**17 (netx's default neuron) from the equations: u integrates every
    input forever, v = u + bias saturating at 2**23 - 1, no spike ever (the threshold is 2**23)."""
    rng = np.random.default_rng(11)
    w = rng.integers(0, 120, (4, 6)) * 2
    bias = np.array([0, 100, -4096, 4095])
    nodes = {"in": Input((6,)), "w": Dense(w),
             "r": NeuronGroup((4,), Neurons(du=-1, dv=4096, vth=2 ** 17, bias_mant=bias, bias_exp=7)), "y": Output()}
    graph = IntGraph(nodes, [("in", "w"), ("w", "r"), ("r", "y")])
    x = spikes(rng, (2, 400, 6), 0.9)
    res = simulate(graph, x, record=True)
    a = np.einsum("oi,sti->sto", w, x.astype(np.int64)) << 6      # (S, T, 4): a << 6 computed at t
    u = np.zeros((2, 4), dtype=np.int64)
    for t in range(400):
        if t:
            u = u + a[:, t - 1]                                     # delivered one step late, never decayed
            u = np.where(u > 2 ** 23, u - 2 ** 24, u)               # Lava's single conditional wrap
        v = np.clip(u + (bias << 7), -(2 ** 23 - 1), 2 ** 23 - 1)   # dv = 4096: no voltage memory
        assert np.array_equal(res.u["r"][:, t], u) and np.array_equal(res.v["r"][:, t], v), t
    assert not res.spikes["r"].any() and res.v["r"].max() == 2 ** 23 - 1  # saturated, still silent


def test_netx_weight_rescaling_ported_exactly():
    rng = np.random.default_rng(8)
    cases = []
    for trial in range(3000):
        lo, hi = [(-256, 255), (0, 256), (-256, 0), (-8, 9), (-256, 1)][trial % 5]
        w = rng.integers(lo, hi, (int(rng.integers(1, 4)), int(rng.integers(1, 5))))
        w = w << int(rng.integers(0, 3)) if trial % 5 == 3 else w
        try:
            cases.append((w, netx_optimize_weight_bits(w)))
        except ValueError:
            continue
    assert len(cases) > 2500
    theirs = lavadl_optimize_weight_bits([w for w, _ in cases])  # lava-dl itself, one runtime call
    for (w, ours), (tw, bits, exp) in zip(cases, theirs, strict=True):
        assert np.array_equal(ours[0], tw) and ours[1:] == (bits, exp), (w, ours, (tw, bits, exp))


def test_netx_quirks():
    # the most negative of non-positive weights a power of two: netx scales it to -256, Lava clips it
    # to -255 and then drops the lowest bit (num_weight_bits 7): -128 acts as -127
    w, e = netx_dense_effective(np.array([[-128, -3]]))
    assert (w.tolist(), e) == ([[-254, -6]], -1)
    # odd mixed-sign weights survive (num_weight_bits 9)
    assert netx_optimize_weight_bits(np.array([[253, -3]]))[1] == 9
    with pytest.raises(ValueError, match="all-zero"):
        netx_optimize_weight_bits(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="negative amount"):
        netx_optimize_weight_bits(np.array([[300, 3]]))
    # a recurrent block's matrices share netx's shift: an excitatory forward matrix next to a mixed
    # recurrent one with odd weights gets num_weight_bits 9, which Lava cannot apply to it
    with pytest.raises(ValueError, match=r"x \(weight\): .*num_weight_bits = 9.*excitatory"):
        netx_rec_effective(np.array([[201, 3]]), np.array([[-256]]), "x")
    (wf, ef), (wr, er) = netx_rec_effective(np.array([[2, 4]]), np.array([[-6]]))
    assert ef == er and (wf * 2.0 ** ef).tolist() == [[2, 4]] and (wr * 2.0 ** er).tolist() == [[-6]]


@pytest.mark.parametrize("w", [[[-128, -128, -3]], [[0, -128, -128]], [[-64, -64, -64]], [[253, -3, 0]],
                               [[1, -1, 0]], [[255, 0, 7]], [[-255, -1, -2]], [[-256, 254, 2]]])
def test_emulation_matches_the_dense_netx_builds(tmp_path, w):
    """The synapse netx builds (weights, num_weight_bits, weight_exp; no sign mode) through Lava's own
    clip/truncate (what PyDenseModelBitAcc applies) == netx_dense_effective. No run needed."""
    w = np.array(w)
    path = write_h5(tmp_path / "one.net", [dict(type="dense", shape=np.array([1]), weight=w, neuron=cuba())])
    syn = netx_dense_synapse(path)
    assert syn["sign_mode"] is None
    ours, exp = netx_dense_effective(w)
    assert np.array_equal(syn["effective"], ours) and syn["weight_exp"] == exp


def one_dense(w, exp=0, **neuron):
    n = dict(du=4095, dv=0, vth=10)
    n.update(neuron)
    return IntNetwork((np.shape(w)[1],), (Layer(Dense(np.array(w), weight_exp=exp), Neurons(**n)),))


def _g(**changes):
    """input -> d1 -> a -> d2 -> b -> y, with named changes (node replacements and extra edges)."""
    nodes = {"in": Input((4,)), "d1": Dense(np.full((3, 4), 2)), "a": NeuronGroup((3,), Neurons(vth=5)),
             "d2": Dense(np.full((2, 3), 4)), "b": NeuronGroup((2,), Neurons(vth=5)), "y": Output()}
    edges = [("in", "d1"), ("d1", "a"), ("a", "d2"), ("d2", "b"), ("b", "y")]
    extra = changes.pop("edges", [])
    nodes.update(changes)
    return IntGraph(nodes, edges + extra)


@pytest.mark.parametrize("net,match", [
    (one_dense([[2, 4], [6, 8]], du=np.array([1, 2])), "one du"),
    (one_dense([[2, 4]], bias_mant=3), "not a multiple of 64"),
    (one_dense([[2, 4]], bias_mant=4095, bias_exp=7), "13-bit"),
    (one_dense([[2, -6]], exp=-2), "floors the synaptic sum"),
    (one_dense([[200, 4]], exp=1), "cannot be written to netx"),
    (one_dense([[254, -256]], exp=1), "cannot be written to netx"),
    (one_dense([[0, 0]]), "all-zero"),
    (one_dense([[-64, -2]]), "power of two"),
    # graphs netx cannot express
    (_g(skip=Dense(np.full((2, 4), 2)), edges=[("in", "skip"), ("skip", "b")]), r"node 'in' feeds 2 groups"),
    (_g(c=NeuronGroup((2,), Neurons(vth=5, bias_mant=100, bias_exp=6)), d3=Dense(np.full((2, 2), 2)),
        edges=[("c", "d3"), ("d3", "b")]), r"node 'b' also receives from \['c'\]"),
    (_g(back=Dense(np.full((3, 2), 2)), edges=[("b", "back"), ("back", "a")]), r"node 'a' also receives from \['b'\].*loops"),
    (_g(c=NeuronGroup((2,), Neurons(vth=5)), d3=Dense(np.full((2, 3), 2)), y2=Output(),
        edges=[("a", "d3"), ("d3", "c"), ("c", "y2")]), "one output"),
    (_g(c=NeuronGroup((2,), Neurons(vth=5)), d3=Dense(np.full((2, 3), 2)),
        edges=[("a", "d3"), ("d3", "c")]), r"node 'a' feeds 2 groups"),
    (_g(r1=Dense(np.full((3, 3), 2)), r2=Dense(np.full((3, 3), 4)),
        edges=[("a", "r1"), ("r1", "a"), ("a", "r2"), ("r2", "a")]), "2 projections onto itself"),
    (_g(**{"in": Input((4,), Neurons(vth=5, bias_exp=0))}), r"node 'in'.*bias_exp = 0"),
    (_g(**{"in": Input((4,), Neurons(vth=5, bias_mant=3, bias_exp=6))}), r"node 'in'.*static bias"),
    (_g(a=NeuronGroup((3, 1, 1), Neurons(vth=5))), r"node 'a'.*flat neurons"),
    (_g(a=NeuronGroup((3,), Neurons(vth=5, dv=np.array([1, 2, 3])))), r"node 'a'.*one dv"),
    # a recurrent block's two matrices share netx's rescaling: odd excitatory next to mixed weights
    # reaching -256 get num_weight_bits 9, which Lava cannot apply to the excitatory one
    (_g(d1=Dense(np.full((3, 4), 201)), r=Dense(np.array([[2, -256, 4]] * 3)), edges=[("a", "r"), ("r", "a")]),
     r"node 'a': synaptic weights .* cannot be written to netx: weight: .*num_weight_bits = 9.*excitatory"),
])
def test_write_refusals(tmp_path, net, match):
    path = tmp_path / "refused.net"
    with pytest.raises(ValueError, match=match):
        write_netx(net, path)
    assert not path.exists()


def test_write_refuses_conv_recurrence(tmp_path):
    nodes = {"in": Input((1, 4, 4)), "c": Conv2d(np.ones((2, 1, 3, 3), dtype=int)),
             "g": NeuronGroup((2, 2, 2), Neurons(vth=5)), "r": Conv2d(np.ones((2, 2, 1, 1), dtype=int)), "y": Output()}
    graph = IntGraph(nodes, [("in", "c"), ("c", "g"), ("g", "r"), ("r", "g"), ("g", "y")])
    with pytest.raises(ValueError, match=r"node 'g': a recurrent group with Conv2d in, Conv2d onto itself"):
        write_netx(graph, tmp_path / "x.net")


def dense_file(**changes):
    base = [dict(type="input", shape=np.array([4])),
            dict(type="dense", shape=np.array([3]), weight=np.array([[2, 4, 6, 8]] * 3), neuron=cuba())]
    for key, value in changes.items():
        i, k = key.split("__") if "__" in key else ("1", key)
        if value is None:
            base[int(i)].pop(k)
        elif k == "neuron":
            base[int(i)]["neuron"] = {**base[int(i)]["neuron"], **value}
        else:
            base[int(i)][k] = value
    return base


CONV = [dict(type="input", shape=np.array([1, 4, 4])),
        dict(type="conv", shape=np.array([2, 2, 2]), weight=np.ones((2, 1, 3, 3)), stride=np.array([1, 1]),
             padding=np.array([0, 0]), dilation=np.array([1, 1]), groups=np.int64(1), neuron=cuba())]
REC = dict(type="dense_rec", shape=np.array([3]), weight=np.array([[2, 4, 6, 8]] * 3),
           weight_rec=np.array([[2, -4, 6]] * 3), neuron=cuba())


@pytest.mark.parametrize("layers,match", [
    (dense_file(type="pool"), r"layer 1 \('pool'\).*not implement"),
    (dense_file(type="average"), r"layer 1 \('average'\)"),
    (dense_file(type="dense_comp"), r"layer 1 \('dense_comp'\).*complex"),
    (dense_file(type="foo"), r"layer 1 \('foo'\).*unknown"),
    (dense_file(type=None), r"layer 1: missing 'type'"),
    (dense_file(weight=None), r"missing 'weight'"),
    (dense_file(weight=np.ones((2, 4))), r"weight shape \(2, 4\) does not match"),
    (dense_file(weight=np.ones((3, 5))), "5 inputs but the previous layer has 4"),
    (dense_file(neuron=dict(iDecay=4097)), r"iDecay = 4097 gives Lava's du = 4096"),
    (dense_file(neuron=dict(iDecay=np.array([1, 2, 3]))), "one value per layer"),
    (dense_file(neuron=dict(vDecay=4097)), "vDecay = 4097"),
    (dense_file(neuron=dict(vThMant=131073)), "vThMant = 131073"),
    (dense_file(neuron=dict(messageBits=3)), "graded output spikes"),
    (dense_file(neuron=dict(type="ALIF")), "'ALIF' is not supported"),  # SDNN: tests/test_sdnn.py, RF: tests/test_rf.py
    (dense_file(delay=-np.ones(3)), r"layer 1 \('dense'\): delay -1 < 0"),
    (dense_file(delay=np.zeros(5)), r"delay of shape \(5,\)"),
    (dense_file(weight=np.array([[253, -3, 0, 0]] * 3)), "odd mixed-sign"),
    (dense_file(weight=np.zeros((3, 4))), "all-zero"),
    (dense_file(weight=np.full((3, 4), 300)), "beyond netx's range"),
    (dense_file(bias=np.ones(5)), "bias has 5 values for 3 neurons"),
    (dense_file(bias=np.full(3, 9001)), "cannot be written as a 13-bit mantissa"),
    (dense_file(**{"0__shape": np.array([2, 2])}), r"input shape \(2, 2\)"),
    ([dense_file()[0], {**REC, "weight_rec": np.ones((3, 2))}], r"layer 1 \('dense_rec'\).*weight_rec shape"),
    ([dense_file()[0], {**REC, "weight_rec": None}], r"layer 1 \('dense_rec'\): missing 'weight_rec'"),
    ([dense_file()[0], {**REC, "delay": np.zeros(3)}], r"'delay' on a recurrent block with 4 inputs"),
    ([dense_file()[0], {**REC, "delay": np.full(3, 2)}], r"layer 1 \('dense_rec'\): 'delay' on a recurrent block"),
    ([dense_file()[0]], "no layers"),
    ([CONV[0], {**CONV[1], "dilation": np.array([2, 2])}], "dilation"),
    ([CONV[0], {k: v for k, v in CONV[1].items() if k != "groups"}], "missing 'groups'"),
    ([CONV[0], {k: v for k, v in CONV[1].items() if k != "neuron"}], r"layer 1 \('conv'\): no 'neuron' group"),
    ([CONV[0], {**CONV[1], "shape": np.array([2, 3, 3])}], "declared shape"),
    ([CONV[1]], "needs a \\(C, H, W\\) input"),
    ([CONV[0], CONV[1], dict(type="dense", shape=np.array([2]), weight=np.ones((2, 8)), neuron=cuba())],
     "needs a 'flatten'"),
])
def test_read_refusals(tmp_path, layers, match):
    refused_in_one_line(tmp_path, [{k: v for k, v in layer.items() if v is not None} for layer in layers], match)


def refused_in_one_line(tmp_path, layers, match) -> None:
    """A netx file of ``layers`` is refused by ``read_netx`` in one line naming the file
    (test_sdnn and test_rf use it too)."""
    path = write_h5(tmp_path / "bad.net", layers)
    with pytest.raises(ValueError, match=match) as err:
        read_netx(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("layers", [
    dense_file()[1:],                                   # no input layer: shape from the weights
    dense_file(neuron=None),                            # netx's default neuron
    dense_file(neuron=dict(iDecay=0, vDecay=4096, vThMant=2 ** 17)),  # the same, written out
    dense_file(delay=np.zeros(3)),                      # zero delays compute as Dense
    [dict(type="input", shape=np.array([3])), {**REC, "weight": np.array([[2, 4, 6]] * 3), "delay": np.zeros(3)}],
])
def test_read_accepts(tmp_path, layers):
    graph = read_netx(write_h5(tmp_path / "ok.net", layers))
    assert graph.shapes["input"] in ((4,), (3,))
    last = graph.neurons(graph.meta[BLOCKS_KEY][-1])
    if "neuron" not in layers[-1] or int(layers[-1]["neuron"]["iDecay"]) == 0:
        assert (int(last.du), int(last.dv), int(last.vth)) == (-1, 4096, 2 ** 17)


def test_read_refuses_files_that_are_not_netx(tmp_path):
    text = tmp_path / "text.net"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="cannot open as an HDF5"):
        read_netx(text)
    with pytest.raises(ValueError, match="cannot open"):
        read_netx(tmp_path / "missing.net")
    with h5py.File(tmp_path / "nolayer.net", "w") as f:
        f.create_group("net")
    with pytest.raises(ValueError, match="no 'layer' group"):
        read_netx(tmp_path / "nolayer.net")
    path = write_h5(tmp_path / "gap.net", dense_file())
    with h5py.File(path, "a") as f:
        f.move("layer/1", "layer/2")
    with pytest.raises(ValueError, match="layer/0 .. layer/1"):
        read_netx(path)
