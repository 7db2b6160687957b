"""The reading side of ``export/hdf5file.py``: untrusted HDF5 files parsed in processes of their own.

Run as ``python -I hdf5_worker.py serve`` (standard library, numpy and h5py only; nothing of the
project is imported, so it runs from a source tree as from an installed package). It imports h5py
once, then reads one JSON request per line on stdin, ``{"path", "out", "budget", "timeout"}``, and
for each forks a child that walks the file (``Walk``) and writes ``out``; the child is killed
after ``timeout`` seconds. One JSON line answers each request: ``{"status": "done", "code": C}``
(C: the child's exit code, or minus the signal that ended it) or ``{"status": "timeout"}``. The
server exits at the end of its input (when the spikeport process that started it ends).
``python -I hdf5_worker.py once REQUEST_JSON`` reads one file in this process (where there is no
``fork``; the caller then enforces the timeout on this process).

``out`` is an ``.npz`` (``np.savez``: no pickle) holding the arrays and, as uint8 JSON under
``__tree__``, either ``{"ok": true, "tree": ...}`` or ``{"ok": false, "kind", "error"}``.
"""
import base64
import json
import math
import os
import select
import signal
import sys

import numpy as np

MAX_DEPTH = 32                 # nested groups
MAX_OBJECTS = 100_000          # groups, datasets and attributes in one file
SLACK = 1 << 30                # address space beyond the budget (interpreter, libraries, copies)
VLEN_ITEM = 16                 # bytes one variable-length string costs before its characters are known
# HDF5's built-in filters (H5Zpublic.h) and h5py's lzf; any other would make libhdf5 load a plugin
FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit", 6: "scaleoffset", 32000: "lzf"}
TREE = "__tree__"


class Refused(Exception):
    """The file breaks one of the limits; the message names where."""


def read(path: str, out: str, budget: int) -> None:
    """Walk ``path`` and write ``out`` (never raises)."""
    arrays = {}
    try:
        import h5py

        while h5py.h5pl.size():  # no filter plugins: a file must not make us load a library
            h5py.h5pl.remove(0)
        try:
            f = h5py.File(path, "r")
        except Exception as err:  # noqa: BLE001 - OSError mostly: any failure to open means "not HDF5"
            result = {"ok": False, "kind": "open", "error": f"not an HDF5 file ({type(err).__name__}: {err})"}
        else:
            with f:
                tree = Walk(h5py, budget, arrays).group(f, "/", 0)
            result = {"ok": True, "tree": tree}
    except Refused as err:
        result, arrays = {"ok": False, "kind": "refused", "error": str(err)}, {}
    except MemoryError:
        result, arrays = {"ok": False, "kind": "refused",
                          "error": "reading needs more memory than the budget (MEMORY_BUDGET_BYTES)"}, {}
    except Exception as err:  # noqa: BLE001 - h5py raises KeyError, RuntimeError, OSError, ... on damage
        result, arrays = {"ok": False, "kind": "refused", "error": f"damaged ({type(err).__name__}: {err})"}, {}
    arrays[TREE] = np.frombuffer(json.dumps(result).encode("utf-8"), dtype=np.uint8)
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)


def limit_resources(budget: int, timeout: float) -> None:
    """Address space: what this process holds + ``budget`` + ``SLACK``; CPU: ``timeout`` + 1 s."""
    try:
        import resource

        with open("/proc/self/statm") as fh:
            held = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        for which, value in ((resource.RLIMIT_AS, held + budget + SLACK), (resource.RLIMIT_CPU, math.ceil(timeout) + 1)):
            soft, hard = resource.getrlimit(which)
            if hard == resource.RLIM_INFINITY or value < hard:
                resource.setrlimit(which, (value, hard))
    except (ImportError, OSError, ValueError):  # no resource module or /proc: the timeout still holds
        pass


class Walk:
    """A bounded walk of an open file into a JSON tree (``{"attrs", "items"}`` per group,
    ``{"attrs", "value"}`` per dataset, a leaf per value) and the arrays it names."""

    def __init__(self, h5py, budget: int, arrays: dict):
        self.h5py, self.budget, self.arrays = h5py, budget, arrays
        self.used = self.objects = 0

    def count(self, where: str) -> None:
        self.objects += 1
        if self.objects > MAX_OBJECTS:
            raise Refused(f"{where}: more than {MAX_OBJECTS} objects (MAX_OBJECTS)")

    def charge(self, nbytes: int, where: str) -> None:
        self.used += int(nbytes)
        if self.used > self.budget:
            raise Refused(f"{where}: the file's data exceeds the {self.budget}-byte memory budget "
                          "(MEMORY_BUDGET_BYTES)")

    def group(self, g, where: str, depth: int) -> dict:
        if depth > MAX_DEPTH:
            raise Refused(f"{where}: groups nested deeper than {MAX_DEPTH} (MAX_DEPTH)")
        node = {"attrs": self.attrs(g, where), "items": {}}
        for name in g:
            at = f"{where.rstrip('/')}/{name}"
            self.count(at)
            if not isinstance(g.get(name, getlink=True), self.h5py.HardLink):
                raise Refused(f"{at}: a soft or external link (only the file's own objects are read)")
            obj = g[name]
            if isinstance(obj, self.h5py.Group):
                node["items"][name] = self.group(obj, at, depth + 1)
            elif isinstance(obj, self.h5py.Dataset):
                node["items"][name] = {"attrs": self.attrs(obj, at), "value": self.dataset(obj, at)}
            else:
                raise Refused(f"{at}: a {type(obj).__name__}, not a group or dataset")
        return node

    def attrs(self, obj, where: str) -> dict:
        out = {}
        for name in obj.attrs:
            at = f"{where}@{name}"
            self.count(at)
            aid = obj.attrs.get_id(name)
            self.check(aid.dtype, aid.shape, at)
            out[name] = self.leaf(obj.attrs[name], at)
        return out

    def dataset(self, ds, where: str) -> dict:
        dcpl = ds.id.get_create_plist()
        if dcpl.get_layout() == self.h5py.h5d.VIRTUAL or dcpl.get_external_count():
            raise Refused(f"{where}: its data lives in other files (virtual or external storage)")
        for i in range(dcpl.get_nfilters()):
            code = dcpl.get_filter(i)[0]
            if code not in FILTERS:
                raise Refused(f"{where}: filter {code} is not one of HDF5's built-in filters")
        self.check(ds.dtype, ds.shape, where)
        return self.leaf(ds[()], where)

    def check(self, dtype, shape, where: str) -> None:
        """Refuse what is not numbers, booleans or strings; charge the declared size."""
        h5py = self.h5py
        if shape is None:
            raise Refused(f"{where}: an empty dataspace (no value)")
        vlen = dtype.kind == "O" and h5py.check_string_dtype(dtype) is not None
        plain = dtype.kind in "biufS" and dtype.fields is None and dtype.subdtype is None
        if not (vlen or plain) or (h5py.check_enum_dtype(dtype) is not None and dtype.kind != "b"):
            raise Refused(f"{where}: type {dtype} (numbers, booleans and strings are read)")
        self.charge(math.prod(shape) * (VLEN_ITEM if vlen else dtype.itemsize), where)

    def key(self, arr) -> str:
        name = f"a{len(self.arrays)}"
        self.arrays[name] = np.asarray(arr, order="C")  # (ascontiguousarray would make a scalar 1-d)
        return name

    def leaf(self, value, where: str) -> dict:
        if type(value) is bytes:  # a variable-length string (np.bytes_, fixed-length, goes below)
            self.charge(len(value), where)
            return {"b": base64.b64encode(value).decode("ascii")}
        if isinstance(value, str):  # string attributes
            self.charge(len(value), where)
            return {"s": value}
        arr = np.asarray(value)
        if arr.dtype.kind == "O":  # variable-length strings: one blob and where each one ends
            items = arr.reshape(-1).tolist()
            if not all(isinstance(v, (bytes, str)) for v in items):
                raise Refused(f"{where}: variable-length values that are not strings")
            parts = [v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v for v in items]
            ends = np.cumsum([len(p) for p in parts], dtype=np.int64)
            blob = np.frombuffer(b"".join(parts), dtype=np.uint8)
            self.charge(blob.size, where)
            return {"v": [self.key(blob), self.key(ends)], "shape": list(arr.shape),
                    "str": bool(items) and all(isinstance(v, str) for v in items)}
        if arr.dtype.kind == "S":  # fixed-length strings, as bytes
            return {"S": self.key(np.frombuffer(arr.tobytes(), dtype=np.uint8)), "itemsize": arr.dtype.itemsize,
                    "shape": list(arr.shape)}
        if arr.dtype.kind in "biuf":
            return {"x": self.key(arr)}
        raise Refused(f"{where}: a value of type {arr.dtype}")


def run_forked(request: dict) -> dict:
    """Read in a forked child, killed after the request's timeout."""
    done_r, done_w = os.pipe()  # the child holds the write end until it exits: select wakes at once
    pid = os.fork()
    if pid == 0:  # the child: limits, the walk, and out without running any of the server's cleanup
        os.close(done_r)
        code = 0
        try:
            limit_resources(int(request["budget"]), float(request["timeout"]))
            read(request["path"], request["out"], int(request["budget"]))
        except BaseException:  # noqa: BLE001 - the server learns it from the exit code
            code = 1
        os._exit(code)
    os.close(done_w)
    try:
        finished, _, _ = select.select([done_r], [], [], float(request["timeout"]))
    finally:
        os.close(done_r)
    if not finished:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return {"status": "timeout"}
    _, status = os.waitpid(pid, 0)
    return {"status": "done", "code": os.waitstatus_to_exitcode(status)}


def serve() -> None:
    import h5py  # noqa: F401 - imported once here, so that every forked reader starts with it

    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(run_forked(json.loads(line))), flush=True)


def main(argv: list) -> int:
    if argv[:1] == ["serve"]:
        serve()
        return 0
    if argv[:1] == ["once"] and len(argv) == 2:
        request = json.loads(argv[1])
        limit_resources(int(request["budget"]), float(request["timeout"]))
        read(request["path"], request["out"], int(request["budget"]))
        return 0
    print("usage: hdf5_worker.py serve | once REQUEST_JSON", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
