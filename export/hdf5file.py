"""Reading HDF5 files from elsewhere (NIR, netx), bounded in time and memory.

Why other processes: libhdf5 parses a file's internal structures (object headers, B-trees, heaps)
in C. A damaged file can make it loop forever at 100% CPU -- measured: a NIR file with 23 flipped
bits (``tests/data/untrusted/hang.nir``) opens, its datasets' shapes and dtypes look sane, and
reading the variable-length strings of its ``edges`` never returns -- or allocate whatever a
corrupted size field says. Python cannot stop that loop (a signal handler runs only between
bytecodes, and the loop never returns to one), and no structural check made first can rule it out
(the hang is in reading data). So the whole parse runs elsewhere, and spikeport only ever touches
plain arrays:

- a reader server (``export/hdf5_worker.py``: standard library, numpy and h5py, started once per
  spikeport process with ``python -I``) forks one child per file, so each read starts from a clean
  process that has h5py loaded (milliseconds) and damage in one read cannot reach another;
- the child's address space is limited (``RLIMIT_AS``: what it holds plus ``MEMORY_BUDGET_BYTES``
  plus 1 GiB) and it is killed after ``SPIKEPORT_READ_TIMEOUT`` seconds (default 60): a damaged file
  is a refusal naming it, never a hang;
- it walks the file checking, before each read: only hard links (no soft or external links, no
  virtual datasets or external raw data: a file must not make us read other files), at most
  ``MAX_DEPTH`` nested groups and ``MAX_OBJECTS`` objects, datasets and attributes of numbers,
  booleans or strings only (compound, reference, enum, array, opaque and empty ones are refused),
  only HDF5's built-in filters and h5py's lzf (dynamic filter plugins are switched off), and
  declared data (shape x item size) within ``MEMORY_BUDGET_BYTES`` for the whole file;
- it hands back what it read as plain data, a JSON tree and the arrays in one ``.npz`` (no pickle in
  either direction), read here with the bounded ``.npz`` reader (``sim.npzfile``).

The result is a ``Group``: a read-only mapping of names to ``Group`` and ``Dataset`` with ``attrs``,
that reads as h5py's does (``g["a/b"]``, ``"a/b" in g``, ``ds[()]`` giving numbers as numpy
scalars or arrays, variable-length strings as ``bytes`` or object arrays of ``bytes``, fixed-length
strings as numpy bytes; string attributes as ``str``), so readers written for h5py run on it.
Where there is no ``fork`` (Windows), each read is a worker process of its own, killed at the
timeout.
"""
from __future__ import annotations

import atexit
import base64
import json
import math
import os
import select
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from spikeport.sim.npzfile import MEMORY_BUDGET_BYTES, NpzError, read_npz

from .hdf5_worker import MAX_DEPTH, MAX_OBJECTS, TREE  # noqa: F401 - the limits, documented above

TIMEOUT_ENV = "SPIKEPORT_READ_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0
WORKER = Path(__file__).with_name("hdf5_worker.py")
_START_TIMEOUT_S = 120.0   # the server's own start (imports numpy and h5py)


class HDF5Error(ValueError):
    """A refused HDF5 file: ``path``, ``kind`` ('missing', 'open', 'refused', 'timeout', 'crashed')
    and ``reason`` (one line)."""

    def __init__(self, path, kind: str, reason: str):
        self.path, self.kind, self.reason = Path(path), kind, " ".join(str(reason).split())
        super().__init__(f"{path}: {self.reason}")


# --- what the parent gets ----------------------------------------------------------------------

class Dataset:
    """A dataset's value, as h5py's ``ds[()]`` returns it, and its ``attrs``."""

    __slots__ = ("_value", "attrs")

    def __init__(self, value, attrs: dict):
        self._value, self.attrs = value, attrs

    def __getitem__(self, key):
        if key != ():
            raise TypeError("only ds[()] (the whole dataset) is read")
        return self._value

    @property
    def shape(self) -> tuple:
        return np.shape(self._value)


class Group(Mapping):
    """A group: names to ``Group`` or ``Dataset``; paths with ``/`` look through subgroups."""

    def __init__(self, items: dict, attrs: dict):
        self._items, self.attrs = items, attrs

    def __getitem__(self, key):
        node = self
        for part in [p for p in str(key).split("/") if p]:
            if not isinstance(node, Group) or part not in node._items:
                raise KeyError(key)
            node = node._items[part]
        return node

    def __contains__(self, key) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


# --- the parent side -------------------------------------------------------------------------------

def read_timeout() -> float:
    """Seconds one read may take: ``$SPIKEPORT_READ_TIMEOUT`` or ``DEFAULT_TIMEOUT_S``."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds, got {raw!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{TIMEOUT_ENV} must be a finite number > 0, got {raw!r}")
    return value


def read_hdf5(path, budget: int = MEMORY_BUDGET_BYTES) -> Group:
    """The whole HDF5 file ``path`` as a ``Group`` tree, read in another process bounded in time,
    memory and structure (module docstring). Every problem is an ``HDF5Error`` (a ``ValueError``)."""
    path = Path(path)
    timeout = read_timeout()
    if not path.exists():
        raise HDF5Error(path, "missing", "no such file")
    if not path.is_file():
        raise HDF5Error(path, "open", "not a file")
    with tempfile.TemporaryDirectory(prefix="spikeport-hdf5-") as tmp:
        out = Path(tmp) / "tree.npz"
        request = {"path": str(path.resolve()), "out": str(out), "budget": int(budget), "timeout": timeout}
        answer = _SERVER.run(request) if hasattr(os, "fork") else _run_once(request)
        if answer["status"] == "timeout":
            raise HDF5Error(path, "timeout", f"reading took longer than {timeout:g} s ({TIMEOUT_ENV}): the HDF5 "
                                             "library does not finish on this file (damaged?)")
        if answer.get("code") != 0 or not out.exists():
            raise HDF5Error(path, "crashed", f"the HDF5 library failed on this file (reader exit code "
                                             f"{answer.get('code')})")
        try:
            arrays = read_npz(out, budget=2 * budget + (64 << 20))
            result = json.loads(arrays.pop(TREE).tobytes().decode("utf-8"))
        except (NpzError, KeyError, ValueError, RecursionError) as err:
            raise HDF5Error(path, "crashed", f"the reader's answer is unreadable ({err})") from None
    if not result.get("ok"):
        raise HDF5Error(path, result.get("kind", "refused"), result.get("error", "refused"))
    return _rebuild(result["tree"], arrays)


def _worker_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _run_once(request: dict) -> dict:
    """One worker process for one read (where there is no fork server)."""
    try:
        proc = subprocess.run([sys.executable, "-I", str(WORKER), "once", json.dumps(request)], env=_worker_env(),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=request["timeout"] + _START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    return {"status": "done", "code": proc.returncode}


class _Server:
    """The reader server of this process (``hdf5_worker.py serve``): started on the first read,
    restarted if it died, ended when this process ends (its input closes). A lock makes reads from
    several threads take turns."""

    def __init__(self):
        self.proc, self.owner = None, None
        self.lock = threading.Lock()
        atexit.register(self.stop)

    def start(self) -> None:
        self.owner = os.getpid()
        self.proc = subprocess.Popen([sys.executable, "-I", str(WORKER), "serve"], env=_worker_env(), text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        if self._answer(_START_TIMEOUT_S) != "ready":
            self.stop()
            raise RuntimeError(f"the HDF5 reader ({sys.executable} -I {WORKER}) did not start; "
                               "is h5py installed?")

    def stop(self) -> None:
        if self.proc is not None and self.owner == os.getpid():
            self.proc.kill()
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                pipe.close()
            self.proc = None

    def _answer(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().strip() if ready else None

    def run(self, request: dict) -> dict:
        with self.lock:
            if self.owner != os.getpid():  # a forked copy of this process: the server's pipes are the parent's
                self.proc = None
            if self.proc is None or self.proc.poll() is not None:
                self.start()
            try:
                self.proc.stdin.write(json.dumps(request) + "\n")
                self.proc.stdin.flush()
                line = self._answer(request["timeout"] + 30.0)  # the server kills its child at the timeout
            except BaseException:  # interrupted mid-request: the server's state is unknown
                self.stop()
                raise
            if not line:  # the server itself died or stopped answering
                self.stop()
                return {"status": "timeout" if line is None else "done", "code": None}
            return json.loads(line)


_SERVER = _Server()  # one per process: a helper process, not state that results depend on


def _rebuild(node: dict, arrays: dict):
    if "items" in node:
        return Group({k: _rebuild(v, arrays) for k, v in node["items"].items()}, _rebuild_attrs(node, arrays))
    return Dataset(_value(node["value"], arrays), _rebuild_attrs(node, arrays))


def _rebuild_attrs(node: dict, arrays: dict) -> dict:
    return {k: _value(v, arrays) for k, v in node["attrs"].items()}


def _value(leaf: dict, arrays: dict):
    if "x" in leaf:  # numbers: h5py returns a numpy scalar for a scalar dataspace
        a = arrays[leaf["x"]]
        return a[()] if a.ndim == 0 else a
    if "S" in leaf:  # fixed-length strings
        raw = arrays[leaf["S"]]
        a = np.frombuffer(raw.tobytes(), dtype=f"S{leaf['itemsize']}").reshape(leaf["shape"]).copy()
        return a[()] if a.ndim == 0 else a
    if "v" in leaf:  # variable-length strings: object arrays of bytes (of str, for attributes)
        blob, ends = arrays[leaf["v"][0]].tobytes(), arrays[leaf["v"][1]].tolist()
        parts = [blob[a:b] for a, b in zip([0] + ends[:-1], ends)]
        if leaf.get("str"):
            parts = [p.decode("utf-8", "surrogateescape") for p in parts]
        out = np.empty(len(parts), dtype=object)
        out[:] = parts
        return out.reshape(leaf["shape"])
    if "b" in leaf:
        return base64.b64decode(leaf["b"])
    return leaf["s"]
