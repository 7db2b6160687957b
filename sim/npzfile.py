"""Reading ``.npz`` files from elsewhere: every size is checked before anything is allocated.

``np.load`` on an ``.npz`` is lazy and trusting. Each member is decompressed when it is first
indexed, so zip and zlib errors surface far from the ``try`` around ``np.load``; and the ``.npy``
header inside a member is believed, so a 3.5 MB file can declare a 26.8 GiB array, which numpy
allocates before reading a byte. ``read_npz`` reads the whole file at once and checks, in this order:

1. the zip directory: at most ``MAX_MEMBERS`` members with unique names ending in ``.npy``, stored
   or deflated (no other compression), declared sizes that the compressed data can hold (a stored
   member's size is its compressed size; a deflated member is at most ``MAX_DEFLATE_RATIO`` times
   its compressed size, deflate's own limit), and all declared sizes together within the budget
   (``MEMORY_BUDGET_BYTES``, 4 GiB, as the dataset readers');
2. each member's ``.npy`` header, read from the member stream before any data: format 1.0 or 2.0,
   a plain numeric or boolean dtype (object, structured, string and complex dtypes are refused, so
   nothing is ever unpickled), a shape of non-negative sizes whose data, ``prod(shape) * itemsize``,
   is exactly what the member declares after its header;
3. the data, decompressed in bounded pieces into the array allocated from the checked header (zip
   stops at the declared size and checks each member's CRC at its end).

Anything else is a ``NpzError`` (a ``ValueError``) naming the file and the member. Standard library
and numpy only: this module also runs inside the Lava runtime (Python 3.10, numpy 1), which reads
the integer record the bridge sends.
"""
from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np

MEMORY_BUDGET_BYTES = 4 << 30   # what one file may make us hold (bytes), as train/datasets.py
MAX_MEMBERS = 100_000           # arrays in one file
MAX_DEFLATE_RATIO = 1032        # deflate emits at most 258 bytes per 2 bits: 1032:1 (RFC 1951)
MAX_HEADER_BYTES = 16 << 20     # a record's JSON header (ours are a few kB)
_DTYPE_KINDS = "biuf"           # bool, signed and unsigned integers, floats
_CHUNK = 1 << 20                # bytes decompressed per read


class NpzError(ValueError):
    """A refused ``.npz`` file: ``path`` and ``reason`` (one line)."""

    def __init__(self, path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")


def read_npz(path, budget: int = MEMORY_BUDGET_BYTES, limits: dict | None = None) -> dict:
    """All arrays of the ``.npz`` file ``path``, eagerly and within ``budget`` bytes (module
    docstring); ``limits`` maps member names (without ``.npy``) to their own byte limits."""
    path = Path(path)
    limits = limits or {}
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise NpzError(path, "no such file") from None
    except Exception as err:  # noqa: BLE001 - zipfile raises several types for damaged files
        raise NpzError(path, f"not a zip archive ({type(err).__name__}: {err})") from None
    with zf:
        infos = _check_directory(path, zf.infolist(), budget, limits)
        arrays = {}
        for info in infos:
            name = info.filename[:-len(".npy")]
            try:
                with zf.open(info) as member:
                    arrays[name] = _read_member(path, name, member, info.file_size)
            except NpzError:
                raise
            except Exception as err:  # noqa: BLE001 - zlib.error, BadZipFile, EOFError, OSError, ...
                raise NpzError(path, f"member {name!r} is damaged ({type(err).__name__}: {err})") from None
    return arrays


def _check_directory(path, infos, budget: int, limits: dict) -> list:
    if len(infos) > MAX_MEMBERS:
        raise NpzError(path, f"{len(infos)} members (at most {MAX_MEMBERS})")
    names, total = set(), 0
    for info in infos:
        name = info.filename
        if not name.endswith(".npy") or name in names:
            raise NpzError(path, f"member {name!r} is {'repeated' if name in names else 'not a .npy array'}")
        names.add(name)
        if info.compress_type == zipfile.ZIP_STORED:
            fits = info.file_size == info.compress_size
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            fits = info.file_size <= MAX_DEFLATE_RATIO * info.compress_size + 64
        else:
            raise NpzError(path, f"member {name!r} uses compression method {info.compress_type} (only stored "
                                 "and deflated members are read)")
        if not fits:
            raise NpzError(path, f"member {name!r} declares {info.file_size} bytes from {info.compress_size} "
                                 "compressed bytes, more than its compression can produce")
        limit = limits.get(name[:-len(".npy")])
        if limit is not None and info.file_size > limit:
            raise NpzError(path, f"member {name!r} declares {info.file_size} bytes (at most {limit})")
        total += info.file_size
        if total > budget:
            raise NpzError(path, f"its arrays declare more than the {budget}-byte memory budget "
                                 "(MEMORY_BUDGET_BYTES)")
    return infos


def read_npy_header(stream) -> tuple:
    """``(shape, fortran_order, dtype)`` from a ``.npy`` stream positioned at its start, leaving it
    at the data; a ``ValueError`` for formats other than 1.0 and 2.0 (3.0 allows non-ASCII names)."""
    fmt = np.lib.format
    version = fmt.read_magic(stream)
    if version == (1, 0):
        return fmt.read_array_header_1_0(stream)
    if version == (2, 0):
        return fmt.read_array_header_2_0(stream)
    raise ValueError(f".npy format {version} is not read (1.0 and 2.0 are)")


def _read_member(path, name: str, member, size: int) -> np.ndarray:
    try:
        shape, fortran, dtype = read_npy_header(member)
    except ValueError as err:
        raise NpzError(path, f"member {name!r}: {err}") from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in _DTYPE_KINDS:
        raise NpzError(path, f"member {name!r} has dtype {dtype}; numbers or booleans expected")
    if any(s < 0 for s in shape):
        raise NpzError(path, f"member {name!r} declares shape {shape}")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes != size - member.tell():
        raise NpzError(path, f"member {name!r} declares shape {shape} of {dtype} ({nbytes} bytes), but holds "
                             f"{size - member.tell()} bytes of data")
    flat = np.empty(math.prod(shape), dtype=dtype)
    view = memoryview(flat.reshape(-1).view(np.uint8))
    done = 0
    while done < nbytes:
        got = member.readinto(view[done:done + _CHUNK])
        if not got:
            raise NpzError(path, f"member {name!r} ends after {done} of {nbytes} data bytes")
        done += got
    if member.read(1):
        raise NpzError(path, f"member {name!r} holds more data than its header declares")
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def read_record(path, what: str) -> tuple:
    """``(arrays, header)`` of a spikeport ``.npz`` record: its arrays (``read_npz``) and the JSON
    object in its ``header`` member (at most ``MAX_HEADER_BYTES``). A file that is not such a record
    is a ``ValueError`` saying it is not a ``what``."""
    path = Path(path)
    try:
        arrays = read_npz(path, limits={"header": MAX_HEADER_BYTES})
    except NpzError as err:
        raise ValueError(f"{path} is not a {what} ({err.reason})") from None
    raw = arrays.get("header")
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{path} is not a {what} (no JSON header)")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{path} is not a {what} (its header is not JSON: {type(err).__name__})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a {what} (its header is not a JSON object)")
    return arrays, header
