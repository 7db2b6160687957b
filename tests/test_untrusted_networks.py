"""Network files from elsewhere (issue 10's defects, one test each): ``.npz`` integer records, NIR and
netx files, and the convolution sums Lava cannot define. The seeded fuzzing of the same readers is in
tests/test_fuzz_inputs.py.
"""
import io
import json
import os
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from spikeport.export.hdf5file import read_hdf5
from spikeport.export.netx import read_netx, write_netx
from spikeport.export.nir import META_KEY, read_graph, read_nir, write_nir_graph
from spikeport.sim.graph import Input, IntGraph, NeuronGroup, Output, load_record
from spikeport.sim.network import Conv2d, Dense, Neurons
from spikeport.sim.simulator import simulate
from spikeport.targets.lava import run_lava

HANG = Path(__file__).parent / "data" / "untrusted" / "hang.nir"


def small_graph(dv: int = 200, exp: int = 1):
    """in -> fc (Dense) -> g (LIF neurons: du = 4095; dv = 0 is a neuron without leak) -> y."""
    w = np.random.default_rng(3).integers(-100, 100, (4, 6)) * 2
    nodes = {"in": Input((6,)), "fc": Dense(w, weight_exp=exp), "g": NeuronGroup((4,), Neurons(du=4095, dv=dv, vth=30)),
             "y": Output()}
    return IntGraph(nodes, [("in", "fc"), ("fc", "g"), ("g", "y")], dt=1e-3)


def npy_member(arr, shape=None) -> bytes:
    """A .npy member whose header may declare another ``shape`` than the data it holds."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(arr.dtype),
                                               "fortran_order": False, "shape": shape or arr.shape})
    buf.write(arr.tobytes())
    return buf.getvalue()


def rewrite_npz(src, dst, change, compression=zipfile.ZIP_DEFLATED):
    """Copy the arrays of ``src`` into ``dst``; ``change(name, array) -> member bytes or None``."""
    with np.load(src) as data:
        arrays = {k: data[k] for k in data.files}
    with zipfile.ZipFile(dst, "w", compression) as zf:
        for name, arr in arrays.items():
            zf.writestr(name + ".npy", change(name, arr) or npy_member(arr))


# --- .npz integer records ------------------------------------------------------------------------

def test_npz_declaring_24_gb_in_a_few_hundred_bytes_is_refused_before_allocating(tmp_path):
    small_graph().save(tmp_path / "g.npz")
    rewrite_npz(tmp_path / "g.npz", tmp_path / "lie.npz",
                lambda name, a: npy_member(a, (3_000_000_000,)) if name.endswith("weight") else None)
    assert (tmp_path / "lie.npz").stat().st_size < 5000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"lie\.npz.*'n1\.weight' declares shape \(3000000000,\)"):
            load_record(tmp_path / "lie.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # nothing near the declared 24 GB (numpy reports its allocations to tracemalloc)


def test_npz_zip_directory_claiming_more_than_deflate_can_produce_is_refused(tmp_path):
    small_graph().save(tmp_path / "g.npz")
    blob = bytearray((tmp_path / "g.npz").read_bytes())
    with zipfile.ZipFile(tmp_path / "g.npz") as zf:
        info, directory = zf.getinfo("n1.weight.npy"), zf.start_dir
    # the member's central directory entry (its name follows 46 bytes of fields): uncompressed size -> 2**31
    entry = blob.index(b"n1.weight.npy", directory) - 46
    assert blob[entry:entry + 4] == b"PK\x01\x02" and int.from_bytes(blob[entry + 24:entry + 28], "little") == info.file_size
    blob[entry + 24:entry + 28] = (2 ** 31).to_bytes(4, "little")
    (tmp_path / "bomb.npz").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"bomb\.npz.*'n1\.weight\.npy' declares 2147483648 bytes from \d+ compressed"):
        load_record(tmp_path / "bomb.npz")


def test_npz_damage_found_while_decompressing_is_a_one_line_refusal(tmp_path):
    small_graph().save(tmp_path / "g.npz")
    blob = bytearray((tmp_path / "g.npz").read_bytes())
    with zipfile.ZipFile(tmp_path / "g.npz") as zf:
        info = zf.getinfo("n1.weight.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    blob[start + info.compress_size // 2] ^= 0x55  # inside the deflate stream: zlib error or CRC mismatch
    (tmp_path / "bad.npz").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"bad\.npz.*member 'n1\.weight' is damaged") as err:
        load_record(tmp_path / "bad.npz")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("dtype,value,match", [
    (np.uint64, 2 ** 64 - 2, "weight = 18446744073709551614 outside"),   # as int64: -2, in range
    (np.float64, 2.0 ** 64, "weight = 1.84467e\\+19 outside"),
    (np.float64, np.nan, "weight must be integers, got nan"),
])
def test_npz_weights_are_range_checked_before_any_cast(tmp_path, dtype, value, match):
    small_graph().save(tmp_path / "g.npz")

    def change(name, a):
        if name.endswith("weight"):
            b = a.astype(dtype)
            b[0, 0] = value
            return npy_member(b)
    rewrite_npz(tmp_path / "g.npz", tmp_path / "w.npz", change)
    with pytest.raises(ValueError, match=match):
        load_record(tmp_path / "w.npz")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_npz_object_arrays_are_refused_and_never_unpickled(tmp_path):
    small_graph().save(tmp_path / "g.npz")
    marker = tmp_path / "marker"
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    rewrite_npz(tmp_path / "g.npz", tmp_path / "evil.npz", lambda name, a: buf.getvalue() if name.endswith("weight") else None)
    with zipfile.ZipFile(tmp_path / "evil.npz") as zf:  # the payload is live: unpickling it runs it
        np.lib.format.read_array(io.BytesIO(zf.read("n1.weight.npy")), allow_pickle=True)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ValueError, match="'n1.weight' has dtype object"):
        load_record(tmp_path / "evil.npz")
    assert not marker.exists()


# --- NIR -------------------------------------------------------------------------------------------

def our_nir(tmp_path, graph=None) -> Path:
    path = tmp_path / "g.nir"
    write_nir_graph(path, graph or small_graph())
    return path


def set_dataset(path, name, value):
    with h5py.File(path, "r+") as f:
        del f[name]
        f[name] = value


@pytest.mark.parametrize("field,value,match", [
    ("fc/weight", np.nan, "node 'fc': weight contains nan"),
    ("g/r", np.inf, "node 'g': r contains inf where its time constant is finite"),
    ("g/v_threshold", np.inf, "node 'g': v_threshold contains inf"),
    ("g/v_leak", -np.inf, "node 'g': v_leak contains -inf"),
    ("g/tau", np.nan, "node 'g': tau contains nan"),
    ("fc/weight", 1e35, "node 'fc': weight = 1e\\+35 beyond 1e\\+30"),
])
def test_nir_non_finite_or_huge_values_are_refused_naming_node_and_field(tmp_path, field, value, match):
    path = our_nir(tmp_path)
    node, name = field.split("/")
    with h5py.File(path, "r+") as f:
        a = f[f"node/nodes/{node}/{name}"][()].astype(np.float64)
    a.reshape(-1)[0] = value
    set_dataset(path, f"node/nodes/{node}/{name}", a)
    for read in (read_graph, read_nir):
        with pytest.raises(ValueError, match=match) as err:
            read(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_nir_uint64_and_damaged_integer_records_are_refused(tmp_path):
    path = our_nir(tmp_path)
    with h5py.File(path, "r+") as f:
        f["node/nodes/fc/weight"][...] = 0
        del f["node/nodes/fc/weight"]
        f["node/nodes/fc/weight"] = np.full((4, 6), 2 ** 64 - 1, dtype=np.uint64)
    with pytest.raises(ValueError, match="/node/nodes/fc/weight = 18446744073709551615 is beyond int64"):
        read_nir(path)  # refused before nir's constructors could cast it to a float
    for packed, match in [({"shape": [4, 6], "list": [2 ** 64 - 1] * 24}, "int64 integers"),  # (no wrap to -1)
                          ({"shape": [4, 6], "list": [1.5] * 24}, "holds 1.5"),                # (no truncation)
                          ({"shape": [4, 6], "list": [2] * 23}, "needs 24 values"),
                          ({"shape": [10 ** 6, 10 ** 6], "list": [2]}, "memory budget"),
                          ({"shape": [4, 6], "b64": "!!"}, "base64")]:
        path = our_nir(tmp_path)
        with h5py.File(path, "r") as f:
            record = json.loads(f[f"node/nodes/fc/metadata/{META_KEY}"][()])
        record["arrays"]["fc.weight"] = packed
        set_dataset(path, "node/nodes/fc/metadata/spikeport", json.dumps(record))
        with pytest.raises(ValueError, match=f"node 'fc': record field 'arrays.fc.weight'.*{match}"):
            read_nir(path)


def test_nir_non_leaky_neurons_keep_their_infinite_time_constants_and_read_exactly(tmp_path):
    graph = small_graph(dv=0)  # no leak: written as tau = r = inf
    path = our_nir(tmp_path, graph)
    with h5py.File(path, "r") as f:
        assert np.isinf(f["node/nodes/g/tau"][()]).all() and np.isinf(f["node/nodes/g/r"][()]).all()
    back, info = read_nir(path)
    x = (np.random.default_rng(0).random((2, 8, 6)) < 0.5).astype(np.int8)
    assert info["source"] == "spikeport metadata"
    assert np.array_equal(simulate(graph, x).output, simulate(back, x).output)


def test_a_nir_file_that_hangs_libhdf5_is_refused_within_the_read_timeout(monkeypatch):
    """``hang.nir``: one of our files with 23 flipped bits, on which h5py never returns."""
    code = "import sys, nir; nir.read(sys.argv[1])"
    with pytest.raises(subprocess.TimeoutExpired):  # the fixture does hang a plain nir.read
        subprocess.run([sys.executable, "-c", code, str(HANG)], timeout=10, capture_output=True)
    monkeypatch.setenv("SPIKEPORT_READ_TIMEOUT", "2")
    for read in (read_graph, read_nir, read_netx):
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=r"hang\.nir.*longer than 2 s \(SPIKEPORT_READ_TIMEOUT\)") as err:
            read(HANG)
        assert time.perf_counter() - t0 < 10 and "\n" not in str(err.value)
    monkeypatch.setenv("SPIKEPORT_READ_TIMEOUT", "0")
    with pytest.raises(ValueError, match="SPIKEPORT_READ_TIMEOUT must be a finite number > 0"):
        read_graph(HANG)


def test_hdf5_reader_refuses_links_to_other_files_and_oversized_declarations(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["secret"] = np.arange(3)
    with h5py.File(tmp_path / "link.h5", "w") as f:
        f["x"] = h5py.ExternalLink(str(other), "/secret")
    with pytest.raises(ValueError, match="link.h5: /x: a soft or external link"):
        read_hdf5(tmp_path / "link.h5")
    with h5py.File(tmp_path / "big.h5", "w") as f:  # 16 TB declared, nothing written: a tiny file
        f.create_dataset("w", shape=(2 ** 21, 2 ** 21), dtype=np.float32, chunks=(64, 64))
    assert (tmp_path / "big.h5").stat().st_size < 100_000
    with pytest.raises(ValueError, match="big.h5: /w: the file's data exceeds the \\d+-byte memory budget"):
        read_hdf5(tmp_path / "big.h5")
    with h5py.File(tmp_path / "compound.h5", "w") as f:
        f["c"] = np.zeros(3, dtype=[("a", "i4"), ("b", "f4")])
    with pytest.raises(ValueError, match="compound.h5: /c: type"):
        read_hdf5(tmp_path / "compound.h5")


# --- netx ------------------------------------------------------------------------------------------

def test_netx_uint64_weights_beyond_int64_are_refused_not_wrapped(tmp_path):
    path = tmp_path / "n.net"
    write_netx(small_graph(exp=0), path)
    with h5py.File(path, "r+") as f:
        w = f["layer/1/weight"][()]  # layer 0: the input's shape
        del f["layer/1/weight"]
        f["layer/1/weight"] = np.where(w == w.flat[0], np.uint64(2 ** 64 - 2), np.abs(w).astype(np.uint64))
    with pytest.raises(ValueError, match=r"n\.net: layer 1 .*'weight' = 18446744073709551614 is beyond int64"):
        read_netx(path)


# --- convolution sums beyond int32 -------------------------------------------------------------------

def conv_graph(c_in: int, k: int, w: int, exp: int) -> IntGraph:
    nodes = {"in": Input((c_in, k, k)), "c": Conv2d(np.full((1, c_in, k, k), w), weight_exp=exp),
             "g": NeuronGroup((1, 1, 1), Neurons(du=4095, dv=0, vth=131071)), "y": Output()}
    return IntGraph(nodes, [("in", "c"), ("c", "g"), ("g", "y")])


def test_conv_sums_beyond_2_pow_24_equal_lava_exactly():
    # 64 x 3 x 3 taps of 255 << 7: a sum of 18,800,640 > 2**24, wrapped to 24 bits by Lava as here
    graph = conv_graph(64, 3, 255, 7)
    x = np.ones((1, 3, 64, 3, 3), dtype=np.int8)
    x[0, 2, :32] = 0
    ours, lava = simulate(graph, x, record=True), run_lava(graph, x, record=True)
    assert 64 * 9 * (255 << 7) > 2 ** 24
    for what in ("u", "v", "spikes"):
        assert int(np.count_nonzero(getattr(ours, what)["g"] != getattr(lava, what)["g"])) == 0, what
    assert ours.u["g"][0, 1, 0] != 0


def test_conv_sums_beyond_int32_are_refused_naming_the_node_as_lava_has_no_defined_result():
    # 260 x 16 x 16 taps of 255 << 7: 2,172,518,400 > 2**31 - 1
    graph = conv_graph(260, 16, 255, 7)
    x = np.ones((1, 2, 260, 16, 16), dtype=np.int8)
    with pytest.raises(ValueError, match="node 'c': convolution sums can reach 2172518400, beyond int32"):
        simulate(graph, x)
    # what Lava does: its float sum cast to int32 is out of range (undefined in C; -2**31 on x86-64),
    # so the neuron receives 0 instead of the sum's 24-bit wrap
    total = 260 * 256 * (255 << 7)
    wrapped = (total + 2 ** 23) % 2 ** 24 - 2 ** 23
    lava = run_lava(graph, x, record=True)
    assert wrapped != 0 and lava.u["g"][0, 1, 0] == 0
    # 767 taps fewer, the largest sum is 2**31 - 1 - 32,127: within int32, simulated
    w = np.full((1, 260, 16, 16), 255)
    w.reshape(-1)[:767] = 0
    assert (w.sum() << 7) <= 2 ** 31 - 1
    graph = IntGraph({**graph.nodes, "c": Conv2d(w, weight_exp=7)}, graph.edges)
    assert simulate(graph, x, record=True).u["g"][0, 1, 0] != 0
