"""Local dataset loaders for training spiking networks.

Nothing is ever downloaded: every loader reads files that the user has put in a
folder and raises :class:`DatasetError` (naming the expected files and layout)
when they are missing or malformed.  Each loader returns a :class:`Split`.

Formats
-------
digits
    scikit-learn's bundled ``load_digits`` (1797 images, 8x8, values 0..16),
    split deterministically and stratified into train/test.
MNIST (IDX)
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, gzipped (``.gz``)
    or raw.  IDX header (big-endian): 2 zero bytes, one dtype code byte
    (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), one byte ``ndim``, then ``ndim`` uint32 dimensions, then
    the data in C order.
N-MNIST (binary events)
    One file per sample (``.bin`` or ``.bs2``), 5 bytes per event: byte 0 x
    (0..33), byte 1 y (0..33), bit 7 of byte 2 polarity, bits 22..0 of the
    big-endian 24-bit word in bytes 2..4 timestamp in microseconds.  Samples are
    listed either by list files (``train*.txt`` / ``test*.txt``: a ``#``
    header line, then ``<id> <label>`` lines, events in ``<id>.bs2`` or
    ``<id>.bin``) or by folders ``Train/<class>/*.bin`` and
    ``Test/<class>/*.bin``.
CIFAR-10 (python version)
    ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``, each a pickled
    dict with ``b"data"`` (uint8, 10000 x 3072, channel-major RGB 32x32) and
    ``b"labels"`` (list of ints 0..9).  Unpickling can run code, so the batches
    are read by a restricted unpickler (:class:`CifarUnpickler`) that admits
    only the types the format is made of and refuses anything else.

Untrusted files
    Every reader checks before it computes: sizes declared in a header are
    checked against the file's size and against :data:`MEMORY_BUDGET_BYTES`
    before anything is allocated, gzip streams are decompressed in bounded
    pieces (never beyond the declared size plus one byte, and never beyond what
    deflate's largest ratio allows for the compressed size), and values are
    checked before any cast (labels must be integers in range).  Every failure
    is a one-line :class:`DatasetError` naming the file.
"""

import dataclasses
import gzip
import math
import pickle
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DatasetError",
    "Split",
    "EVENT_DTYPE",
    "read_idx",
    "read_nmnist_events",
    "write_nmnist_events",
    "load_digits",
    "load_mnist",
    "load_nmnist",
    "load_cifar10",
    "load_dataset",
    "DATASETS",
]


class DatasetError(ValueError):
    """A dataset file or folder is missing, malformed, or was requested wrongly."""


MEMORY_BUDGET_BYTES = 4 << 30
"""Largest array one dataset file may ask for (4 GiB; MNIST's training images
take 47 MB, all five CIFAR-10 training batches 154 MB).  Declared sizes above it
are refused before anything is allocated."""

_DEFLATE_MAX_RATIO = 1032
"""Deflate cannot expand data by more than about 1032:1 (258-byte matches coded
in 2 bits); a gzip file declaring more than this times its own size is refused
without being decompressed."""


EVENT_DTYPE = np.dtype([("x", np.uint8), ("y", np.uint8), ("p", np.uint8), ("t", np.int64)])
"""Structured dtype of one address event: pixel ``x``, ``y``, polarity ``p``
(0 = off, 1 = on) and timestamp ``t`` in microseconds."""

NMNIST_SIZE = 34
_SPLITS = ("train", "test")


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset held in memory.

    Attributes
    ----------
    name : str
        Dataset and split, e.g. ``"mnist/train"``.
    inputs : torch.Tensor or tuple of numpy.ndarray
        For ``kind == "image"``: float32 tensor of shape ``(N, *input_shape)``
        with intensities in [0, 1].  For ``kind == "events"``: a tuple of N
        structured arrays of dtype :data:`EVENT_DTYPE` (t in microseconds).
    labels : torch.Tensor
        int64 tensor of shape ``(N,)`` with class indices ``0 .. n_classes-1``.
    input_shape : tuple of int
        Shape of one sample in PyTorch order ``(C, H, W)``; for events the
        sensor shape ``(polarities, height, width)``.
    n_classes : int
        Number of classes.
    kind : str
        ``"image"`` or ``"events"``.
    """

    name: str
    inputs: torch.Tensor | tuple[np.ndarray, ...]
    labels: torch.Tensor
    input_shape: tuple[int, ...]
    n_classes: int
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in ("image", "events"):
            raise ValueError(f"Split {self.name!r}: kind must be 'image' or 'events', got {self.kind!r}")
        if len(self.inputs) != len(self.labels):
            raise ValueError(
                f"Split {self.name!r}: {len(self.inputs)} inputs but {len(self.labels)} labels"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index) -> tuple:
        """Select samples by index.

        Parameters
        ----------
        index : torch.Tensor or numpy.ndarray or sequence of int
            1-d integer indices (int64) into the split.

        Returns
        -------
        inputs : torch.Tensor or tuple of numpy.ndarray
            Image tensor of shape ``(B, *input_shape)`` or a tuple of B event
            arrays.
        labels : torch.Tensor
            int64 tensor of shape ``(B,)``.
        """
        if isinstance(index, torch.Tensor):
            index = index.detach().cpu().numpy()
        index = np.asarray(index, dtype=np.int64)
        if index.ndim != 1:
            raise ValueError(f"batch index must be 1-d, got shape {index.shape}")
        rows = torch.from_numpy(index)
        if self.kind == "image":
            return self.inputs[rows], self.labels[rows]
        return tuple(self.inputs[i] for i in index), self.labels[rows]

    def subset(self, n: int) -> "Split":
        """Return the first ``n`` samples (all of them if ``n >= len(self)``) as a new Split."""
        if n < 0:
            raise ValueError(f"subset size must be non-negative, got {n}")
        return dataclasses.replace(self, inputs=self.inputs[:n], labels=self.labels[:n])


# --------------------------------------------------------------------------- IDX

_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


_CHUNK = 1 << 24  # bytes decompressed per step


def _read_bounded(f, n: int) -> bytes:
    """Up to ``n`` bytes from ``f``, in pieces (memory grows only as data actually arrives)."""
    parts, got = [], 0
    while got < n:
        part = f.read(min(_CHUNK, n - got))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read_idx(path, max_bytes: int | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into a numpy array.

    Parameters
    ----------
    path : str or os.PathLike
        IDX file; gzip compression is detected from the magic bytes 1f 8b, not
        from the suffix.
    max_bytes : int, optional
        Largest data size accepted (default :data:`MEMORY_BUDGET_BYTES`).

    Returns
    -------
    numpy.ndarray
        Array of the file's dimensions in native byte order (uint8, int8,
        int16, int32, float32 or float64, as the header says).

    Raises
    ------
    DatasetError
        If the file is missing, the gzip stream is corrupt, the magic number is
        invalid, the declared size exceeds ``max_bytes`` or what the file can
        hold, or the data is shorter or longer than the dimensions imply.  The
        header is read first: nothing of the declared size is allocated or
        decompressed before these checks.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    budget = MEMORY_BUDGET_BYTES if max_bytes is None else max_bytes
    file_size = path.stat().st_size
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        f = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        try:
            return _read_idx_stream(path, f, compressed, file_size, budget)
        except (OSError, EOFError, zlib.error) as exc:
            if not compressed:
                raise
            raise DatasetError(f"{path}: corrupt gzip data ({exc})") from None


def _read_idx_stream(path: Path, f, compressed: bool, file_size: int, budget: int) -> np.ndarray:
    head = f.read(4)
    if len(head) < 4:
        raise DatasetError(f"{path}: truncated IDX header ({len(head)} bytes, need at least 4)")
    code, ndim = head[2], head[3]
    if head[:2] != b"\x00\x00" or code not in _IDX_DTYPES:
        raise DatasetError(
            f"{path}: bad IDX magic number 0x{head.hex()} (expected 0x0000, a dtype code in "
            f"{{{', '.join(f'0x{c:02X}' for c in _IDX_DTYPES)}}}, then ndim)"
        )
    header = 4 + 4 * ndim
    dims_raw = f.read(4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DatasetError(f"{path}: truncated IDX header ({4 + len(dims_raw)} bytes, need {header} for {ndim} dims)")
    dims = struct.unpack(f">{ndim}I", dims_raw)
    dtype = _IDX_DTYPES[code]
    count = math.prod(dims)  # exact (Python integers): 255 dims of 2**32 - 1 do not wrap
    expected = count * dtype.itemsize
    if expected > budget:
        raise DatasetError(f"{path}: IDX header declares shape {dims} ({expected} bytes), more than the "
                           f"{budget}-byte budget (MEMORY_BUDGET_BYTES)")
    if compressed and header + expected > _DEFLATE_MAX_RATIO * file_size + 1024:
        raise DatasetError(f"{path}: IDX header declares shape {dims} ({expected} bytes), more than a gzip "
                           f"file of {file_size} bytes can hold")
    if not compressed and file_size - header < expected:
        raise DatasetError(f"{path}: truncated IDX data, expected {expected} bytes for shape {dims}, "
                           f"got {file_size - header}")
    if not compressed and file_size - header > expected:
        raise DatasetError(f"{path}: {file_size - header - expected} bytes of trailing garbage after IDX data "
                           f"of shape {dims}")
    data = _read_bounded(f, expected + 1)  # one byte more than declared: detects trailing data
    got = len(data)
    if got < expected:
        raise DatasetError(f"{path}: truncated IDX data, expected {expected} bytes for shape {dims}, got {got}")
    if got > expected:
        raise DatasetError(f"{path}: trailing garbage after IDX data of shape {dims}")
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


# ------------------------------------------------------------------------ N-MNIST


def read_nmnist_events(path) -> np.ndarray:
    """Read one N-MNIST binary event file.

    Parameters
    ----------
    path : str or os.PathLike
        ``.bin`` / ``.bs2`` file with 5 bytes per event (see module docstring).

    Returns
    -------
    numpy.ndarray
        1-d array of dtype :data:`EVENT_DTYPE` in file order; ``t`` in
        microseconds (0 .. 2**23 - 1), ``p`` 0 or 1, ``x`` and ``y`` 0..33.

    Raises
    ------
    DatasetError
        If the file is missing, its size is not a multiple of 5 or too large
        for :data:`MEMORY_BUDGET_BYTES` (each 5-byte event takes
        ``EVENT_DTYPE.itemsize`` bytes decoded), or an event has x or y outside
        0..33.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    size = path.stat().st_size
    if size // 5 * (EVENT_DTYPE.itemsize + 8) > MEMORY_BUDGET_BYTES:  # decoded events + int64 timestamps
        raise DatasetError(f"{path}: {size} bytes of events exceed the memory budget (MEMORY_BUDGET_BYTES)")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 5:
        raise DatasetError(f"{path}: truncated N-MNIST file, size {raw.size} bytes is not a multiple of 5")
    raw = raw.reshape(-1, 5)
    for axis, column in (("x", 0), ("y", 1)):
        bad = np.flatnonzero(raw[:, column] >= NMNIST_SIZE)
        if bad.size:
            raise DatasetError(
                f"{path}: corrupt N-MNIST file, event {bad[0]} has {axis}={raw[bad[0], column]} "
                f"(must be < {NMNIST_SIZE})"
            )
    events = np.empty(len(raw), dtype=EVENT_DTYPE)
    events["x"] = raw[:, 0]
    events["y"] = raw[:, 1]
    events["p"] = raw[:, 2] >> 7
    word = raw[:, 2:5].astype(np.int64)
    events["t"] = ((word[:, 0] & 0x7F) << 16) | (word[:, 1] << 8) | word[:, 2]
    return events


def write_nmnist_events(path, events) -> None:
    """Write events in the N-MNIST binary format (inverse of :func:`read_nmnist_events`).

    Parameters
    ----------
    path : str or os.PathLike
        Output file (overwritten).
    events : numpy.ndarray
        Structured array with fields ``x``, ``y`` (0..33), ``p`` (0 or 1) and
        ``t`` (microseconds, 0 .. 2**23 - 1), e.g. of dtype :data:`EVENT_DTYPE`.

    Raises
    ------
    ValueError
        If a field is missing or a value does not fit the format.
    """
    events = np.asarray(events)
    names = events.dtype.names or ()
    missing = [f for f in EVENT_DTYPE.names if f not in names]
    if missing:
        raise ValueError(f"events need fields {EVENT_DTYPE.names}, missing {missing}")
    x, y, p, t = (events[f].astype(np.int64).ravel() for f in EVENT_DTYPE.names)
    for field, values, high in (("x", x, NMNIST_SIZE), ("y", y, NMNIST_SIZE), ("p", p, 2), ("t", t, 1 << 23)):
        if values.size and (values.min() < 0 or values.max() >= high):
            raise ValueError(f"events field {field!r} must lie in 0..{high - 1}, got {values.min()}..{values.max()}")
    out = np.empty((x.size, 5), dtype=np.uint8)
    out[:, 0] = x
    out[:, 1] = y
    out[:, 2] = (p << 7) | (t >> 16)
    out[:, 3] = (t >> 8) & 0xFF
    out[:, 4] = t & 0xFF
    Path(path).write_bytes(out.tobytes())


# ------------------------------------------------------------------------ helpers


def _check_split(split: str) -> None:
    if split not in _SPLITS:
        raise DatasetError(f"split must be one of {_SPLITS}, got {split!r}")


def _labels_tensor(labels: np.ndarray, source, n_classes: int = 10) -> torch.Tensor:
    """Validate class indices (integers, checked before any cast) and return them as an int64 tensor."""
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"{source}: labels are not a flat sequence of integers ({exc})") from None
    if labels.size and labels.dtype.kind not in "iu":
        raise DatasetError(f"{source}: labels must be integers, got {labels.dtype} values")
    if labels.ndim != 1:
        raise DatasetError(f"{source}: labels must be 1-d, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(
            f"{source}: labels must lie in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}"
        )
    return torch.from_numpy(labels.astype(np.int64))


def _image_split(name: str, images: np.ndarray, labels: torch.Tensor, shape: tuple, n_classes: int = 10) -> Split:
    """Build an image Split from uint8 (or [0, 1] float) images reshaped to (N, *shape)."""
    pixels = images.astype(np.float32) / 255 if images.dtype == np.uint8 else images.astype(np.float32)
    inputs = torch.from_numpy(np.ascontiguousarray(pixels.reshape(-1, *shape)))
    return Split(name, inputs, labels, shape, n_classes, "image")


# ------------------------------------------------------------------------ loaders


def load_digits(split: str, test_fraction: float = 0.25, seed: int = 0) -> Split:
    """Load scikit-learn's 8x8 digits with a deterministic stratified split.

    Parameters
    ----------
    split : {"train", "test"}
    test_fraction : float
        Fraction of the 1797 samples in the test split, in (0, 1).
    seed : int
        Random state of the split; the same seed gives the same split.

    Returns
    -------
    Split
        ``kind="image"``, inputs float32 ``(N, 1, 8, 8)`` in [0, 1] (raw values
        0..16 divided by 16), 10 classes.
    """
    _check_split(split)
    if not 0 < test_fraction < 1:
        raise DatasetError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    parts = train_test_split(
        digits.images, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    images, labels = (parts[0], parts[2]) if split == "train" else (parts[1], parts[3])
    return _image_split(f"digits/{split}", images / 16.0, _labels_tensor(labels, "digits"), (1, 8, 8))


def _find_mnist_file(root: Path, prefix: str, kind: str) -> Path | None:
    for stem in (f"{prefix}-{kind}-ubyte", f"{prefix}-{kind.replace('-', '.')}-ubyte"):
        for name in (stem + ".gz", stem):
            if (root / name).is_file():
                return root / name
    return None


def load_mnist(data_dir, split: str) -> Split:
    """Load MNIST from the original IDX files.

    Parameters
    ----------
    data_dir : str or os.PathLike
        Folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each
        optionally gzipped (``.gz``); ``t10k-images.idx3-ubyte``-style names
        are accepted too.
    split : {"train", "test"}

    Returns
    -------
    Split
        ``kind="image"``, inputs float32 ``(N, 1, 28, 28)`` (pixels / 255),
        10 classes.
    """
    _check_split(split)
    root = Path(data_dir)
    prefix = "train" if split == "train" else "t10k"
    images_path = _find_mnist_file(root, prefix, "images-idx3")
    labels_path = _find_mnist_file(root, prefix, "labels-idx1")
    if images_path is None or labels_path is None:
        raise DatasetError(
            f"MNIST {split} files not found in {root}: expected the original IDX files "
            f"train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
            f"t10k-labels-idx1-ubyte (each raw or gzipped with a .gz suffix) directly in that folder"
        )
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise DatasetError(
            f"{images_path}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetError(f"{labels_path}: expected 1-d uint8 labels, got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(
            f"MNIST {split}: {images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    return _image_split(f"mnist/{split}", images, _labels_tensor(labels, labels_path), (1, 28, 28))


_NMNIST_LAYOUTS = (
    "(a) list files in the folder: 'train*.txt' / 'test*.txt' with a '#' header line, then "
    "'<id> <label>' lines, and events in '<id>.bs2' or '<id>.bin' beside them; or "
    "(b) folders 'Train/<class>/*.bin' and 'Test/<class>/*.bin' with class folders 0..9"
)


_LIST_LINE = re.compile(r"^(\S+)\s+([0-9]{1,9})$")


def _nmnist_from_list(list_path: Path) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    if list_path.stat().st_size > MEMORY_BUDGET_BYTES:
        raise DatasetError(f"{list_path}: list file larger than the memory budget (MEMORY_BUDGET_BYTES)")
    try:
        text = list_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{list_path}: not a UTF-8 list file (byte {exc.start})") from None
    for line_no, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        m = _LIST_LINE.match(line.strip())
        if m is None:
            raise DatasetError(f"{list_path}:{line_no}: expected '<id> <label>', got {line[:80]!r}")
        sample_id, label = m[1], int(m[2])
        if Path(sample_id).is_absolute() or ".." in Path(sample_id).parts or "\x00" in sample_id:
            raise DatasetError(f"{list_path}:{line_no}: sample id {sample_id!r} must name a file beside the list")
        candidates = [list_path.parent / f"{sample_id}{ext}" for ext in (".bs2", ".bin")]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DatasetError(
                f"{list_path}:{line_no}: event file for sample {sample_id} not found "
                f"(looked for {candidates[0].name} and {candidates[1].name} in {list_path.parent})"
            )
        files.append(found)
        labels.append(label)
    return files, labels


def _nmnist_from_folders(split_dir: Path) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for label in range(10):
        class_files = sorted((split_dir / str(label)).glob("*.bin"))
        files += class_files
        labels += [label] * len(class_files)
    if not files:
        raise DatasetError(f"{split_dir}: no event files found in class folders 0..9 ({_NMNIST_LAYOUTS})")
    return files, labels


def load_nmnist(data_dir, split: str) -> Split:
    """Load N-MNIST event recordings eagerly.

    Parameters
    ----------
    data_dir : str or os.PathLike
        Folder in one of two layouts: (a) a list file ``train*.txt`` /
        ``test*.txt`` (``#`` header line, then ``<id> <label>`` lines) with
        event files ``<id>.bs2`` or ``<id>.bin`` beside it; (b) folders
        ``Train/<class>/*.bin`` and ``Test/<class>/*.bin`` (or lowercase
        ``train`` / ``test``), class folders ``0`` .. ``9``.  Layout (a) is used
        when a matching list file exists.
    split : {"train", "test"}

    Returns
    -------
    Split
        ``kind="events"``, inputs a tuple of :data:`EVENT_DTYPE` arrays (in
        list-file order, or class then sorted file name order for layout (b)),
        ``input_shape=(2, 34, 34)``, 10 classes.
    """
    _check_split(split)
    root = Path(data_dir)
    list_files = sorted(root.glob(f"{split}*.txt"))
    folders = [root / name for name in (split.capitalize(), split) if (root / name).is_dir()]
    if len(list_files) > 1:
        raise DatasetError(
            f"{root}: several N-MNIST {split} list files ({', '.join(p.name for p in list_files)}); keep only one"
        )
    if list_files:
        files, labels = _nmnist_from_list(list_files[0])
        source = list_files[0]
    elif folders:
        files, labels = _nmnist_from_folders(folders[0])
        source = folders[0]
    else:
        raise DatasetError(f"N-MNIST {split} data not found in {root}: expected {_NMNIST_LAYOUTS}")
    events = tuple(read_nmnist_events(f) for f in files)
    return Split(f"nmnist/{split}", events, _labels_tensor(labels, source), (2, NMNIST_SIZE, NMNIST_SIZE), 10, "events")


class CifarRefused(pickle.UnpicklingError):
    """The pickle asked for something a CIFAR-10 batch is not made of."""


def _empty_ndarray(subtype, shape, dtype):
    """numpy's ``_reconstruct`` as the batches use it: an empty array that ``__setstate__`` then
    fills (with its real shape, dtype and bytes, whose sizes numpy checks against each other).
    The shape asked for here is ignored, so a crafted one allocates nothing."""
    if subtype is not np.ndarray:
        raise CifarRefused(f"array subtype {subtype!r}")
    return np.ndarray((0,), np.uint8)


def _frombuffer(buffer, dtype, shape, order):
    """numpy's protocol-5 array pickle: a view of bytes already read from the file."""
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _scalar(dtype, data=None):
    """numpy's scalar pickle (labels kept as numpy integers): one value read from its bytes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes) \
            or len(data) != dtype.itemsize:
        raise CifarRefused(f"a numpy scalar of {dtype!r} from {type(data).__name__}")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _bytes(*args):
    """``bytes()`` as protocols 0-2 spell an empty bytes object (never ``bytes(n)``: no allocation)."""
    if args:
        raise CifarRefused(f"bytes{args!r}"[:80])
    return b""


def _latin1_bytes(text, encoding):
    """``_codecs.encode(text, 'latin1')``: how protocols 0-2 spell a bytes object."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CifarRefused(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


_CIFAR_GLOBALS = {
    **{(m, "_reconstruct"): _empty_ndarray for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): _scalar for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(m, "_frombuffer"): _frombuffer for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("_codecs", "encode"): _latin1_bytes,
    **{(m, "bytes"): _bytes for m in ("__builtin__", "builtins")},
}


class CifarUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 python batch and nothing else.

    A batch is a dict with bytes (or str) keys, numpy arrays, lists of ints (or of numpy integer
    scalars) and byte strings. Pickle builds objects by calling the functions the file names, so
    the file decides what runs; here only the globals in ``_CIFAR_GLOBALS`` may be named: numpy's
    array and dtype constructors (the array one replaced by a version that allocates nothing
    itself), numpy's scalar constructor (non-object dtypes only), a latin-1 ``_codecs.encode`` and
    an argument-free ``bytes()``. Any other global
    (``os.system``, ``builtins.eval``, a class with ``__reduce__``) is refused, before it is called.
    """

    def find_class(self, module, name):
        found = _CIFAR_GLOBALS.get((module, name))
        if found is None:
            raise CifarRefused(f"{module}.{name}")
        return found

    def persistent_load(self, pid):
        raise CifarRefused("a persistent id")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    size = path.stat().st_size
    if size > MEMORY_BUDGET_BYTES:
        raise DatasetError(f"{path}: {size} bytes, more than the memory budget (MEMORY_BUDGET_BYTES)")
    try:
        with path.open("rb") as f:
            batch = CifarUnpickler(f, encoding="bytes").load()
    except CifarRefused as exc:
        raise DatasetError(f"{path}: refused to unpickle {exc}: a CIFAR-10 batch holds only dicts, lists, "
                           "strings, integers and numpy arrays") from None
    except Exception as exc:  # unpickling bad data can raise almost any exception type
        problem = " ".join(str(exc).split())[:200]
        raise DatasetError(f"{path}: not a readable CIFAR-10 pickle ({type(exc).__name__}: {problem})") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a dict with keys b'data' and b'labels', got {type(batch).__name__}")
    keys = {k.decode("latin1") if isinstance(k, bytes) else k: k for k in batch}
    if "data" not in keys or "labels" not in keys:
        shown = sorted(repr(k) for k in batch)[:10]
        raise DatasetError(f"{path}: expected a dict with keys b'data' and b'labels', got keys {', '.join(shown)}")
    data = batch[keys["data"]]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: b'data' must be a uint8 array of shape (N, 3072), got {what}")
    labels = batch[keys["labels"]]
    if not isinstance(labels, (list, np.ndarray)):
        raise DatasetError(f"{path}: b'labels' must be a list of integers, got {type(labels).__name__}")
    if isinstance(labels, list) and not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                            for v in labels):
        bad = next(v for v in labels if not isinstance(v, (int, np.integer)) or isinstance(v, bool))
        raise DatasetError(f"{path}: b'labels' must be integers, got {bad!r}")
    labels = _labels_tensor(labels, path).numpy()
    if labels.shape != (len(data),):
        raise DatasetError(f"{path}: b'labels' has shape {labels.shape}, expected ({len(data)},)")
    return data, labels


def load_cifar10(data_dir, split: str) -> Split:
    """Load CIFAR-10 from the python-version pickle batches.

    Parameters
    ----------
    data_dir : str or os.PathLike
        Folder holding ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``
        (the contents of ``cifar-10-python.tar.gz``), directly or in a
        ``cifar-10-batches-py`` subfolder.  The files are unpickled: use only
        trusted files.
    split : {"train", "test"}

    Returns
    -------
    Split
        ``kind="image"``, inputs float32 ``(N, 3, 32, 32)`` (pixels / 255),
        10 classes.
    """
    _check_split(split)
    root = Path(data_dir)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if not (root / names[0]).is_file() and (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise DatasetError(
            f"CIFAR-10 {split} files missing in {root}: {', '.join(missing)}. Expected data_batch_1..5 "
            f"and test_batch from the python version (cifar-10-python.tar.gz) in that folder or in "
            f"its cifar-10-batches-py subfolder."
        )
    batches = [_read_cifar_batch(root / n) for n in names]
    images = np.concatenate([b[0] for b in batches])
    labels = _labels_tensor(np.concatenate([b[1] for b in batches]), root)
    return _image_split(f"cifar10/{split}", images, labels, (3, 32, 32))


DATASETS = {
    "digits": load_digits,
    "mnist": load_mnist,
    "nmnist": load_nmnist,
    "cifar10": load_cifar10,
}
"""Registry of dataset names to loader functions."""


def load_dataset(name: str, data_dir=None, split: str = "train", **options) -> Split:
    """Load a dataset split by name.

    Parameters
    ----------
    name : str
        One of the keys of :data:`DATASETS` (``"digits"``, ``"mnist"``,
        ``"nmnist"``, ``"cifar10"``).
    data_dir : str or os.PathLike, optional
        Data folder; required for every dataset but ``"digits"`` (which ignores
        it).
    split : {"train", "test"}
    **options
        Extra keyword arguments for the loader (e.g. ``test_fraction`` and
        ``seed`` for digits).

    Returns
    -------
    Split
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    if name == "digits":
        return load_digits(split, **options)
    if data_dir is None:
        raise DatasetError(f"dataset {name!r} needs data_dir (the folder holding its files)")
    return DATASETS[name](data_dir, split, **options)
