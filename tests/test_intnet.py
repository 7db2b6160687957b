"""Tests for sim.network (IntNetwork): validation messages, shapes, per-neuron expansion, persistence."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from spikeport.sim import formats as F
from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons, SumPool2d


def _dense(rng, n_out, n_in, lo=-100, hi=100, **kw):
    return Dense(rng.integers(lo, hi, (n_out, n_in)), **kw)


def _good_two_layer(neurons1=None, syn1=None, name1="fc2"):
    rng = np.random.default_rng(0)
    return IntNetwork((6,), (
        Layer(_dense(rng, 5, 6), Neurons(vth=10), name="fc1"),
        Layer(syn1 if syn1 is not None else _dense(rng, 4, 5), neurons1 or Neurons(vth=10), name=name1),
    ))


# ------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("field,value,fmt", [
    ("du", 5000, F.DU), ("dv", 4097, F.DV), ("vth", -1, F.VTH), ("bias_mant", 5000, F.BIAS_MANT),
    ("bias_mant", -4097, F.BIAS_MANT), ("bias_exp", 8, F.BIAS_EXP)])
def test_bad_neuron_register_names_layer_field_value_and_range(field, value, fmt):
    with pytest.raises(ValueError) as err:
        _good_two_layer(neurons1=Neurons(**{field: value}))
    msg = str(err.value)
    assert "layer 1" in msg and "(fc2)" in msg
    assert f"{field} = {value}" in msg
    assert f"[{fmt.min}, {fmt.max}]" in msg


def test_bad_register_inside_a_per_neuron_array_is_named():
    vth = np.array([1, 2, 200_000, 4])
    with pytest.raises(ValueError, match=r"layer 1 .*vth = 200000 .*\[0, 131071\]"):
        _good_two_layer(neurons1=Neurons(vth=vth))


def test_bad_dense_weight():
    w = np.zeros((4, 5), dtype=np.int64)
    w[2, 3] = 300
    with pytest.raises(ValueError) as err:
        _good_two_layer(syn1=Dense(w))
    msg = str(err.value)
    assert "layer 1" in msg and "weight = 300" in msg and "[-256, 255]" in msg


def test_non_integer_weight_is_rejected():
    with pytest.raises(ValueError, match=r"layer 1.*weight must be integers.*0\.5"):
        _good_two_layer(syn1=Dense(np.full((4, 5), 0.5)))


@pytest.mark.parametrize("exp", [-9, 8])
def test_bad_dense_weight_exp(exp):
    with pytest.raises(ValueError, match=rf"layer 1.*weight_exp = {exp} .*\[-8, 7\]"):
        _good_two_layer(syn1=Dense(np.ones((4, 5), dtype=np.int64), weight_exp=exp))


def test_bad_num_weight_bits_and_sign_mode():
    with pytest.raises(ValueError, match=r"layer 1.*num_weight_bits = 9"):
        _good_two_layer(syn1=Dense(np.ones((4, 5), dtype=np.int64), num_weight_bits=9))
    with pytest.raises(ValueError, match=r"layer 1.*sign_mode.*'both'"):
        _good_two_layer(syn1=Dense(np.ones((4, 5), dtype=np.int64), sign_mode="both"))


def test_dense_input_size_mismatch():
    with pytest.raises(ValueError) as err:
        _good_two_layer(syn1=Dense(np.ones((4, 7), dtype=np.int64)))
    msg = str(err.value)
    assert "layer 1" in msg and "7 inputs" in msg and "(5,)" in msg


def test_dense_weight_must_be_two_dimensional():
    with pytest.raises(ValueError, match=r"layer 1.*2-d"):
        _good_two_layer(syn1=Dense(np.ones((4, 5, 1), dtype=np.int64)))


def test_conv_channel_mismatch_and_negative_exponent():
    with pytest.raises(ValueError) as err:
        IntNetwork((2, 6, 6), (Layer(Conv2d(np.ones((4, 3, 3, 3), dtype=np.int64)), Neurons()),))
    msg = str(err.value)
    assert "layer 0" in msg and "3 input channels" in msg and "(2, 6, 6)" in msg
    with pytest.raises(ValueError, match=r"layer 0.*weight_exp = -1 must be >= 0"):
        IntNetwork((2, 6, 6), (Layer(Conv2d(np.ones((4, 2, 3, 3), dtype=np.int64), weight_exp=-1), Neurons()),))
    with pytest.raises(ValueError, match=r"layer 0.*does not fit"):
        IntNetwork((2, 2, 2), (Layer(Conv2d(np.ones((4, 2, 3, 3), dtype=np.int64)), Neurons()),))
    with pytest.raises(ValueError, match=r"layer 0.*\(C_out, C_in, kH, kW\)"):
        IntNetwork((2, 6, 6), (Layer(Conv2d(np.ones((4, 2, 3), dtype=np.int64)), Neurons()),))


def test_pool_needs_feature_map_and_fitting_kernel():
    with pytest.raises(ValueError, match=r"layer 0.*\(C, H, W\)"):
        IntNetwork((8,), (Layer(SumPool2d(2), Neurons()),))
    with pytest.raises(ValueError, match=r"layer 0.*does not fit"):
        IntNetwork((1, 3, 3), (Layer(SumPool2d(4), Neurons()),))
    with pytest.raises(ValueError, match=r"layer 0.*>= 1"):
        IntNetwork((1, 3, 3), (Layer(SumPool2d(0), Neurons()),))


def test_wrong_per_neuron_length():
    with pytest.raises(ValueError) as err:
        _good_two_layer(neurons1=Neurons(du=np.array([1, 2, 3])))
    msg = str(err.value)
    assert "layer 1" in msg and "du has 3 values" in msg and "1, 4" in msg
    # feature maps also accept one value per channel, and say so
    with pytest.raises(ValueError, match=r"layer 0.*bias_mant has 5 values.*or 3 \(per channel\)"):
        IntNetwork((1, 4, 4), (Layer(Conv2d(np.ones((3, 1, 3, 3), dtype=np.int64)),
                                     Neurons(bias_mant=np.arange(5))),))


def test_network_level_errors():
    with pytest.raises(ValueError, match="at least one layer"):
        IntNetwork((3,), ())
    with pytest.raises(ValueError, match="dt"):
        IntNetwork((3,), (Layer(Dense(np.ones((2, 3), dtype=np.int64)), Neurons()),), dt=0.0)


# ----------------------------------------------------------------------------------- shapes

def _torch_shape(in_shape, c_out, k, stride, padding):
    x = torch.zeros((1, *in_shape))
    w = torch.zeros((c_out, in_shape[0], *k))
    return tuple(TF.conv2d(x, w, stride=stride, padding=padding).shape[1:])


@pytest.mark.parametrize("in_shape,c_out,k,stride,padding", [
    ((2, 9, 9), 4, (3, 3), (1, 1), (0, 0)), ((2, 9, 8), 3, (3, 2), (2, 1), (1, 0)),
    ((1, 7, 7), 5, (2, 2), (3, 3), (2, 2)), ((3, 5, 6), 2, (5, 1), (1, 2), (2, 1))])
def test_conv_shapes_match_torch(in_shape, c_out, k, stride, padding):
    w = np.ones((c_out, in_shape[0], *k), dtype=np.int64)
    net = IntNetwork(in_shape, (Layer(Conv2d(w, stride=stride, padding=padding), Neurons()),))
    out = _torch_shape(in_shape, c_out, k, stride, padding)
    assert net.shapes == (tuple(in_shape), out)
    assert net.output_size == math.prod(out)


def test_chain_shapes_dense_conv_pool():
    rng = np.random.default_rng(1)
    net = IntNetwork((2, 11, 10), (
        Layer(Conv2d(rng.integers(-5, 5, (4, 2, 3, 3)), stride=(2, 1), padding=(1, 1)), Neurons()),
        Layer(SumPool2d(2), Neurons()),
        Layer(Dense(rng.integers(-5, 5, (7, 4 * 3 * 5))), Neurons()),
        Layer(Dense(rng.integers(-5, 5, (3, 7))), Neurons()),
    ))
    c1 = _torch_shape((2, 11, 10), 4, (3, 3), (2, 1), (1, 1))
    assert c1 == (4, 6, 10)
    pool = tuple(TF.avg_pool2d(torch.zeros((1, *c1)), 2).shape[1:])
    assert net.shapes == ((2, 11, 10), c1, pool, (7,), (3,))
    assert net.output_size == 3


def test_sum_pool_floors_odd_sizes_and_is_a_diagonal_unit_conv():
    net = IntNetwork((3, 7, 5), (Layer(SumPool2d(2), Neurons()),))
    assert net.shapes[1] == (3, 7 // 2, 5 // 2)
    conv = SumPool2d(3).as_conv(4)
    w = np.asarray(conv.weight)
    assert w.shape == (4, 4, 3, 3) and conv.stride == (3, 3) and conv.padding == (0, 0)
    for i in range(4):
        for j in range(4):
            assert np.all(w[i, j] == (1 if i == j else 0))


# ------------------------------------------------------------------------------- expansion

def test_neurons_expand_per_layer_channel_neuron():
    shape = (3, 2, 4)
    n = math.prod(shape)
    per_channel = np.array([10, 20, 30])
    per_neuron = np.arange(n) * 7
    nr = Neurons(du=5, dv=per_channel, vth=per_neuron, bias_mant=np.array([-3]), bias_exp=2)
    IntNetwork((1, 2, 4), (Layer(Conv2d(np.ones((3, 1, 1, 1), dtype=np.int64)), nr),))  # valid
    assert nr.expand("du", shape).tolist() == [5] * n
    # per channel: channel c for all H*W positions, C-order flatten of (C, H, W)
    expected = np.broadcast_to(per_channel[:, None, None], shape).reshape(-1)
    assert nr.expand("dv", shape).tolist() == expected.tolist()
    assert nr.expand("vth", shape).tolist() == per_neuron.tolist()
    assert nr.expand("bias_mant", shape).tolist() == [-3] * n
    for name in Neurons.FIELDS:
        assert nr.expand(name, shape).dtype == np.int64
    assert nr.is_shared("du") and nr.is_shared("bias_mant") and not nr.is_shared("dv")
    assert Neurons(vth=np.full(4, 9)).is_shared("vth")


# ------------------------------------------------------------------------------ persistence

def _rich_network():
    rng = np.random.default_rng(2)
    return IntNetwork((2, 8, 7), (
        Layer(Conv2d(rng.integers(-256, 256, (3, 2, 3, 2)), stride=(2, 1), padding=(1, 0), weight_exp=1),
              Neurons(du=np.array([0, 100, 4095]), dv=17, vth=rng.integers(0, 131072, 3 * 4 * 6),
                      bias_mant=rng.integers(-4096, 4096, 3), bias_exp=np.array([0, 3, 7])), name="conv0"),
        Layer(SumPool2d(2), Neurons(du=4095, dv=4095, vth=1), name="pool1"),
        Layer(Dense(rng.integers(-256, 256, (5, 3 * 2 * 3)), weight_exp=-3, num_weight_bits=6, sign_mode="mixed"),
              Neurons(du=rng.integers(0, 4096, 5), dv=rng.integers(0, 4096, 5), vth=300,
                      bias_mant=rng.integers(-4096, 4096, 5), bias_exp=rng.integers(0, 8, 5))),
        Layer(Dense(rng.integers(0, 256, (2, 5))), Neurons(vth=0), name="out"),
    ), dt=1e-3, meta={"source": "test", "report": [{"layer": 0, "scale": 1.5}], "note": "ü"})


def test_save_load_round_trip(tmp_path):
    net = _rich_network()
    path = tmp_path / "net.npz"
    net.save(path)
    back = IntNetwork.load(path)
    assert back.input_shape == net.input_shape and back.shapes == net.shapes
    assert back.dt == net.dt and back.meta == net.meta
    assert len(back.layers) == len(net.layers)
    for a, b in zip(net.layers, back.layers):
        assert a.name == b.name
        assert type(a.synapse) is type(b.synapse)
        sa, sb = a.synapse, b.synapse
        if isinstance(sa, SumPool2d):
            assert sa.kernel == sb.kernel
        else:
            assert np.array_equal(sa.weight, sb.weight) and sa.weight.shape == sb.weight.shape
            assert int(sa.weight_exp) == int(sb.weight_exp)
        if isinstance(sa, Dense):
            assert (sa.num_weight_bits, sa.sign_mode) == (sb.num_weight_bits, sb.sign_mode)
            assert np.array_equal(sa.effective_weight(), sb.effective_weight())
        if isinstance(sa, Conv2d):
            assert tuple(sa.stride) == tuple(sb.stride) and tuple(sa.padding) == tuple(sb.padding)
        for name in Neurons.FIELDS:
            va = np.asarray(getattr(a.neurons, name))
            vb = np.asarray(getattr(b.neurons, name))
            assert va.shape == vb.shape and np.array_equal(va, vb), name
    # saving the loaded network gives the same content again
    path2 = tmp_path / "again.npz"
    back.save(path2)
    d1, d2 = np.load(path), np.load(path2)
    assert sorted(d1.files) == sorted(d2.files)
    for k in d1.files:
        assert np.array_equal(d1[k], d2[k]), k


def test_load_rejects_garbage_and_foreign_files(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all")
    with pytest.raises(ValueError, match="not a spikeport integer network file"):
        IntNetwork.load(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.ones(3))
    with pytest.raises(ValueError, match="not a spikeport integer network file"):
        IntNetwork.load(foreign)
    other = tmp_path / "other.npz"
    np.savez(other, header=np.frombuffer(json.dumps({"format": "something.else"}).encode(), dtype=np.uint8))
    with pytest.raises(ValueError, match="not a spikeport integer network file"):
        IntNetwork.load(other)
    with pytest.raises(ValueError, match="not a spikeport integer network file"):
        IntNetwork.load(tmp_path / "missing.npz")


def test_load_rejects_newer_format(tmp_path):
    path = tmp_path / "new.npz"
    _good_two_layer().save(path)
    data = dict(np.load(path))
    header = json.loads(bytes(data["header"]).decode())
    header["version"] = 99
    data["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **data)
    with pytest.raises(ValueError, match="newer"):
        IntNetwork.load(path)


def test_damaged_spikeport_files_raise_value_error(tmp_path):
    for header in ([1, 2], {"format": "spikeport.intnet", "version": 1}):
        p = tmp_path / "bad.npz"
        np.savez(p, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
        with pytest.raises(ValueError, match="bad.npz"):
            IntNetwork.load(p)
