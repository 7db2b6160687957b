"""Tests for train.datasets, using tiny files written in the real formats."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from spikeport.train.datasets import (
    EVENT_DTYPE,
    DatasetError,
    load_cifar10,
    load_dataset,
    load_digits,
    load_mnist,
    load_nmnist,
    read_idx,
    read_nmnist_events,
    write_nmnist_events,
)

# ----------------------------------------------------------------- file writers


def idx_bytes(array, code=0x08):
    """Encode an array as IDX: 0x0000, dtype code, ndim, big-endian uint32 dims, big-endian data."""
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.asarray(array, dtype=dtype).tobytes()


def write_idx(path, array, code=0x08, compress=None):
    data = idx_bytes(array, code)
    compress = path.suffix == ".gz" if compress is None else compress
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def make_mnist_dir(root, n_train=5, n_test=3, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
        out[prefix] = images, labels
    return out


def random_events(rng, n):
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, 34, n)
    events["y"] = rng.integers(0, 34, n)
    events["p"] = rng.integers(0, 2, n)
    events["t"] = np.sort(rng.integers(0, 1 << 23, n))
    return events


def write_cifar_batch(path, data, labels):
    with path.open("wb") as f:
        pickle.dump({b"batch_label": b"fake", b"data": data, b"labels": list(labels)}, f)


# ------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip_images_and_labels(tmp_path, suffix):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=4, dtype=np.uint8)
    got_images = read_idx(write_idx(tmp_path / f"img{suffix}", images))
    got_labels = read_idx(write_idx(tmp_path / f"lab{suffix}", labels))
    assert got_images.dtype == np.uint8 and got_images.shape == (4, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_idx_gzip_detected_by_magic_not_suffix(tmp_path):
    labels = np.arange(7, dtype=np.uint8)
    path = write_idx(tmp_path / "labels-idx1-ubyte", labels, compress=True)
    np.testing.assert_array_equal(read_idx(path), labels)


def test_idx_big_endian_multibyte_dtypes(tmp_path):
    values = np.array([[-300, 2], [1000, -1]], dtype=np.int16)
    floats = np.array([1.5, -2.25, 3e6], dtype=np.float32)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a", values, code=0x0B)), values)
    got = read_idx(write_idx(tmp_path / "b", floats, code=0x0D))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, floats)


@pytest.mark.parametrize("magic", [b"\x08\x03\x08\x01", b"\x00\x00\x07\x01"])
def test_idx_bad_magic(tmp_path, magic):
    path = tmp_path / "bad-idx"
    path.write_bytes(magic + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DatasetError, match="magic"):
        read_idx(path)


def test_idx_truncated_names_path_and_sizes(tmp_path):
    data = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))
    path = tmp_path / "short-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(data[:-10]))
    with pytest.raises(DatasetError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and "truncated" in message
    assert str(3 * 28 * 28) in message and str(3 * 28 * 28 - 10) in message


def test_idx_trailing_garbage_and_corrupt_gzip_and_missing(tmp_path):
    garbage = tmp_path / "garbage"
    garbage.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)) + b"xx")
    with pytest.raises(DatasetError, match="trailing"):
        read_idx(garbage)
    corrupt = tmp_path / "corrupt.gz"
    corrupt.write_bytes(gzip.compress(idx_bytes(np.zeros(100, dtype=np.uint8)))[:-12])
    with pytest.raises(DatasetError, match="gzip"):
        read_idx(corrupt)
    with pytest.raises(DatasetError, match="not found"):
        read_idx(tmp_path / "nope")


# ----------------------------------------------------------------------- MNIST


def test_load_mnist_tiny(tmp_path):
    written = make_mnist_dir(tmp_path)
    for split, prefix, n in (("train", "train", 5), ("test", "t10k", 3)):
        data = load_mnist(tmp_path, split)
        images, labels = written[prefix]
        assert data.name == f"mnist/{split}" and data.kind == "image" and data.n_classes == 10
        assert data.input_shape == (1, 28, 28) and len(data) == n
        assert data.inputs.dtype == torch.float32 and data.inputs.shape == (n, 1, 28, 28)
        assert data.labels.dtype == torch.int64
        torch.testing.assert_close(data.inputs[:, 0], torch.from_numpy(images).float() / 255)
        assert data.labels.tolist() == labels.tolist()


def test_load_mnist_raw_and_dotted_names(tmp_path):
    images = np.full((2, 28, 28), 255, dtype=np.uint8)
    write_idx(tmp_path / "t10k-images.idx3-ubyte", images)
    write_idx(tmp_path / "t10k-labels.idx1-ubyte", np.array([3, 9], dtype=np.uint8))
    data = load_mnist(tmp_path, "test")
    assert data.labels.tolist() == [3, 9]
    assert torch.all(data.inputs == 1.0)


def test_load_mnist_count_mismatch(tmp_path):
    make_mnist_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DatasetError, match="5 images but .* 4 labels"):
        load_mnist(tmp_path, "train")


def test_load_mnist_bad_labels_and_shape(tmp_path):
    make_mnist_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1, 10, 2], dtype=np.uint8))
    with pytest.raises(DatasetError, match="0..9"):
        load_mnist(tmp_path, "test")
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 27), dtype=np.uint8))
    with pytest.raises(DatasetError, match="28, 28"):
        load_mnist(tmp_path, "train")


def test_load_mnist_missing_dir_lists_expected_files(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_mnist(tmp_path / "missing", "train")
    message = str(info.value)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert name in message


# --------------------------------------------------------------------- N-MNIST


def test_nmnist_round_trip_all_timestamp_bits(tmp_path):
    events = random_events(np.random.default_rng(2), 500)
    events["t"][-1] = (1 << 23) - 1
    assert events["t"].max() > 1 << 16
    path = tmp_path / "sample.bin"
    write_nmnist_events(path, events)
    assert path.stat().st_size == 5 * len(events)
    got = read_nmnist_events(path)
    assert got.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(got, events)


def test_nmnist_decode_hand_encoded_bytes(tmp_path):
    # x=12, y=33, polarity on, t=0x5A1B2C (23 bits): byte2 = 0x80 | 0x5A.
    # x=0, y=1, polarity off, t=70000 = 0x011170.
    path = tmp_path / "hand.bs2"
    path.write_bytes(bytes([12, 33, 0x80 | 0x5A, 0x1B, 0x2C, 0, 1, 0x01, 0x11, 0x70]))
    got = read_nmnist_events(path)
    assert got["x"].tolist() == [12, 0]
    assert got["y"].tolist() == [33, 1]
    assert got["p"].tolist() == [1, 0]
    assert got["t"].tolist() == [0x5A1B2C, 70000]


def test_nmnist_truncated_and_corrupt(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(bytes(12))
    with pytest.raises(DatasetError) as info:
        read_nmnist_events(path)
    assert str(path) in str(info.value) and "12" in str(info.value)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes([1, 2, 0, 0, 0, 3, 40, 0, 0, 5]))
    with pytest.raises(DatasetError, match="event 1 has y=40"):
        read_nmnist_events(bad)
    with pytest.raises(DatasetError, match="not found"):
        read_nmnist_events(tmp_path / "none.bin")


def test_load_nmnist_list_layout(tmp_path):
    rng = np.random.default_rng(3)
    written = {}
    for sample_id, n in ((1, 10), (2, 3), (60001, 7)):
        written[sample_id] = random_events(rng, n)
        write_nmnist_events(tmp_path / f"{sample_id}.bs2", written[sample_id])
    write_nmnist_events(tmp_path / "4.bin", written[2])
    (tmp_path / "train3.txt").write_text("#sample #class\n1\t5\n2\t0\n4 9\n")
    (tmp_path / "test1.txt").write_text("#sample #class\n60001\t7\n")
    train = load_nmnist(tmp_path, "train")
    assert train.kind == "events" and train.input_shape == (2, 34, 34) and train.n_classes == 10
    assert len(train) == 3 and train.labels.tolist() == [5, 0, 9]
    np.testing.assert_array_equal(train.inputs[0], written[1])
    np.testing.assert_array_equal(train.inputs[2], written[2])
    test = load_nmnist(tmp_path, "test")
    assert test.labels.tolist() == [7] and len(test.inputs[0]) == 7


def test_load_nmnist_list_missing_event_file(tmp_path):
    (tmp_path / "train.txt").write_text("#sample #class\n8 1\n")
    with pytest.raises(DatasetError, match="8.bs2"):
        load_nmnist(tmp_path, "train")


def test_load_nmnist_folder_layout(tmp_path):
    rng = np.random.default_rng(4)
    counts = {"Train": {0: 2, 3: 1, 9: 2}, "Test": {1: 1, 2: 2}}
    for folder, per_class in counts.items():
        for label, n in per_class.items():
            (tmp_path / folder / str(label)).mkdir(parents=True)
            for k in range(n):
                write_nmnist_events(tmp_path / folder / str(label) / f"{k:05d}.bin", random_events(rng, 4 + k))
    train = load_nmnist(tmp_path, "train")
    assert train.labels.tolist() == [0, 0, 3, 9, 9]
    assert [len(e) for e in train.inputs] == [4, 5, 4, 4, 5]
    test = load_nmnist(tmp_path, "test")
    assert test.labels.tolist() == [1, 2, 2]


def test_load_nmnist_missing_layout_describes_both(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_nmnist(tmp_path, "train")
    assert "train*.txt" in str(info.value) and "Train/<class>" in str(info.value)


def test_events_split_batch_and_subset(tmp_path):
    rng = np.random.default_rng(5)
    for i in range(4):
        write_nmnist_events(tmp_path / f"{i}.bin", random_events(rng, i + 1))
    (tmp_path / "train.txt").write_text("#sample #class\n0 0\n1 1\n2 2\n3 3\n")
    data = load_nmnist(tmp_path, "train")
    inputs, labels = data.batch(torch.tensor([3, 1]))
    assert [len(e) for e in inputs] == [4, 2] and labels.tolist() == [3, 1]
    small = data.subset(2)
    assert len(small) == 2 and len(small.inputs) == 2 and small.labels.tolist() == [0, 1]


# -------------------------------------------------------------------- CIFAR-10


def test_load_cifar10_tiny(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(6)
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=4)
        write_cifar_batch(root / name, data, labels)
        batches.append((data, labels))
    train = load_cifar10(tmp_path, "train")
    assert train.inputs.shape == (20, 3, 32, 32) and train.input_shape == (3, 32, 32)
    assert train.labels.tolist() == np.concatenate([b[1] for b in batches[:5]]).tolist()
    # channel-major layout: first 1024 values are the red plane, row by row
    first = batches[0][0][0]
    torch.testing.assert_close(train.inputs[0, 0, 0, :], torch.from_numpy(first[:32]).float() / 255)
    torch.testing.assert_close(train.inputs[0, 1, 0, 0], torch.tensor(first[1024] / 255, dtype=torch.float32))
    test = load_cifar10(root, "test")
    assert len(test) == 4 and test.labels.tolist() == batches[5][1].tolist()
    assert 0.0 <= test.inputs.min() and test.inputs.max() <= 1.0


def test_load_cifar10_bad_shape_and_missing(tmp_path):
    write_cifar_batch(tmp_path / "test_batch", np.zeros((4, 3000), dtype=np.uint8), [0, 1, 2, 3])
    with pytest.raises(DatasetError, match="3072"):
        load_cifar10(tmp_path, "test")
    with pytest.raises(DatasetError, match="data_batch_1"):
        load_cifar10(tmp_path, "train")
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="test_batch"):
        load_cifar10(tmp_path, "test")


# ---------------------------------------------------------------------- digits


def test_load_digits_split():
    train, test = load_digits("train"), load_digits("test")
    assert len(train) + len(test) == 1797
    assert train.input_shape == (1, 8, 8) and train.inputs.shape == (len(train), 1, 8, 8)
    assert train.inputs.dtype == torch.float32
    assert 0.0 <= train.inputs.min() and train.inputs.max() == 1.0
    assert set(test.labels.tolist()) == set(range(10))
    # stratified: class proportions in test match the whole set to within one sample
    full = torch.cat([train.labels, test.labels]).bincount()
    assert torch.all((test.labels.bincount() - full * len(test) / 1797).abs() <= 1)
    again = load_digits("test")
    assert torch.equal(again.inputs, test.inputs) and torch.equal(again.labels, test.labels)
    other = load_digits("test", seed=1)
    assert not torch.equal(other.labels, test.labels)


def test_image_split_batch_and_subset():
    data = load_digits("train")
    inputs, labels = data.batch(np.array([5, 0, 5]))
    assert inputs.shape == (3, 1, 8, 8) and torch.equal(inputs[0], data.inputs[5])
    assert labels.tolist() == [data.labels[5].item(), data.labels[0].item(), data.labels[5].item()]
    assert len(data.subset(10)) == 10 and torch.equal(data.subset(10).inputs, data.inputs[:10])


# ----------------------------------------------------------------- load_dataset


def test_load_dataset_registry(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_dataset("imagenet", tmp_path)
    for name in ("digits", "mnist", "nmnist", "cifar10"):
        assert name in str(info.value)
    with pytest.raises(DatasetError, match="data_dir"):
        load_dataset("mnist")
    make_mnist_dir(tmp_path)
    assert len(load_dataset("mnist", tmp_path, "test")) == 3
    assert len(load_dataset("digits", split="test", test_fraction=0.5)) == 899


# ------------------------------------------------------------- untrusted files


class _RunsCode:
    """Unpickling this calls ``os.system`` (the classic malicious-pickle payload)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import os

        return os.system, (self.command,)


class _Evaluates:
    """Unpickling this calls ``eval`` on code that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",)


def _cifar_bytes(data, labels, protocol=4, extra=None):
    return pickle.dumps({b"batch_label": b"fake", b"data": data, b"labels": labels, **(extra or {})},
                        protocol=protocol)


@pytest.mark.parametrize("payload", ["labels", "extra", "top"])
def test_malicious_cifar_batch_runs_nothing(tmp_path, payload):
    marker = tmp_path / "marker"
    data = np.zeros((2, 3072), dtype=np.uint8)
    evil = _RunsCode(f"touch {marker}")
    blob = {"labels": lambda: _cifar_bytes(data, [0, evil]),
            "extra": lambda: _cifar_bytes(data, [0, 1], extra={b"filenames": evil}),
            "top": lambda: pickle.dumps(evil)}[payload]()
    (tmp_path / "test_batch").write_bytes(blob)
    with pytest.raises(DatasetError) as err:
        load_cifar10(tmp_path, "test")
    assert not marker.exists()
    message = str(err.value)
    assert str(tmp_path / "test_batch") in message and "system" in message and "\n" not in message


@pytest.mark.parametrize("evil", ["eval", "system", "masked", "set"])
def test_cifar_unpickler_admits_only_the_format_types(tmp_path, evil):
    marker = tmp_path / "marker"
    evil = {"eval": _Evaluates(marker), "system": _RunsCode(f"touch {marker}"),
            "masked": np.ma.masked_array([1, 2]),  # an ndarray subclass: numpy.ma.core names, refused
            "set": {1, 2}}[evil]  # protocol 2 spells a set as builtins.set
    (tmp_path / "test_batch").write_bytes(_cifar_bytes(np.zeros((1, 3072), np.uint8), [3], protocol=2,
                                                       extra={b"x": evil}))
    with pytest.raises(DatasetError, match="refused to unpickle"):
        load_cifar10(tmp_path, "test")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("labels", [[7, 1], "numpy-scalars", "array"])
def test_cifar_batches_of_every_protocol_load(tmp_path, protocol, labels):
    data = (np.arange(2 * 3072) % 251).astype(np.uint8).reshape(2, 3072)
    if labels == "numpy-scalars":
        labels = list(np.array([7, 1]))  # np.int64 values, as list(labels_array) gives
    elif labels == "array":
        labels = np.array([7, 1], dtype=np.int32)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": labels, "filenames": [b"a", b"b"]},
                                                       protocol=protocol))  # str keys, as python 3 writes
    split = load_cifar10(tmp_path, "test")
    assert split.labels.tolist() == [7, 1]
    np.testing.assert_array_equal((split.inputs * 255).round().numpy().astype(np.uint8).reshape(2, 3072), data)


@pytest.mark.parametrize("labels,match", [
    ([1.0, 2.0], "integers"),
    ([1, 2.7], "integers"),
    (np.array([1.0, 2.0]), "integers"),
    ([True, False], "integers"),
    (["1", "2"], "integers"),
    ([1, 10], "0..9"),
    ([-1, 2], "0..9"),
    ([1], "shape"),
    ({0: 1}, "list"),
])
def test_cifar_labels_must_be_integers_in_range(tmp_path, labels, match):
    (tmp_path / "test_batch").write_bytes(_cifar_bytes(np.zeros((2, 3072), np.uint8), labels))
    with pytest.raises(DatasetError, match=match) as err:
        load_cifar10(tmp_path, "test")
    assert str(tmp_path / "test_batch") in str(err.value)


def test_idx_gzip_bomb_is_refused_with_bounded_memory(tmp_path):
    """A header declaring 100 bytes, then 1 GiB of zeros (64 gzip members of 16 MiB each, 1 MB on
    disk): refused after reading 101 bytes, without decompressing the rest."""
    import time
    import tracemalloc

    member = gzip.compress(bytes(16 << 20), compresslevel=9)
    header = gzip.compress(idx_bytes(np.zeros(100, dtype=np.uint8)))
    path = tmp_path / "bomb-idx1-ubyte.gz"
    path.write_bytes(header + member * 64)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(DatasetError, match="trailing"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20 and time.perf_counter() - t0 < 5.0


def test_idx_declared_size_checked_before_allocating(tmp_path, monkeypatch):
    import tracemalloc

    import spikeport.train.datasets as ds

    huge = struct.pack(">HBB", 0, 0x0D, 3) + struct.pack(">3I", 60000, 28000, 28000)  # 188 GB of float32
    for name, blob in (("raw", huge + bytes(64)), ("packed.gz", gzip.compress(huge + bytes(64)))):
        (tmp_path / name).write_bytes(blob)
        tracemalloc.start()
        try:
            with pytest.raises(DatasetError, match="MEMORY_BUDGET_BYTES"):
                read_idx(tmp_path / name)
            assert tracemalloc.get_traced_memory()[1] < 1 << 20
        finally:
            tracemalloc.stop()
    # Within the budget but more than the file can hold: raw files by their size, gzip by deflate's ratio.
    small = struct.pack(">HBB", 0, 0x08, 1) + struct.pack(">I", 50 << 20)
    (tmp_path / "short").write_bytes(small + bytes(10))
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "short.gz").write_bytes(gzip.compress(small + bytes(10)))
    with pytest.raises(DatasetError, match="can hold"):
        read_idx(tmp_path / "short.gz")
    # 255 dimensions of 2**32 - 1 would wrap an int64 product: exact integers refuse them.
    many = struct.pack(">HBB", 0, 0x08, 255) + struct.pack(">255I", *([2 ** 32 - 1] * 255))
    (tmp_path / "many").write_bytes(many)
    with pytest.raises(DatasetError, match="budget"):
        read_idx(tmp_path / "many")
    monkeypatch.setattr(ds, "MEMORY_BUDGET_BYTES", 1000)
    write_idx(tmp_path / "ok", np.zeros((2, 28, 28), dtype=np.uint8))
    with pytest.raises(DatasetError, match="budget"):
        read_idx(tmp_path / "ok")


@pytest.mark.parametrize("line,match", [
    ("00001 ²", "expected '<id> <label>'"),
    ("00001 7 extra", "expected '<id> <label>'"),
    ("../outside 3", "beside the list"),
    ("/etc/passwd 3", "beside the list"),
    ("00001 12", "0..9"),
])
def test_nmnist_list_file_lines_are_checked(tmp_path, line, match):
    write_nmnist_events(tmp_path / "00001.bs2", random_events(np.random.default_rng(0), 5))
    (tmp_path / "test.txt").write_text(f"#sample #class\n{line}\n")
    with pytest.raises(DatasetError, match=match):
        load_nmnist(tmp_path, "test")


def test_nmnist_list_file_not_utf8(tmp_path):
    (tmp_path / "test.txt").write_bytes(b"#x\n\xff\xfe 1\n")
    with pytest.raises(DatasetError, match="UTF-8"):
        load_nmnist(tmp_path, "test")
