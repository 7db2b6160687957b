"""lava-dl netx HDF5 exchange, checked against netx itself running in Lava fixed_pt.

(1) our networks -> write_netx -> netx in Lava == simulate (hardware timing), exactly;
(2) networks exported by lava-dl slayer (committed files, tests/data/lava_dl) -> read_netx -> simulate == netx in Lava, exactly;
(3) hand-made files at the value extremes, likewise; (4) malformed or inexpressible files and
records -> ValueError naming the problem. Lava runs are few (7) and tiny; Lava runs in its
managed runtime through the bridge, and is required.
"""
from pathlib import Path

import h5py
import numpy as np
import pytest

from spikeport.targets.netx import lavadl_optimize_weight_bits, netx_dense_synapse, run_netx
from spikeport.export.netx import (TIME_OFFSET_KEY, netx_dense_effective, netx_optimize_weight_bits, read_netx,
                         write_netx)
from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons, SumPool2d
from spikeport.sim.simulator import simulate


def spikes(rng, shape, p=0.5):
    return (rng.random(shape) < p).astype(np.int8)


def netx_equals_sim(path, net, x, active_layers=None):
    """netx's output at step t == simulate's at step t + offset; returns the simulator's record."""
    theirs = run_netx(path, x)
    ours = simulate(net, x, record=True)
    off = net.meta.get(TIME_OFFSET_KEY, 0)
    T = x.shape[1]
    mismatches = int(np.count_nonzero(ours.output[:, off:] != theirs[:, :T - off]))
    assert mismatches == 0, f"{mismatches} output spikes differ from netx"
    assert theirs.any(), "the comparison saw no output spikes"
    for i in range(len(net.layers)) if active_layers is None else active_layers:
        assert ours.spikes[i].any(), f"layer {i} never spiked"
    return ours


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


# --- (1) our records -> netx ----------------------------------------------------------------------

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
    netx_equals_sim(path, net, x)
    back = read_netx(path)  # our own file reads back to the same operators
    assert back.meta[TIME_OFFSET_KEY] == 0 and [l.name for l in back.layers] == [l.name for l in net.layers]
    assert np.array_equal(simulate(back, x).output, simulate(net, x).output)


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
    netx_equals_sim(path, net, spikes(rng, (2, 18, 2, 3, 3), 0.6))


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
    netx_equals_sim(path, net, spikes(rng, (2, 14, 2, 9, 10), 0.5))
    back = read_netx(path)
    x = spikes(rng, (3, 10, 2, 9, 10))
    assert np.array_equal(simulate(back, x).output, simulate(net, x).output)


# --- (2) slayer's own exports -> read_netx ----------------------------------------------------------
# Files written by lava-dl slayer itself (Block.export_hdf5) in the Lava runtime; regenerate with
# `spikeport lava python scripts/make_lavadl_netx.py`.
LAVA_DL = Path(__file__).parent / "data" / "lava_dl"


def test_slayer_dense_export_with_pass_through_input():
    path = LAVA_DL / "slayer_dense.net"
    net = read_netx(path)
    # vThMant = 0 and iDecay = 4096: the input neurons pass spikes through, so they are dropped
    assert net.meta[TIME_OFFSET_KEY] == 0 and len(net.layers) == 2
    assert int(net.layers[0].neurons.du) == 1023 and int(net.layers[0].neurons.vth) == 32
    netx_equals_sim(path, net, spikes(np.random.default_rng(4), (2, 16, 20), 0.5))


def test_slayer_conv_export_with_integrating_input():
    path = LAVA_DL / "slayer_conv.net"
    net = read_netx(path)
    # integrating input neurons become an identity layer, one step later than netx's input block
    assert net.meta[TIME_OFFSET_KEY] == 1 and isinstance(net.layers[0].synapse, SumPool2d)
    assert net.input_shape == (2, 6, 6) and net.shapes[-1] == (5,)
    netx_equals_sim(path, net, spikes(np.random.default_rng(5), (2, 16, 2, 6, 6), 0.6))


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
        # pass-through input neurons (also vDecay = 4096, accepted for input neurons with vThMant <= 63)
        dict(type="input", shape=np.array([12]), neuron=cuba(iDecay=4096, vDecay=4096, vThMant=0),
             weight=np.float32(2.0), bias=np.float32(7.0)),  # netx never applies these
        dict(type="dense", shape=np.array([10]), weight=odd_small.astype(np.float32), delay=np.zeros(10),
             bias=np.array([4095.9, -4096.7] + [0.0] * 8), neuron=cuba(iDecay=1, vDecay=0, vThMant=150)),
        # vThMant at its maximum: only a saturated v (2**23 - 1 > 131071 << 6) spikes; bias 8190 << 6
        dict(type="dense", shape=np.array([8]), weight=excit, bias=np.full(8, 8190),
             neuron=cuba(iDecay=4096, vDecay=0, vThMant=131071)),
        dict(type="dense", shape=np.array([6]), weight=nonpos, bias=np.full(6, 3000),
             neuron=cuba(iDecay=4096, vDecay=4095, vThMant=20)),
        dict(type="dense", shape=np.array([4]), weight=extreme.reshape(-1).astype(np.float64),  # 1-d: netx reshapes
             neuron=cuba(iDecay=2048, vDecay=100, vThMant=0)),
    ])
    net = read_netx(path)
    assert net.meta[TIME_OFFSET_KEY] == 0 and len(net.layers) == 4
    assert int(net.layers[1].neurons.vth) == 131071 and int(net.layers[0].neurons.du) == 0
    assert np.array_equal(net.layers[0].synapse.effective_weight() >> 1, np.trunc(odd_small).astype(int))
    quirk = net.layers[2].synapse
    assert quirk.effective_weight()[0, 0] * 2.0 ** quirk.weight_exp == -127
    netx_equals_sim(path, net, spikes(rng, (2, 24, 12), 0.7))


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
    net = read_netx(path)
    conv = net.layers[0].synapse
    assert conv.weight.shape == (4, 4, 3, 3) and int(conv.weight_exp) == 2
    assert not conv.weight[:2, 2:].any() and not conv.weight[2:, :2].any()  # groups: block diagonal
    netx_equals_sim(path, net, spikes(rng, (2, 12, 4, 5, 5), 0.5))


# --- (4) refusals (no Lava runs) ------------------------------------------------------------------------

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


@pytest.mark.parametrize("net,match", [
    (one_dense([[2, 4], [6, 8]], du=np.array([1, 2])), "one du"),
    (one_dense([[2, 4]], bias_mant=3), "not a multiple of 64"),
    (one_dense([[2, 4]], bias_mant=4095, bias_exp=7), "13-bit"),
    (one_dense([[2, -6]], exp=-2), "floors the synaptic sum"),
    (one_dense([[200, 4]], exp=1), "cannot be written to netx"),
    (one_dense([[254, -256]], exp=1), "cannot be written to netx"),
    (one_dense([[0, 0]]), "all-zero"),
    (one_dense([[-64, -2]]), "power of two"),
])
def test_write_refusals(tmp_path, net, match):
    path = tmp_path / "refused.net"
    with pytest.raises(ValueError, match=match):
        write_netx(net, path)
    assert not path.exists()


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


@pytest.mark.parametrize("layers,match", [
    (dense_file(type="pool"), r"layer 1 \('pool'\).*not implement"),
    (dense_file(type="average"), r"layer 1 \('average'\)"),
    (dense_file(type="dense_rec"), r"layer 1 \('dense_rec'\).*recurrent"),
    (dense_file(type="foo"), r"layer 1 \('foo'\).*unknown"),
    (dense_file(type=None), r"layer 1: missing 'type'"),
    (dense_file(weight=None), r"missing 'weight'"),
    (dense_file(weight=np.ones((2, 4))), r"weight shape \(2, 4\) does not match"),
    (dense_file(weight=np.ones((3, 5))), "5 inputs but the previous layer has 4"),
    (dense_file(neuron=None), "non-leaky integrator"),
    (dense_file(neuron=dict(iDecay=0)), "iDecay = 0"),
    (dense_file(neuron=dict(iDecay=np.array([1, 2, 3]))), "one value per layer"),
    (dense_file(neuron=dict(vDecay=4096)), "vDecay = 4096"),
    (dense_file(neuron=dict(vThMant=131072)), "vThMant = 131072"),
    (dense_file(neuron=dict(messageBits=3)), "graded spikes"),
    (dense_file(neuron=dict(type="SDNN")), "'SDNN' is not supported"),
    (dense_file(delay=np.ones(3)), "synaptic delays"),
    (dense_file(weight=np.array([[253, -3, 0, 0]] * 3)), "odd mixed-sign"),
    (dense_file(weight=np.zeros((3, 4))), "all-zero"),
    (dense_file(weight=np.full((3, 4), 300)), "beyond netx's range"),
    (dense_file(bias=np.ones(5)), "bias has 5 values for 3 neurons"),
    (dense_file(bias=np.full(3, 9001)), "cannot be written as a 13-bit mantissa"),
    (dense_file(**{"0__shape": np.array([2, 2])}), r"input shape \(2, 2\)"),
    (dense_file()[1:], None),  # no input layer: fine (shape from the weights)
    ([dense_file()[0]], "no layers"),
    ([CONV[0], {**CONV[1], "dilation": np.array([2, 2])}], "dilation"),
    ([CONV[0], {k: v for k, v in CONV[1].items() if k != "groups"}], "missing 'groups'"),
    ([CONV[0], {**CONV[1], "shape": np.array([2, 3, 3])}], "declared shape"),
    ([CONV[1]], "needs a \\(C, H, W\\) input"),
    ([CONV[0], CONV[1], dict(type="dense", shape=np.array([2]), weight=np.ones((2, 8)), neuron=cuba())],
     "needs a 'flatten'"),
])
def test_read_refusals(tmp_path, layers, match):
    path = write_h5(tmp_path / "bad.net", layers)
    if match is None:
        assert read_netx(path).input_shape == (4,)
        return
    with pytest.raises(ValueError, match=match) as err:
        read_netx(path)
    assert str(path) in str(err.value)


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
