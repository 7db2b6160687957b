"""Fuzzing the readers of untrusted input: configuration files, IDX files, N-MNIST event files and
list files, CIFAR-10 batches, checkpoints, network files (``.npz`` integer records, NIR and netx
HDF5 files), and bad command lines.

Every case is generated from a seed (``random.Random(f"{reader}-{index}")``), so a failure names a
case that reproduces. Each case has an expectation from an oracle written here from the formats'
specifications, independently of the readers: valid, invalid, or unknown (random byte damage,
where the oracle instead checks whatever the reader returns). Outcome classes:

- ``refused``: a ``ValueError`` whose message is one line naming the input (file or key);
- ``accepted``: read, and the result is what the oracle computes from the bytes;
- ``crash``: any other exception, or a refusal that is not one line naming the input;
- ``hang``: slower than ``HANG_SECONDS``;
- ``silent``: accepted although invalid (or with a result other than the oracle's);
- ``false_refusal``: refused although valid;
- ``code_ran``: a marker file that a malicious payload would create exists afterwards.

The tests assert that only the first two occur (and both do). ``SPIKEPORT_FUZZ_CASES`` sets the
cases per reader (default 200, a few seconds each); ``SPIKEPORT_FUZZ_REPORT=path.json`` writes
the counts. HDF5 has no checksums over data: a flipped bit inside a weight of a NIR or netx file is
a different, valid file, so for random damage to those the oracle checks only that the reader
crashes, hangs and allocates nothing it should not; the HDF5 readers run with
``SPIKEPORT_READ_TIMEOUT=5``, so a file on which libhdf5 hangs is refused, not a hang.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import gzip
import io
import json
import math
import os
import pickle
import random
import re
import signal
import struct
import time
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import spikeport.train.trainer as trainer
from spikeport.cli import main as cli_main
from spikeport.train import datasets as ds
from spikeport.train.config import make_config
from spikeport.train.losses import LOSSES
from spikeport.train.surrogates import SURROGATES

CASES = int(os.environ.get("SPIKEPORT_FUZZ_CASES", "200"))
HANG_SECONDS = 20.0
OUTCOMES = ("refused", "accepted", "crash", "hang", "silent", "false_refusal", "code_ran")


# --------------------------------------------------------------------------------------- harness


class _Hang(BaseException):
    """Raised by the alarm; a BaseException so that no reader's ``except Exception`` can hide it."""


def _alarm(signum, frame):
    raise _Hang()


class Tally:
    def __init__(self, reader: str):
        self.reader = reader
        self.counts = Counter({o: 0 for o in OUTCOMES})
        self.examples: dict[str, list] = {}

    def add(self, outcome: str, case: str, detail: str = "") -> None:
        self.counts[outcome] += 1
        if outcome not in ("refused", "accepted"):
            self.examples.setdefault(outcome, [])
            if len(self.examples[outcome]) < 5:
                self.examples[outcome].append(f"{case}: {detail}"[:400])

    def finish(self, need_accepted: bool = True) -> None:
        total = sum(self.counts.values())
        print(f"\nfuzz {self.reader}: {total} cases " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        report = os.environ.get("SPIKEPORT_FUZZ_REPORT")
        if report:
            path = Path(report)
            old = json.loads(path.read_text()) if path.exists() else {}
            old[self.reader] = {"cases": total, **self.counts}
            path.write_text(json.dumps(old, indent=1))
        bad = {k: v for k, v in self.counts.items() if k not in ("refused", "accepted") and v}
        assert not bad, f"{self.reader}: {bad}; examples: {json.dumps(self.examples, indent=1)}"
        assert self.counts["refused"] > 0 and (self.counts["accepted"] > 0 or not need_accepted), self.counts


def timed(read):
    """``(result, exception, hung)`` of ``read()`` under an alarm of ``HANG_SECONDS``."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    t0 = time.perf_counter()
    result, error, hung = None, None, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = read()
    except _Hang:
        hung = True
    except Exception as err:  # noqa: BLE001 - classifying every failure is the point
        error = err
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return result, error, hung or time.perf_counter() - t0 > HANG_SECONDS


def run_case(tally: Tally, case: str, read, expect, names, check=None, marker: Path | None = None) -> None:
    """Run ``read()`` and classify it. ``expect``: True (valid), False (invalid) or None (unknown);
    ``names``: strings of which a refusal must name one; ``check(result)``: None, or what is wrong
    with an accepted result (compared with the oracle)."""
    result, error, hung = timed(read)
    outcome, detail = "accepted", ""
    if hung:
        outcome = "hang"
    elif isinstance(error, ValueError):
        message = str(error)
        if "\n" in message or not any(str(n) in message for n in names):
            outcome, detail = "crash", f"unclear refusal: {message!r}"
        elif expect is True:
            outcome, detail = "false_refusal", message
        else:
            outcome = "refused"
    elif error is not None:
        outcome, detail = "crash", f"{type(error).__name__}: {error}"
    elif expect is False:
        outcome, detail = "silent", "accepted an invalid input"
    elif check is not None:
        problem = check(result)
        if problem:
            outcome, detail = "silent", problem
    if marker is not None and marker.exists():
        outcome, detail = "code_ran", "the malicious payload ran"
        marker.unlink()
    tally.add(outcome, case, detail)


def mutate_bytes(rng: random.Random, blob: bytes, edits: int | None = None) -> bytes:
    """Random damage: bit flips, byte replacements, deletions, insertions, truncation, duplication."""
    b = bytearray(blob)
    for _ in range(edits or rng.randint(1, 4)):
        kind = rng.choice(["flip", "byte", "delete", "insert", "truncate", "duplicate"])
        pos = rng.randrange(len(b) + 1) if b else 0
        if kind == "flip" and b:
            b[min(pos, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif kind == "byte" and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif kind == "delete" and b:
            del b[pos:pos + rng.randint(1, 8)]
        elif kind == "insert":
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif kind == "truncate":
            del b[pos:]
        elif kind == "duplicate" and b:
            b[pos:pos] = b[pos:pos + rng.randint(1, 32)]
    return bytes(b)


# --------------------------------------------------------------------------- configuration files


NETWORKS = ["784-800-10", "64-400-10", "28x28-15C5-P2-10", "34x34x2-12C5p2s2-S2-D0.5-10", "784-0-10",
            "28x28-4C5s0-10", "abc", "784", "", "784-99999999-10", "28x28-100C29-10", "784-10-D0.2", "8x8-P0-10"]
INT, FLOAT, STR, BOOL = "int", "float", "str", "bool"


def network_ok(spec: str) -> bool:
    """The spec grammar of train/network.py's docstring: input N, HxW or HxWxC, then dense N
    (recurrent NR: n * n more weights), conv <n>C<k>[p<pad>][s<stride>], pool P<k>/S<k>, dropout D<p>; sizes >= 1, every layer fits its
    input, at most 1e8 weights and biases, and the last layer is not a dropout."""
    tokens = [t.strip() for t in spec.strip().split("-") if t.strip()]
    m = re.fullmatch(r"(\d+)(?:x(\d+))?(?:x(\d+))?", tokens[0]) if len(tokens) >= 2 else None
    if m is None:
        return False
    a, b, c = m.groups()
    shape = (int(a),) if b is None else (int(c) if c else 1, int(a), int(b))
    params, last = 0, None
    for tok in tokens[1:]:
        if m := re.fullmatch(r"(\d+)C(\d+)(?:p(\d+))?(?:s(\d+))?", tok):
            n, k, pad, stride = int(m[1]), int(m[2]), int(m[3] or 0), int(m[4] or 1)
            if len(shape) != 3 or min(n, k, stride) < 1:
                return False
            h, w = ((x + 2 * pad - k) // stride + 1 for x in shape[1:])
            params += shape[0] * n * k * k + n
            shape = (n, h, w)
        elif m := re.fullmatch(r"([PS])(\d+)", tok):
            k = int(m[2])
            if len(shape) != 3 or k < 1 or min(shape[1:]) < k:
                return False
            shape = (shape[0], shape[1] // k, shape[2] // k)
        elif m := re.fullmatch(r"(\d+)(R?)", tok):
            n = int(m[1])
            params += math.prod(shape) * n + n + (n * n if m[2] else 0)
            shape = (n,)
        elif re.fullmatch(r"D(0?\.\d+|0)", tok):
            last = "dropout"
            continue
        else:
            return False
        if min(shape) < 1 or params > 100_000_000:
            return False
        last = "layer"
    return last == "layer"


def _in(lo, hi, lo_open=False, hi_open=False):
    return lambda v: (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)


SPEC = {  # key: (type, optional, predicate on the coerced value), from the documented ranges
    "network": (STR, False, network_ok),
    "init_gain": (FLOAT, False, _in(0, math.inf, lo_open=True, hi_open=True)),
    "data.dataset": (STR, False, lambda v: v in ("digits", "mnist", "nmnist", "cifar10")),
    "data.data_dir": (STR, True, lambda v: bool(v.strip())),
    "data.encoder": (STR, False, lambda v: v in ("bernoulli", "repeat", "events")),
    "data.T": (INT, False, _in(1, 100_000)),
    "data.train_samples": (INT, True, _in(1, math.inf)),
    "data.test_samples": (INT, True, _in(1, math.inf)),
    "data.event_duration_us": (FLOAT, True, _in(0, math.inf, lo_open=True, hi_open=True)),
    "neuron.model": (STR, False, lambda v: v in ("lif", "cuba")),
    "neuron.decay": (FLOAT, False, _in(0, 1)),
    "neuron.decay_syn": (FLOAT, False, _in(0, 1)),
    "neuron.decay_mem": (FLOAT, False, _in(0, 1)),
    "neuron.v_threshold": (FLOAT, False, _in(0, math.inf, lo_open=True, hi_open=True)),
    "neuron.surrogate": (STR, False, lambda v: v in SURROGATES),
    "neuron.surrogate_width": (FLOAT, False, _in(0, math.inf, lo_open=True, hi_open=True)),
    "neuron.per_neuron": (BOOL, False, None), "neuron.learn_decay": (BOOL, False, None),
    "neuron.learn_threshold": (BOOL, False, None), "neuron.learn_bias": (BOOL, False, None),
    "neuron.detach_reset": (BOOL, False, None),
    "loss.name": (STR, False, lambda v: v in LOSSES),
    "loss.tau": (FLOAT, False, _in(0, math.inf, lo_open=True, hi_open=True)),
    "loss.target_rate": (FLOAT, False, _in(0, 1, lo_open=True)),
    "optim.epochs": (INT, False, _in(0, math.inf)),
    "optim.batch_size": (INT, False, _in(1, math.inf)),
    "optim.lr": (FLOAT, False, _in(0, math.inf, lo_open=True, hi_open=True)),
    "optim.optimizer": (STR, False, lambda v: v in ("adam", "adamw", "sgd")),
    "optim.momentum": (FLOAT, False, _in(0, 1, hi_open=True)),
    "optim.weight_decay": (FLOAT, False, _in(0, math.inf, hi_open=True)),
    "optim.schedule": (STR, False, lambda v: v in ("cosine", "none")),
    "optim.grad_clip": (FLOAT, True, _in(0, math.inf, lo_open=True, hi_open=True)),
    "optim.seed": (INT, False, _in(0, 2 ** 63 - 1)),
    "optim.device": (STR, False, lambda v: re.fullmatch(r"auto|cpu|cuda|cuda:[0-9]{1,3}", v) is not None),
    "optim.eval_batch_size": (INT, False, _in(1, math.inf)),
    "optim.checkpoint_every": (INT, False, _in(0, math.inf)),
    "quant.qat": (BOOL, False, None), "quant.synaptic_delay": (BOOL, False, None),
    "quant.num_weight_bits": (INT, False, _in(1, 8)),
    "quant.rounding": (STR, False, lambda v: v in ("nearest", "floor")),
    "quant.target_vth": (INT, False, _in(1, 2 ** 17 - 1)),
    "quant.decay_bits": (INT, False, _in(1, 12)),
    "quant.vth_bits": (INT, False, _in(1, 17)),
    "quant.shared_exponent": (BOOL, False, None),
    "quant.bias_exp": (INT, True, _in(0, 7)),
}


def value_ok(key: str, v) -> bool:
    """Whether ``v``, as a file gives it, is a valid value of ``key`` (types, then ranges)."""
    tp, optional, pred = SPEC[key]
    if v is None:
        return optional
    if tp == BOOL:
        return isinstance(v, bool)
    if tp == STR:
        return isinstance(v, str) and pred(v)
    if isinstance(v, bool):
        return False
    if tp == INT:
        if isinstance(v, float) and math.isfinite(v) and v.is_integer():
            v = int(v)
        return isinstance(v, int) and pred(v)
    if isinstance(v, str):  # YAML reads 1e-3 as a string; a float field parses it
        try:
            v = float(v)
        except ValueError:
            return False
    return isinstance(v, (int, float)) and math.isfinite(v) and pred(v)


VALUE_POOL = [0, 1, -1, 2, 7, -4, 16, 10 ** 9, 2 ** 63, 2 ** 63 - 1, 0.0, -0.0, 0.2, 0.5, 1.0, 1.5, -2.5, 1e-3,
              1e300, float("nan"), float("inf"), float("-inf"), True, False, None, "", " ", "abc", "nan", "inf",
              "1e-3", "20", "auto", "cpu", "cuda:1", "cuda:x", "tpu", "lif", "cuba", "adam", "sgd", "cosine",
              "nearest", "floor", "digits", "mnist", "events", "rate_mse", "van_rossum", "arctan", "/data",
              [1, 2], {"a": 1}, *NETWORKS]


def base_config() -> dict:
    return make_config("nmnist-seq", overrides={
        "data.data_dir": "/data/nmnist", "data.train_samples": 500, "data.test_samples": 100,
        "data.event_duration_us": 300000.0, "optim.grad_clip": 1.0, "quant.bias_exp": 6}).to_dict()


def set_dotted(d: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    for p in parents:
        d = d[p]
    d[leaf] = value


def flatten(d: dict, prefix="") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and f"{prefix}{k}" not in SPEC:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def toml_text(d: dict) -> str | None:
    """A TOML writer for scalar leaves (None if a value has no TOML form, null included: TOML would
    leave the key out, which means its default)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
        if isinstance(v, int):
            return str(v) if -2 ** 63 <= v < 2 ** 63 else None
        if isinstance(v, str):
            return json.dumps(v)
        return None
    lines, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append(f"[{k}]")
            for kk, vv in v.items():
                text = val(vv)
                if text is None:
                    return None
                tables.append(f"{kk} = {text}")
        else:
            text = val(v)
            if text is None:
                return None
            lines.append(f"{k} = {text}")
    return "\n".join(lines + tables) + "\n"


def write_config(rng, folder: Path, d, fmt: str | None = None) -> Path:
    fmt = fmt or rng.choice(["yaml", "json", "toml"])
    text = toml_text(d) if fmt == "toml" and isinstance(d, dict) else None
    if text is None:
        fmt = rng.choice(["yaml", "json"])
        text = yaml.safe_dump(d) if fmt == "yaml" else json.dumps(d)
    path = folder / f"config.{fmt}"
    path.write_text(text)
    return path


def config_check(cfg) -> str | None:
    """An accepted configuration must hold only valid values (of the keys ``SPEC`` knows)."""
    bad = [k for k, v in flatten(cfg.to_dict()).items() if k in SPEC and not value_ok(k, v)]
    return f"accepted invalid values for {bad}" if bad else None


def config_case(rng: random.Random, folder: Path):
    """(path, expect, check, kind)."""
    kind = rng.choice(["value", "value", "text", "structure"])
    d = base_config()
    if kind == "value":
        expect = True
        for key in rng.sample(sorted(SPEC), rng.randint(1, 3)):
            pool = VALUE_POOL
            if rng.random() < 0.5:  # as often a value the key accepts
                pool = [v for v in VALUE_POOL + [0.3, 0.9, 3, 100, 1e-4, 5.0] if value_ok(key, v)] or VALUE_POOL
            v = copy.deepcopy(rng.choice(pool))
            set_dotted(d, key, v)
            expect = expect and value_ok(key, v)
        return write_config(rng, folder, d), expect, config_check, kind
    if kind == "text":
        path = write_config(rng, folder, d)
        path.write_bytes(mutate_bytes(rng, path.read_bytes()))
        return path, None, config_check, kind
    shape = rng.randrange(12)
    path = folder / rng.choice(["c.yaml", "c.yml", "c.json", "c.toml"])
    if shape == 0:
        path.write_text(json.dumps(rng.choice([[1, 2], 3, "x", None, [d]])) if path.suffix == ".json"
                        else "- 1\n- 2\n")
    elif shape == 1:
        depth = rng.choice([100, 1000, 5000, 100_000])
        path.write_text("[" * depth if path.suffix != ".toml" else "a = " + "[" * depth)
    elif shape == 2:
        path = folder / "bomb.yaml"
        n = rng.randint(10, 60)
        lines = ["a0: &a0 {x: 1, y: 1}"] + [f"a{i}: &a{i} {{x: *a{i - 1}, y: *a{i - 1}}}" for i in range(1, n)]
        lines.append(f"{rng.choice(['optim', 'data', 'zzz'])}: *a{n - 1}")
        path.write_text("\n".join(lines) + "\n")
    elif shape == 3:
        d[rng.choice(["colour", "optim.lrr", "data.frames"])] = 1
        path = write_config(rng, folder, d, "yaml")
    elif shape == 4:
        path = folder / "keys.yaml"
        path.write_text(rng.choice(["{1: 2}", "? [a, b]\n: 1\n", "optim: {1: 2}\n", "null: 3\n"]))
    elif shape == 5:
        path.write_text("#" * ((1 << 20) + rng.randint(1, 100)))
    elif shape == 6:
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))))
        return path, None, config_check, kind
    elif shape == 7:
        path.write_bytes(b"optim:\n  lr: \xff\xfe\n")
    elif shape == 8:
        d[rng.choice(["data", "optim", "neuron"])] = rng.choice([3, "x", [1], None])
        path = write_config(rng, folder, d, "yaml")
    elif shape == 9:
        path = folder / "c.txt"
        path.write_text("optim:\n  lr: 0.1\n")
    elif shape == 10:
        path = folder / "empty.yaml"
        path.write_text(rng.choice(["", "\n", "# nothing\n", "---\n"]))
        return path, True, config_check, kind
    else:
        path = folder / "missing.yaml"
    return path, False, config_check, kind


def test_fuzz_config_files(tmp_path):
    tally = Tally("config files")
    for i in range(CASES):
        rng = random.Random(f"config-{i}")
        folder = tmp_path / str(i)
        folder.mkdir()
        path, expect, check, kind = config_case(rng, folder)
        run_case(tally, f"config-{i} ({kind})", lambda: make_config(file=path), expect, [path], check)
    tally.finish()


# ------------------------------------------------------------------------------------------ IDX


IDX_CODES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
ZERO_MEMBER = gzip.compress(bytes(1 << 20), compresslevel=9)  # 1 MiB of zeros in about 1 kB


def idx_oracle(blob: bytes):
    """(valid, array) of an IDX file from the format's definition (module docstring of datasets)."""
    data = blob
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except Exception:  # noqa: BLE001 - any failure: not a gzip stream
            return False, None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in IDX_CODES:
        return False, None
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        return False, None
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype = np.dtype(IDX_CODES[data[2]])
    if math.prod(dims) * dtype.itemsize > ds.MEMORY_BUDGET_BYTES:
        return False, None
    if len(data) - 4 - 4 * ndim != math.prod(dims) * dtype.itemsize:
        return False, None
    return True, np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)


def idx_case(rng: random.Random):
    """(bytes, expect or None for the oracle, kind)."""
    code = rng.choice(list(IDX_CODES))
    dims = tuple(rng.randint(1, 6) for _ in range(rng.randint(1, 3)))
    payload = bytes(rng.randrange(256) for _ in range(math.prod(dims) * np.dtype(IDX_CODES[code]).itemsize))
    raw = struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + payload
    kind = rng.choice(["valid", "header", "size", "flip", "garbage", "bomb", "huge", "members"])
    packed = rng.random() < 0.5
    if kind == "header":
        b = bytearray(raw)
        b[rng.randrange(min(len(b), 4 + 4 * len(dims)))] = rng.randrange(256)
        raw = bytes(b)
    elif kind == "size":
        raw = raw[:-rng.randint(1, 8)] if rng.random() < 0.5 else raw + bytes(rng.randint(1, 8))
    elif kind == "garbage":
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        if rng.random() < 0.3:
            raw = b"\x1f\x8b" + raw
        return raw, None, kind
    elif kind == "bomb":  # declares the payload, then megabytes of zeros in more gzip members
        return gzip.compress(raw) + ZERO_MEMBER * rng.randint(8, 256), False, kind
    elif kind == "huge":  # declares far more than the budget, holds almost nothing
        huge = struct.pack(">HBB", 0, 0x0D, 3) + struct.pack(">3I", *(rng.randint(40_000, 2 ** 32 - 1)
                                                                     for _ in range(3)))
        return (gzip.compress(huge + bytes(64)) if packed else huge + bytes(64)), False, kind
    elif kind == "members":  # a valid file split over two gzip members
        cut = rng.randrange(len(raw))
        return gzip.compress(raw[:cut]) + gzip.compress(raw[cut:]), None, kind
    blob = gzip.compress(raw) if packed else raw
    if kind == "flip":
        blob = mutate_bytes(rng, blob)
    return blob, None, kind


def test_fuzz_idx_files(tmp_path):
    tally = Tally("IDX files")
    for i in range(CASES):
        rng = random.Random(f"idx-{i}")
        blob, expect, kind = idx_case(rng)
        path = tmp_path / f"case{i}-idx-ubyte"
        path.write_bytes(blob)
        valid, want = (False, None) if expect is False else idx_oracle(blob)

        def check(got, want=want):
            if got.dtype != want.dtype.newbyteorder("=") or got.shape != want.shape:
                return f"got {got.dtype} {got.shape}, the file holds {want.dtype} {want.shape}"
            return None if got.tobytes() == want.astype(got.dtype).tobytes() else "values differ from the file's"
        run_case(tally, f"idx-{i} ({kind})", lambda: ds.read_idx(path), valid, [path], check if valid else None)
        path.unlink()
    tally.finish()


# ------------------------------------------------------------------------------------- N-MNIST


def events_oracle(blob: bytes):
    """(valid, (x, y, p, t)) of an N-MNIST event file from the format's definition."""
    if len(blob) % 5:
        return False, None
    b = np.frombuffer(blob, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    if (b[:, 0] >= 34).any() or (b[:, 1] >= 34).any():
        return False, None
    return True, (b[:, 0], b[:, 1], b[:, 2] >> 7, ((b[:, 2] & 0x7F) << 16) | (b[:, 3] << 8) | b[:, 4])


def events_blob(rng: random.Random, n: int) -> bytes:
    out = bytearray()
    for _ in range(n):
        t = rng.randrange(1 << 23)
        out += bytes([rng.randrange(34), rng.randrange(34), (rng.randrange(2) << 7) | (t >> 16), (t >> 8) & 0xFF,
                      t & 0xFF])
    return bytes(out)


LIST_LINES = [("{id} 3", True), ("{id}\t7", True), ("  {id}   0  ", True), ("# comment", True), ("", True),
              ("{id} 10", False), ("{id} -1", False), ("{id} ²", False), ("{id} 3.0", False), ("{id}", False),
              ("{id} 3 4", False), ("../{id} 3", False), ("/abs/{id} 3", False), ("missing 3", False),
              ("{id} 99999999999", False)]


def nmnist_list_case(rng: random.Random, folder: Path):
    """A list-file layout whose validity is known line by line."""
    expect, lines = True, ["#sample #class"]
    for k in range(rng.randint(1, 6)):
        sid = f"{k:05d}"
        good_events = rng.random() < 0.85
        blob = events_blob(rng, rng.randint(0, 20))
        if not good_events:
            blob = blob + b"\x01" if rng.random() < 0.5 else bytes([40, 1, 0, 0, 0]) + blob
        (folder / f"{sid}.{rng.choice(['bs2', 'bin'])}").write_bytes(blob)
        template, ok = rng.choice(LIST_LINES)
        lines.append(template.format(id=sid))
        uses_file = "{id}" in template and ok and not template.startswith("#")
        expect = expect and ok and (good_events or not uses_file)
    if all(not ln.strip() or ln.lstrip().startswith("#") for ln in lines[1:]):
        expect = True  # no sample: an empty split (refused later, by training)
    (folder / "test.txt").write_text("\n".join(lines) + "\n")
    return expect


def test_fuzz_nmnist_events(tmp_path):
    tally = Tally("N-MNIST events")
    for i in range(CASES):
        rng = random.Random(f"nmnist-{i}")
        kind = rng.choice(["valid", "truncate", "address", "flip", "garbage", "list"])
        if kind == "list":
            folder = tmp_path / f"list{i}"
            folder.mkdir()
            expect = nmnist_list_case(rng, folder)
            run_case(tally, f"nmnist-{i} (list)", lambda: ds.load_nmnist(folder, "test"), expect, [folder])
            continue
        blob = events_blob(rng, rng.randint(0, 60))
        if kind == "truncate":
            blob = blob[:-rng.randint(1, 4)] if blob and rng.random() < 0.5 else blob + bytes(rng.randint(1, 4))
        elif kind == "address" and blob:
            b = bytearray(blob)
            b[5 * rng.randrange(len(b) // 5) + rng.randrange(2)] = rng.randint(34, 255)
            blob = bytes(b)
        elif kind == "flip":
            blob = mutate_bytes(rng, blob)
        elif kind == "garbage":
            blob = bytes(rng.randrange(256) for _ in range(rng.randint(0, 100)))
        path = tmp_path / f"case{i}.bs2"
        path.write_bytes(blob)
        valid, want = events_oracle(blob)

        def check(ev, want=want):
            got = tuple(ev[f].astype(np.int64) for f in ("x", "y", "p", "t"))
            return None if all(np.array_equal(a, b) for a, b in zip(got, want)) else "events differ from the file's"
        run_case(tally, f"nmnist-{i} ({kind})", lambda: ds.read_nmnist_events(path), valid, [path],
                 check if valid else None)
    tally.finish()


# ------------------------------------------------------------------------------------- CIFAR-10


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Eval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",)


class _Popen:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import subprocess

        return subprocess.Popen, (["touch", str(self.marker)],)


class _Plain:
    """An instance of a class the format does not have (pickled by reference to this module)."""

    def __init__(self, marker):
        self.marker = str(marker)


def _evil(rng, marker):
    return rng.choice([_System, _Eval, _Popen, _Plain, lambda m: np.ma.masked_array([1, 2]),
                       lambda m: __import__("collections").OrderedDict(a=1)])(marker)


def cifar_case(rng: random.Random, marker: Path):
    """(pickle bytes, expect, want (data, labels) or None, kind)."""
    n = rng.randint(0, 4)
    data_ok = (np.arange(n * 3072) * 7 % 256).astype(np.uint8).reshape(n, 3072)
    ints = [rng.randrange(10) for _ in range(n)]
    data_kind = rng.choice(["ok", "ok", "ok", "fortran", "int64", "shape", "1d", "list", "float", "none"])
    data = {"ok": data_ok, "fortran": np.asfortranarray(data_ok), "int64": data_ok.astype(np.int64),
            "shape": data_ok[:, :3000], "1d": data_ok.reshape(-1), "list": data_ok.tolist(),
            "float": data_ok.astype(np.float32), "none": None}[data_kind]
    data_valid = data_kind in ("ok", "fortran")
    label_kind = rng.choice(["ints", "ints", "np-scalars", "int8", "uint8", "floats", "float-array", "bools",
                             "strings", "range", "length", "nested", "none", "tuple", "big"])
    labels = {"ints": ints, "np-scalars": [np.int64(v) for v in ints], "int8": np.array(ints, np.int8),
              "uint8": np.array(ints, np.uint8), "floats": [float(v) for v in ints],
              "float-array": np.array(ints, np.float64), "bools": [bool(v % 2) for v in ints],
              "strings": [str(v) for v in ints], "range": ints[:-1] + [rng.choice([10, -1, 255])] if n else [10],
              "length": ints + [1], "nested": [[v] for v in ints], "none": None, "tuple": tuple(ints),
              "big": ints[:-1] + [2 ** 70] if n else [2 ** 70]}[label_kind]
    labels_valid = label_kind in ("ints", "np-scalars", "int8", "uint8") or (
        n == 0 and label_kind in ("floats", "float-array", "bools", "strings", "nested"))
    keys = rng.choice(["bytes", "bytes", "str", "missing"])
    k = (lambda s: s.encode()) if keys == "bytes" else (lambda s: s)
    batch = {k("batch_label"): b"fuzz", k("filenames"): [b"a.png"] * n}
    if keys != "missing":
        batch[k("data")], batch[k("labels")] = data, labels
    else:
        batch[k(rng.choice(["data", "labels"]))] = data
    evil = rng.random() < 0.25
    if evil:
        where = rng.choice(["value", "label", "top"])
        if where == "value":
            batch[k("extra")] = _evil(rng, marker)
        elif where == "label" and isinstance(labels, list):
            labels.append(_evil(rng, marker))
        else:
            batch = [batch, _evil(rng, marker)]
    expect = data_valid and labels_valid and keys != "missing" and not evil
    blob = pickle.dumps(batch, protocol=rng.randint(0, pickle.HIGHEST_PROTOCOL))
    if rng.random() < 0.3:  # random damage on top: the oracle no longer knows
        return mutate_bytes(rng, blob), None, None, "bytes"
    return blob, expect, (data_ok, ints), f"{data_kind}/{label_kind}/{keys}{'/evil' if evil else ''}"


def test_fuzz_cifar_batches(tmp_path):
    tally = Tally("CIFAR-10 batches")
    marker = tmp_path / "marker"
    for i in range(CASES):
        rng = random.Random(f"cifar-{i}")
        blob, expect, want, kind = cifar_case(rng, marker)
        folder = tmp_path / str(i)
        folder.mkdir()
        (folder / "test_batch").write_bytes(blob)

        def check(split, want=want):
            n = len(split)
            if split.inputs.shape != (n, 3, 32, 32) or split.labels.dtype != torch.int64:
                return f"inputs {tuple(split.inputs.shape)}, labels {split.labels.dtype}"
            if n and (int(split.labels.min()) < 0 or int(split.labels.max()) > 9):
                return "labels outside 0..9"
            if want is not None:
                data, labels = want
                if split.labels.tolist() != labels:
                    return "labels differ from the batch's"
                if not torch.equal(split.inputs, torch.from_numpy(data.astype(np.float32) / 255).reshape(-1, 3, 32, 32)):
                    return "pixels differ from the batch's"
            return None
        run_case(tally, f"cifar-{i} ({kind})", lambda: ds.load_cifar10(folder, "test"), expect,
                 [folder / "test_batch"], check, marker=marker)
    tally.finish()


# ------------------------------------------------------------------------------------ checkpoints


TINY = {"data.train_samples": 64, "data.test_samples": 32, "data.T": 4, "optim.epochs": 2, "optim.batch_size": 32,
        "network": "64-20-10"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz") / "run"
    trainer.train(make_config("digits-mlp", overrides=TINY), out, progress=False, log=lambda *_: None)
    return out


def checkpoint_mutation(rng: random.Random, state: dict, marker: Path) -> tuple[bool, str]:
    """Change ``state`` in place; (still valid, what changed)."""
    model = state["model"]
    name = rng.choice(sorted(model))
    kind = rng.randrange(22)
    if kind == 0:
        noise = torch.randn(model[name].shape, generator=torch.Generator().manual_seed(rng.randrange(2 ** 32)))
        model[name] = model[name] + noise * rng.random()
        return True, "finite weights changed"
    if kind == 1:
        state["extra"] = rng.randrange(100)
        return True, "an extra entry"
    if kind == 2:
        state["history"][-1]["train_loss"] = rng.random()
        return True, "history values changed"
    if kind == 3:
        model[name].view(-1)[rng.randrange(model[name].numel())] = rng.choice([float("nan"), float("inf")])
        return False, "non-finite parameter"
    if kind == 4:
        del state[rng.choice(sorted(trainer._STATE_TYPES))]
        return False, "missing entry"
    if kind == 5:
        state[rng.choice(["epoch", "step"])] = rng.choice(["1", 1.0, True, None, [1]])
        return False, "mistyped position"
    if kind == 6:
        state["epoch"] = rng.randint(3, 10 ** 6)
        return False, "epoch past the run"
    if kind == 7:
        state["step"] = rng.randint(-10 ** 6, -1)
        return False, "negative step"
    if kind == 8:
        state["step"] = rng.randint(1, 5)  # at epoch == epochs: a finished run has no step
        return False, "step after the last epoch"
    if kind == 9:
        state["history"] = state["history"][:rng.randrange(len(state["history"]))]
        return False, "history shorter than the epochs"
    if kind == 10:
        state["history"][0] = rng.choice([1, "x", None, [1]])
        return False, "history record not a dict"
    if kind == 11:
        del model[name]
        return False, "parameter missing"
    if kind == 12:
        model[name + "_extra"] = torch.zeros(2)
        return False, "unknown parameter"
    if kind == 13:
        model[name] = torch.zeros(tuple(s + 1 for s in model[name].shape) or (2,))
        return False, "parameter shape"
    if kind == 14:
        model[name] = rng.choice([1.0, "w", None, [1.0]])
        return False, "parameter not a tensor"
    if kind == 15:
        key = rng.choice(["optim.lr", "data.T", "neuron.decay", "optim.batch_size"])
        set_dotted(state["config"], key, rng.choice([float("nan"), -1, "x", None]))
        return False, f"invalid {key}"
    if kind == 16:
        state["config"][rng.choice(["colour", "optim2"])] = 1
        return False, "unknown configuration key"
    if kind == 17:
        state[rng.choice(["config", "model", "optimizer", "scheduler", "history"])] = rng.choice([1, "x", None])
        return False, "entry of the wrong type"
    if kind == 18:
        target = rng.choice(["top", "history", "config", "model"])
        evil = rng.choice([_System, _Eval, _Popen, _Plain])(marker)
        if target == "top":
            state["evil"] = evil
        elif target == "history":
            state["history"].append(evil)
        elif target == "config":
            state["config"]["data"]["data_dir"] = evil
        else:
            model["evil"] = evil
        return False, "a malicious object"
    if kind == 19:
        model[name] = model[name].double()  # load_state_dict casts finite values: still valid
        return True, "float64 parameter"
    if kind == 20:
        state["config"]["network"] = "64-30-10"
        return False, "network of another size"
    state["config"]["optim"]["epochs"] = rng.randint(2, 10)  # a run that may still grow
    return True, "more epochs configured"


def checkpoint_check(result) -> str | None:
    cfg, model = result
    if any(not torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point()):
        return "non-finite parameters accepted"
    fresh = trainer.make_model(cfg)
    if {k: v.shape for k, v in fresh.state_dict().items()} != {k: v.shape for k, v in model.state_dict().items()}:
        return "parameters do not fit the configured network"
    return None


def test_fuzz_checkpoints(tiny_run, tmp_path):
    tally = Tally("checkpoints")
    marker = tmp_path / "marker"
    base = torch.load(tiny_run / trainer.CHECKPOINT, weights_only=True)
    for i in range(CASES):
        rng = random.Random(f"checkpoint-{i}")
        run = tmp_path / str(i)
        run.mkdir()
        path = run / trainer.CHECKPOINT
        state = copy.deepcopy(base)
        kind = rng.choice(["structure", "structure", "bytes", "format"])
        expect, what = None, kind
        if kind == "structure":
            expect, what = checkpoint_mutation(rng, state, marker)
            torch.save(state, path)
        elif kind == "bytes":
            buf = io.BytesIO()
            torch.save(state, buf)
            path.write_bytes(mutate_bytes(rng, buf.getvalue(), rng.randint(1, 3)))
        else:
            expect = False
            form = rng.randrange(4)
            if form == 0:
                path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))))
            elif form == 1:
                torch.save(state, path, _use_new_zipfile_serialization=False)  # legacy format: not ours
            elif form == 2:
                path.write_bytes(pickle.dumps(state))
            else:
                import zipfile

                with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                    zf.writestr("archive/data.pkl", pickle.dumps({"epoch": 1}))
            what = f"format {form}"
        run_case(tally, f"checkpoint-{i} ({what})", lambda: trainer.load_run(run), expect, [path],
                 checkpoint_check, marker=marker)
    tally.finish()


# ------------------------------------------------------------------------ network files (npz, NIR, netx)
#
# Each case starts from a valid file: a random small integer graph saved by spikeport (a .npz record,
# a NIR file, a netx file), or one of the committed files of other libraries (snnTorch, Norse, sinabs
# NIR; lava-dl slayer netx). A mutation of a known kind makes it valid or invalid by the format's
# definition (the expectation), or damages random bytes (unknown). Accepted results are compared with
# what the file holds: the values the mutation wrote (records), or the arithmetic of the pristine file.


def random_graph(rng: random.Random, netx: bool = False):
    """A small valid IntGraph: [conv -> group (-> sum pool)] -> dense -> group [-> recurrent dense] ->
    dense -> group. ``netx``: what netx can hold (no pooling, dense weights even in [-256, 254] with
    exponent 0, biases of exponent 6, one register value per layer)."""
    from spikeport.sim.graph import Flatten, Input, IntGraph, NeuronGroup, Output
    from spikeport.sim.network import Conv2d, Dense, Neurons, SumPool2d, conv_output_shape

    nr = np.random.default_rng(rng.randrange(2 ** 32))

    def neurons(n):
        per = not netx and rng.random() < 0.3
        bias_mant = nr.integers(-4096, 4096, n) if per else int(nr.integers(-200, 200))
        bias_exp = 6 if netx else (nr.integers(0, 8, n) if per else int(nr.integers(0, 8)))
        return Neurons(du=int(nr.integers(0, 4096)), dv=int(nr.integers(0, 4096)), vth=int(nr.integers(1, 300)),
                       bias_mant=bias_mant, bias_exp=bias_exp)

    def dense(n_out, n_in):
        w = nr.integers(-128, 128, (n_out, n_in)) * 2
        return Dense(w, weight_exp=0 if netx else int(nr.integers(-3, 3)))

    nodes, edges, prev = {}, [], "in"
    if rng.random() < 0.4:
        c, h = rng.randint(1, 3), rng.randint(4, 7)
        nodes["in"] = Input((c, h, h))
        co, k, pad = rng.randint(1, 3), rng.randint(1, 3), rng.randint(0, 1)
        nodes["conv"] = Conv2d(nr.integers(-256, 256, (co, c, k, k)), padding=(pad, pad),
                               weight_exp=int(nr.integers(0, 2)))
        shape = conv_output_shape((c, h, h), co, (k, k), (1, 1), (pad, pad))
        nodes["feat"] = NeuronGroup(shape, neurons(math.prod(shape)))
        edges += [("in", "conv"), ("conv", "feat")]
        prev, n_in = "feat", math.prod(shape)
        if not netx and rng.random() < 0.5 and min(shape[1:]) >= 2:
            nodes["pool"], nodes["flat"] = SumPool2d(2), Flatten()
            edges += [("feat", "pool"), ("pool", "flat")]
            prev, n_in = "flat", shape[0] * (shape[1] // 2) * (shape[2] // 2)
    else:
        n_in = rng.randint(3, 12)
        nodes["in"] = Input((n_in,))
    hidden, n_out = rng.randint(2, 10), rng.randint(1, 5)
    nodes["fc1"], nodes["hid"] = dense(hidden, n_in), NeuronGroup((hidden,), neurons(hidden))
    edges += [(prev, "fc1"), ("fc1", "hid")]
    if rng.random() < 0.3:
        nodes["rec"] = dense(hidden, hidden)
        edges += [("hid", "rec"), ("rec", "hid")]
    nodes["fc2"], nodes["out"], nodes["y"] = dense(n_out, hidden), NeuronGroup((n_out,), neurons(n_out)), Output()
    edges += [("hid", "fc2"), ("fc2", "out"), ("out", "y")]
    return IntGraph(nodes, edges, dt=rng.choice([1e-3, 1.0, 2.5e-4]))


def same_values(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype.kind in "biuf" and b.dtype.kind in "biuf" and bool(np.all(a == b))


def same_graph(a, b) -> str | None:
    """None if ``a`` and ``b`` are the same integer graph (names, node types, every field, edges, dt)."""
    if type(a) is not type(b) or set(a.nodes) != set(b.nodes) or set(a.edges) != set(b.edges) or a.dt != b.dt:
        return "a different graph (nodes, edges or dt)"
    for name, x in a.nodes.items():
        y = b.nodes[name]
        if type(x) is not type(y):
            return f"node {name!r}: {type(y).__name__} instead of {type(x).__name__}"
        for f in dataclasses.fields(x):
            u, v = getattr(x, f.name), getattr(y, f.name)
            if hasattr(u, "FIELDS"):  # Neurons
                if v is None or not all(same_values(getattr(u, k), getattr(v, k)) for k in u.FIELDS):
                    return f"node {name!r}: other neuron registers"
            elif isinstance(u, (np.ndarray, np.generic)) or isinstance(v, (np.ndarray, np.generic)):
                if not same_values(u, v):
                    return f"node {name!r}: other {f.name}"
            elif u != v:
                return f"node {name!r}: {f.name} {v!r} instead of {u!r}"
    return None


def same_arithmetic(a, b, steps: int = 6) -> str | None:
    """None if the graphs compute the same (every group's spikes, u and v on a seeded input; groups
    paired in order, so names may differ)."""
    from spikeport.sim.simulator import simulate

    shape = a.shapes[a.inputs()[0]]
    if [a.shapes[n] for n in a.groups()] != [b.shapes[n] for n in b.groups()] or shape != b.shapes[b.inputs()[0]]:
        return "other shapes"
    x = (np.random.default_rng(5).random((2, steps, *shape)) < 0.5).astype(np.int8)
    ra, rb = simulate(a, x, record=True), simulate(b, x, record=True)
    for na, nb in zip(a.groups(), b.groups()):
        if any(not np.array_equal(getattr(ra, k)[na], getattr(rb, k)[nb]) for k in ("spikes", "u", "v")):
            return f"group {nb!r} computes differently"
    return None


# --- .npz integer records -----------------------------------------------------------------------------

def npz_parts(path: Path) -> tuple[dict, dict]:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    return json.loads(arrays.pop("header").tobytes()), arrays


def npz_write(path: Path, header, arrays: dict, compressed: bool = True) -> None:
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    (np.savez_compressed if compressed else np.savez)(path, header=np.frombuffer(blob, np.uint8), **arrays)


def npy_bytes(arr, shape=None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(arr.dtype),
                                               "fortran_order": False, "shape": arr.shape if shape is None else shape})
    buf.write(arr.tobytes())
    return buf.getvalue()


# register ranges from sim/formats.py's documentation (Lava's): valid values, and out-of-range ones
REGISTER_BAD = {"du": [4096, -2, 10 ** 6], "dv": [-1, 4097], "vth": [-1, 2 ** 17 + 1], "bias_mant": [4096, -4097],
                "bias_exp": [-1, 8], "weight": [256, -257, 2 ** 40]}
REGISTER_OK = {"du": [0, 4095, -1], "dv": [0, 4096, 17], "vth": [0, 2 ** 17 - 1, 2 ** 17], "bias_mant": [-4096, 4095],
               "bias_exp": [0, 7], "weight": [-256, 255, 0]}


def array_refs(header: dict) -> list:
    """``(node name, field, array key)`` of every array the graph header refers to."""
    out = []
    for name, entry in header["nodes"]:
        for f, v in entry.items():
            if isinstance(v, dict) and "array" in v:
                out.append((name, f, v["array"]))
            elif isinstance(v, dict) and "neurons" in v:
                out += [(name, k, r["array"]) for k, r in v["neurons"].items() if isinstance(r, dict)]
    return out


def record_check(header: dict, arrays: dict):
    """What an accepted record must hold: the arrays and fields the file gives, node by node."""
    def check(got):
        if header.get("format") != "spikeport.intgraph":  # a chain record
            for i, layer in enumerate(header["layers"]):
                syn = got.layers[i].synapse
                if syn.kind != layer["kind"] or (f"{i}.weight" in arrays and not same_values(
                        np.asarray(syn.weight), arrays[f"{i}.weight"])):
                    return f"layer {i}: other synapse"
                for n in ("du", "dv", "vth", "bias_mant", "bias_exp"):
                    if not same_values(np.asarray(getattr(got.layers[i].neurons, n)), arrays[f"{i}.{n}"]):
                        return f"layer {i}: other {n}"
            return None if got.dt == header["dt"] else "other dt"
        if list(got.nodes) != [n for n, _ in header["nodes"]] or got.dt != header["dt"]:
            return "other nodes or dt"
        if set(got.edges) != {tuple(e) for e in header["edges"]}:
            return "other edges"
        for name, entry in header["nodes"]:
            node = got.nodes[name]
            if node.kind != entry["kind"]:
                return f"node {name!r}: kind {node.kind}"
            for f, v in entry.items():
                if f == "kind":
                    continue
                value = getattr(node, f)
                if isinstance(v, dict) and "array" in v:
                    ok = same_values(value, arrays[v["array"]])
                elif isinstance(v, dict) and "neurons" in v:
                    ok = all(same_values(getattr(value, k), arrays[r["array"]] if isinstance(r, dict) else r)
                             for k, r in v["neurons"].items())
                else:
                    ok = (list(value) if isinstance(value, tuple) else value) == v
                if not ok:
                    return f"node {name!r}: other {f}"
        return None
    return check


def npz_case(rng: random.Random, folder: Path):
    """(path, expect, check, kind)."""
    graph = random_graph(rng)
    path = folder / "net.npz"
    chain = rng.random() < 0.15
    if chain:  # the older chain format
        while "rec" in graph.nodes:
            graph = random_graph(rng)
        graph.to_chain().save(path)
    else:
        graph.save(path)
    header, arrays = npz_parts(path)
    kind = rng.choice(["valid", "dt", "register", "register", "dtype", "header", "zip", "bytes"] if not chain
                      else ["valid", "dt", "bytes", "chain"])
    expect = True
    if kind == "valid":
        if rng.random() < 0.3:  # stored, Fortran-order or big-endian arrays, an extra member: still the record
            change = rng.randrange(3)
            if change == 0:
                arrays = {k: np.asfortranarray(v) for k, v in arrays.items()}
            elif change == 1:
                arrays = {k: v.astype(v.dtype.newbyteorder(">")) for k, v in arrays.items()}
            else:
                arrays["unused"] = np.arange(3)
            npz_write(path, header, arrays, compressed=rng.random() < 0.5)
    elif kind == "dt":
        value, expect = rng.choice([(1e-3, True), (7, True), (0.5, True), (0, False), (-1e-3, False),
                                    (float("nan"), False), (float("inf"), False), ("x", False), ([1], False)])
        header["dt"] = value
        npz_write(path, header, arrays)
    elif kind == "register":  # one value of one array, in or out of its register's range
        name, field, key = rng.choice(array_refs(header))
        base = "weight" if field == "weight" else field
        good = rng.random() < 0.5
        value = rng.choice((REGISTER_OK if good else REGISTER_BAD)[base])
        a = arrays[key].astype(np.int64).copy()
        if a.size == 0:
            return path, True, record_check(header, arrays), "register (empty)"
        a.reshape(-1)[rng.randrange(a.size)] = value
        arrays[key] = a
        expect = good
        npz_write(path, header, arrays)
        kind = f"register {field}={value}"
    elif kind == "dtype":  # the same values in another dtype (valid), or values no cast may wrap (invalid)
        name, field, key = rng.choice(array_refs(header))
        a = arrays[key]
        form = rng.randrange(5)
        if form == 0 and a.size and a.min() >= 0:
            arrays[key] = a.astype(np.uint64)
        elif form == 1:
            arrays[key] = a.astype(np.float64)
        elif form == 2 and a.size:
            b = a.astype(np.uint64)
            b.reshape(-1)[0] = 2 ** 64 - rng.randint(1, 3)  # as int64: -1 or -2, which every register but vth holds
            arrays[key], expect = b, False
        elif form == 3 and a.size:
            b = a.astype(np.float64)
            b.reshape(-1)[0] = rng.choice([0.5, float("nan"), float("inf"), 1e300, -(2.0 ** 64)])
            arrays[key], expect = b, False
        elif a.size:
            arrays[key], expect = np.array([{"a": 1}] * a.size, dtype=object).reshape(a.shape), False
        npz_write(path, header, arrays)
        kind = f"dtype {form} {field}"
    elif kind == "header":
        expect = False
        form = rng.randrange(14)
        nodes = dict(header["nodes"])
        if form == 0:
            header["nodes"][rng.randrange(len(header["nodes"]))][1]["kind"] = rng.choice(["teleport", 3, None, ["dense"]])
        elif form == 1:
            del arrays[rng.choice(array_refs(header))[2]]
        elif form == 2 and "conv" in nodes:
            nodes["conv"][rng.choice(["stride", "padding"])] = rng.choice([[0, 1], [-1, 0], [1], [1.5, 1], "1"])
        elif form == 3 and "pool" in nodes:
            nodes["pool"]["kernel"] = rng.choice([0, -2, 2.5, "2", None, 10 ** 9])
        elif form == 4:
            shape = nodes["in"]["shape"]
            shape[rng.randrange(len(shape))] += rng.choice([1, -10 ** 6, 2 ** 29])
        elif form == 5:
            header["edges"].append([rng.choice(list(nodes)), "nowhere"])
        elif form == 6:
            header["edges"] = [e for e in header["edges"] if e[1] != "y"]
        elif form == 7:
            header["version"] = rng.choice([2, "1", None])
        elif form == 8:
            header = rng.choice([b"\xff\xfe", b"[" * 100_000, b"[1, 2]", b"{\"format\": ", b"nan"])
        elif form == 9:
            header["meta"] = rng.choice([[1, 2], "x", 3])
        elif form == 10:
            header["edges"].append(list(header["edges"][0]))
        elif form == 11:
            header["nodes"].append(list(header["nodes"][0]))
        elif form == 12:
            del header[rng.choice(["nodes", "edges"])]
        else:
            old = rng.choice([n for n in nodes if n != "y"])  # a consistent rename: still valid
            new = "renamed " + old
            header["nodes"] = [[new if n == old else n, e] for n, e in header["nodes"]]
            header["edges"] = [[new if a == old else a, new if b == old else b] for a, b in header["edges"]]
            expect = True
        if form in (2, 3) and expect is False and not (("conv" in nodes) if form == 2 else ("pool" in nodes)):
            expect = True  # nothing to damage in this graph
        npz_write(path, header, arrays)
        kind = f"header {form}"
    elif kind == "zip":
        expect = False
        form = rng.randrange(6)
        members = {"header": np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays}
        target = rng.choice([k for k in members if k != "header"])
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for k, v in members.items():
                if k == target and form == 0:  # a header declaring far more than the member holds
                    zf.writestr(k + ".npy", npy_bytes(v, (rng.choice([10 ** 4, 3 * 10 ** 9, 2 ** 40]),)))
                elif k == target and form == 1:
                    zf.writestr(zipfile.ZipInfo(k + ".npy"), npy_bytes(v), compress_type=zipfile.ZIP_BZIP2)
                elif k == target and form == 2:
                    zf.writestr(k + ".npy", npy_bytes(v))
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        zf.writestr(k + ".npy", npy_bytes(v))  # the same name twice
                elif k == target and form == 3:
                    zf.writestr(k + ".npy", npy_bytes(v)[:-1])  # one byte short
                else:
                    zf.writestr(k + ".npy", npy_bytes(v))
        if form == 4:  # the central directory claims 2**31 bytes for a member
            blob = bytearray(path.read_bytes())
            with zipfile.ZipFile(path) as zf:
                directory = zf.start_dir
            entry = blob.index((target + ".npy").encode(), directory) - 46
            blob[entry + 24:entry + 28] = (2 ** 31).to_bytes(4, "little")
            path.write_bytes(bytes(blob))
        elif form == 5:
            path.write_bytes(rng.choice([b"", b"PK\x05\x06" + bytes(18), bytes(rng.randrange(256) for _ in range(64))]))
        kind = f"zip {form}"
    elif kind == "chain":
        expect = False
        form = rng.randrange(4)
        if form == 0:
            header["layers"][0]["kind"] = "teleport"
        elif form == 1:
            del header["input_shape"]
        elif form == 2:
            header["dt"] = float("inf")
        else:
            header["layers"][0]["name"] = "renamed"
            expect = True
        npz_write(path, header, arrays)
        kind = f"chain {form}"
    else:  # random damage: an accepted file must still be exactly the record
        blob = path.read_bytes()
        path.write_bytes(mutate_bytes(rng, blob))
        return path, None, record_check(*npz_parts_of(blob)), kind
    return path, expect, record_check(header, arrays) if isinstance(header, dict) else None, kind


def npz_parts_of(blob: bytes) -> tuple[dict, dict]:
    with np.load(io.BytesIO(blob)) as data:
        arrays = {k: data[k] for k in data.files}
    return json.loads(arrays.pop("header").tobytes()), arrays


def test_fuzz_npz_records(tmp_path):
    from spikeport.sim.graph import load_record

    tally = Tally("npz records")
    for i in range(CASES):
        rng = random.Random(f"npz-{i}")
        folder = tmp_path / str(i)
        folder.mkdir()
        path, expect, check, kind = npz_case(rng, folder)
        run_case(tally, f"npz-{i} ({kind})", lambda: load_record(path), expect, [path], check)
    tally.finish()


# --- NIR files -------------------------------------------------------------------------------------------

PEER_NIR = Path(__file__).parent / "data" / "peer_nir"
PEER_NIR_FILES = {  # name: (dt, convention), as tests/test_nir_peers.py and test_nir_peer_graphs.py read them
    "snntorch_leaky": (1e-4, "nir"), "snntorch_synaptic": (1e-4, "nir"), "snntorch_rleaky": (1e-4, "nir"),
    "snntorch_rsynaptic": (1e-4, "nir"), "snntorch_conv": (1e-4, "nir"), "sinabs_cnn": (None, "nir"),
    "norse_lif": (1e-3, "norse-1.1"), "norse_lifbox": (1e-3, "norse-1.1")}
FLOAT_FIELDS = ("weight", "bias", "tau", "tau_mem", "tau_syn", "r", "v_leak", "v_threshold", "w_in")
REQUIRED = {"Affine": ("weight",), "Linear": ("weight",), "Conv2d": ("weight",), "LIF": ("tau", "v_threshold"),
            "CubaLIF": ("tau_mem", "tau_syn"), "IF": ("v_threshold",), "Input": ("shape",), "Output": ("shape",)}


def flip_bits(rng: random.Random, blob: bytes, n: int) -> bytes:
    """``n`` flipped bits and nothing else: offsets stay valid, so libhdf5 reads on into the damage
    (tests/data/untrusted/hang.nir is one of our files with 23 of them, on which it never returns)."""
    b = bytearray(blob)
    for _ in range(n):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def h5_replace(f, name: str, value) -> None:
    if name in f:
        del f[name]
    f[name] = value


def nir_case(rng: random.Random, folder: Path, peers: dict):
    """(path, read kwargs, expect, check, kind)."""
    import h5py

    from spikeport.export.nir import write_nir_graph

    path = folder / "net.nir"
    if rng.random() < 0.35:
        name = rng.choice(sorted(PEER_NIR_FILES))
        dt, convention = PEER_NIR_FILES[name]
        path.write_bytes((PEER_NIR / f"{name}.nir").read_bytes())
        pristine, ours = peers[name], False
        kwargs = {"dt": dt, "convention": convention}
    else:
        pristine, ours, kwargs = random_graph(rng), True, {}
        write_nir_graph(path, pristine)
    kind = rng.choice(["valid", "value", "value", "structure", "bytes", "flips", "garbage"] + ["record"] * (2 * ours))
    # our writer may add a Flatten before a Dense that reads a feature map: the same arithmetic and dt
    same = lambda got: same_arithmetic(pristine, got) or (None if got.dt == pristine.dt else "other dt")  # noqa: E731
    if kind == "valid":
        return path, kwargs, True, same, kind
    if kind in ("bytes", "flips"):
        path.write_bytes(mutate_bytes(rng, path.read_bytes(), rng.randint(1, 30)) if kind == "bytes"
                         else flip_bits(rng, path.read_bytes(), rng.randint(5, 40)))
        return path, kwargs, None, None, kind
    if kind == "garbage":
        path.write_bytes(rng.choice([b"", b"\x89HDF\r\n\x1a\n" + bytes(100), bytes(rng.randrange(256) for _ in range(500))]))
        return path, kwargs, False, None, kind
    with h5py.File(path, "r+") as f:
        nodes = f["node/nodes"]
        names = sorted(nodes)
        if kind == "value":  # one float parameter of one node
            fields = [(n, k) for n in names for k in FLOAT_FIELDS if k in nodes[n]
                      and isinstance(nodes[n][k], h5py.Dataset) and nodes[n][k].size]
            node, field = rng.choice(fields)
            a = np.array(nodes[node][field][()], dtype=np.float64)  # (a 0-d array, not a scalar: writable)
            i = rng.randrange(a.size)
            value, expect = rng.choice([(float("nan"), False), (float("-inf"), False), (1e35, False), (-1e300, False),
                                        ("uint64", False), ("scale", True)]
                                       + [(float("inf"), None if field.startswith("tau") else
                                           (None if field in ("r", "w_in") else False))])
            if value == "uint64":
                a = np.full(a.shape, 2 ** 64 - 1, dtype=np.uint64)
            elif value == "scale":  # a finite change: our files keep their exact records; peers' floats change
                if ours:
                    a.reshape(-1)[i] *= 1.5
                else:  # all of it (one neuron's gain alone may not fit a convolution: a refusal by design)
                    a *= 1.5
                    same = None
            else:
                a.reshape(-1)[i] = value
            h5_replace(nodes[node], field, a)
            return path, kwargs, expect, same if expect else None, f"value {node}.{field}={value}"
        if kind == "record":
            node = rng.choice([n for n in names if "metadata/spikeport" in nodes[n]])
            record = json.loads(nodes[node]["metadata/spikeport"][()])
            form = rng.randrange(8)
            keys = sorted(record["arrays"])
            packed = record["arrays"][rng.choice(keys)] if keys else None
            expect = False
            if form == 0 and packed and math.prod(packed["shape"]):
                n = math.prod(packed["shape"])
                packed.pop("b64", None)
                packed["list"] = [rng.choice([1.5, 2 ** 64 - 1, -(2 ** 63) - 1, "1", None])] * n
            elif form == 1 and packed:
                packed["shape"] = rng.choice([[10 ** 7, 10 ** 7], [-1], [2, "x"], "3"])
            elif form == 2 and packed:
                packed.pop("list", None)
                packed["b64"] = rng.choice(["!!", "", "AAAA" * 10 ** 4])
            elif form == 3:
                record["format"] = rng.choice(["spikeport.nir/9", None, 1])
            elif form == 4:
                record = rng.choice(["{", "[1]", "nan", "\"x\""])
            elif form == 5:
                record["node"]["kind"] = rng.choice(["teleport", None, 1])
            elif form == 6 and keys:
                del record["arrays"][keys[0]]
            else:  # the file's time step: any positive value is valid
                dt = rng.choice([1e-4, 0.5, 3.0])
                h5_replace(f["node/metadata"], "spikeport.dt", dt)
                return path, kwargs, True, lambda got, dt=dt: (None if got.dt == dt else "other dt"), "record dt"
            if form in (0, 1, 2, 6) and (not packed or not math.prod(packed["shape"])):
                return path, kwargs, True, same, "record (no arrays)"
            h5_replace(nodes[node]["metadata"], "spikeport", record if isinstance(record, str) else json.dumps(record))
            return path, kwargs, expect, None, f"record {form}"
        form = rng.randrange(8)
        if form == 0:  # a dataset every node of its type needs
            have = [(n, k) for n in names for k in REQUIRED.get(_nir_type(nodes[n]), ()) if k in nodes[n]]
            node, field = rng.choice(have)
            del nodes[node][field]
        elif form == 1:
            nodes[names[0]]["link"] = h5py.SoftLink("/node/edges")
        elif form == 2:
            nodes[names[0]]["link"] = h5py.ExternalLink(str(PEER_NIR / "snntorch_leaky.nir"), "/node")
        elif form == 3:
            nodes[names[0]].create_dataset("extra", data=np.zeros(2, dtype=[("a", "<i4"), ("b", "<f4")]))
        elif form == 4:  # 64 TB declared, nothing written
            nodes[names[0]].create_dataset("extra", shape=(2 ** 22, 2 ** 22), dtype=np.float32, chunks=(64, 64))
        elif form == 5:
            g = nodes[names[0]]
            for k in range(40):
                g = g.create_group(f"d{k}")
        elif form == 6:
            edges = f["node/edges"][()]
            h5_replace(f["node"], "edges", np.concatenate([edges, np.array([[edges[0][0], b"nowhere"]], dtype=object)]).astype(
                h5py.string_dtype()))
        else:
            inputs = [n for n in names if _nir_type(nodes[n]) == "Input"]
            h5_replace(nodes[inputs[0]], "shape", np.array([2 ** 20, 2 ** 20]))
        return path, kwargs, False, None, f"structure {form}"


def _nir_type(group) -> str:
    t = group["type"][()] if "type" in group else b""
    return t.decode() if isinstance(t, bytes) else str(t)


def test_fuzz_nir_files(tmp_path, monkeypatch):
    from spikeport.export.nir import read_nir

    monkeypatch.setenv("SPIKEPORT_READ_TIMEOUT", "5")  # a file that hangs libhdf5 is refused well before HANG_SECONDS
    peers = {name: read_nir(PEER_NIR / f"{name}.nir", dt=dt, convention=conv)[0]
             for name, (dt, conv) in PEER_NIR_FILES.items()}
    tally, timeouts = Tally("NIR files"), Counter()
    for i in range(CASES):
        rng = random.Random(f"nir-{i}")
        folder = tmp_path / str(i)
        folder.mkdir()
        path, kwargs, expect, check, kind = nir_case(rng, folder, peers)
        run_case(tally, f"nir-{i} ({kind})", counting_timeouts(lambda: read_nir(path, **kwargs)[0], timeouts),
                 expect, [path], check)
    print(f"\nNIR files refused at the read timeout (libhdf5 did not finish): {timeouts['n']}")
    tally.finish()


def counting_timeouts(read, timeouts: Counter):
    """``read``, counting the refusals at SPIKEPORT_READ_TIMEOUT (files on which libhdf5 hangs)."""
    def run():
        try:
            return read()
        except ValueError as err:
            timeouts["n"] += "SPIKEPORT_READ_TIMEOUT" in str(err)
            raise
    return run


# --- netx files ---------------------------------------------------------------------------------------------

LAVA_DL = Path(__file__).parent / "data" / "lava_dl"


def netx_case(rng: random.Random, folder: Path, slayer: dict):
    """(path, expect, check, kind)."""
    import h5py

    from spikeport.export.netx import write_netx

    path = folder / "net.net"
    if rng.random() < 0.3:
        name = rng.choice(sorted(slayer))
        path.write_bytes((LAVA_DL / f"{name}.net").read_bytes())
        pristine = slayer[name]
    else:
        for attempt in range(20):  # not every random graph is netx-expressible (netx's weight rescaling)
            pristine = random_graph(random.Random(f"{rng.random()}-{attempt}"), netx=True)
            try:
                write_netx(pristine, path)
                break
            except ValueError:
                continue
    same = lambda got: same_arithmetic(pristine, got)  # noqa: E731
    kind = rng.choice(["valid", "value", "value", "neuron", "structure", "attr", "bytes", "flips", "garbage"])
    if kind == "valid":
        return path, True, same, kind
    if kind in ("bytes", "flips"):
        path.write_bytes(mutate_bytes(rng, path.read_bytes(), rng.randint(1, 30)) if kind == "bytes"
                         else flip_bits(rng, path.read_bytes(), rng.randint(5, 40)))
        return path, None, None, kind
    if kind == "garbage":
        path.write_bytes(rng.choice([b"", bytes(rng.randrange(256) for _ in range(300))]))
        return path, False, None, kind
    with h5py.File(path, "r+") as f:
        layers = f["layer"]
        n = len(layers)
        if kind == "attr":  # our names attribute damaged: the same network under default names
            f.attrs["spikeport"] = rng.choice(["{", "[1, 2]", "{\"format\": \"spikeport.netx/2\", \"names\": 3}"])
            return path, True, same, kind
        with_weight = [k for k in range(n) if "weight" in layers[str(k)]]
        with_neuron = [k for k in range(n) if "neuron" in layers[str(k)]]
        if kind == "value":
            k = rng.choice(with_weight)
            w = layers[f"{k}/weight"][()].astype(np.float64)
            form = rng.randrange(5)
            if form == 0:
                w.reshape(-1)[rng.randrange(w.size)] = rng.choice([float("nan"), float("inf"), float("-inf")])
            elif form == 1:
                w = np.full(w.shape, 2 ** 64 - 2, dtype=np.uint64)
            elif form == 2:
                w = np.concatenate([w, w], axis=0)  # rows that do not match the layer's shape
            elif form == 3:
                h5_replace(layers[str(k)], "shape", np.array(rng.choice([[0], [2 ** 30], [-3]])))
                return path, False, None, f"value shape {k}"
            else:
                # negative delays: Lava's DelayDense refuses them (non-negative ones are valid synaptic delays)
                h5_replace(layers[str(k)], "delay", -np.ones(w.shape[:1], dtype=np.int64))
                if _netx_type(layers[str(k)]) == "conv":
                    return path, True, same, "value delay on conv"  # netx ignores conv delays (hdf5.py 527-530)
                return path, False, None, f"value delay {k}"
            h5_replace(layers[str(k)], "weight", w)
            return path, False, None, f"value {form} layer {k}"
        if kind == "neuron":
            if not with_neuron:
                return path, True, same, "neuron (none)"
            ng = layers[f"{rng.choice(with_neuron)}/neuron"]
            key, value = rng.choice([("iDecay", 5000), ("iDecay", -1), ("vDecay", -1), ("vDecay", 4097),
                                     ("vThMant", 2 ** 17 + 1), ("vThMant", -1), ("messageBits", 1),
                                     ("type", b"RF_IZ"), ("iDecay", 2 ** 64 - 1)])
            if key in ng:
                del ng[key]
            ng[key] = np.array(value, dtype=np.uint64) if value == 2 ** 64 - 1 else value
            return path, False, None, f"neuron {key}={value!r}"
        form = rng.randrange(7)
        if form == 0:  # layer/1 .. layer/n-1 are left, or nothing: netx builds nothing from either
            del f["layer/0"]
        elif form == 1:
            layers["0"]["link"] = h5py.SoftLink("/layer")
        elif form == 2:
            layers["0"].create_dataset("extra", data=np.zeros(2, dtype=[("a", "<i4"), ("b", "<f4")]))
        elif form == 3:
            layers["0"].create_dataset("extra", shape=(2 ** 22, 2 ** 22), dtype=np.float32, chunks=(64, 64))
        elif form == 4:
            g = layers["0"]
            for d in range(40):
                g = g.create_group(f"d{d}")
        elif form == 5:
            f.move("layer", "layers")
        else:
            h5_replace(layers[str(n - 1)], "type", np.array([rng.choice([b"pool", b"concat", b"teleport"])]))
        return path, False, None, f"structure {form}"


def _netx_type(group) -> str:
    t = group["type"][()]
    t = t.reshape(-1)[0] if isinstance(t, np.ndarray) else t
    return t.decode() if isinstance(t, bytes) else str(t)


def test_fuzz_netx_files(tmp_path, monkeypatch):
    from spikeport.export.netx import read_netx

    monkeypatch.setenv("SPIKEPORT_READ_TIMEOUT", "5")
    slayer = {p.stem: read_netx(p) for p in sorted(LAVA_DL.glob("*.net"))}
    tally, timeouts = Tally("netx files"), Counter()
    for i in range(CASES):
        rng = random.Random(f"netx-{i}")
        folder = tmp_path / str(i)
        folder.mkdir()
        path, expect, check, kind = netx_case(rng, folder, slayer)
        run_case(tally, f"netx-{i} ({kind})", counting_timeouts(lambda: read_netx(path), timeouts), expect, [path],
                 check)
    print(f"\nnetx files refused at the read timeout (libhdf5 did not finish): {timeouts['n']}")
    tally.finish()


# ---------------------------------------------------------------------------------- command lines


BAD_COMMAND_LINES = [  # (command line, what the one-line error must name)
    ("", "command"), ("nonsense", "nonsense"), ("presets --foo", "--foo"),
    ("train", "--out"), ("train --out {file}", "{file}"), ("train --out {file}/sub", "{file}"),
    ("train --out {run}", "{run}"), ("train --out {unrelated}", "{unrelated}"),
    ("train --out {tmp}/n --preset nope", "nope"), ("train --out {tmp}/n --config {tmp}/missing.yaml", "missing.yaml"),
    ("train --out {tmp}/n --config {scanner_yaml}", "scanner.yaml"), ("train --out {tmp}/n --config {list_json}", "list.json"),
    ("train --out {tmp}/n --config {deep_yaml}", "deep.yaml"), ("train --out {tmp}/n --config {tmp}/c.txt", "c.txt"),
    ("train --out {tmp}/n --set optim.batch_size=-4", "optim.batch_size"),
    ("train --out {tmp}/n --set optim.batch_size=0", "optim.batch_size"),
    ("train --out {tmp}/n --set data.T=0", "data.T"), ("train --out {tmp}/n --set data.T=-2", "data.T"),
    ("train --out {tmp}/n --set neuron.decay=nan", "neuron.decay"),
    ("train --out {tmp}/n --set neuron.decay=1.5", "neuron.decay"),
    ("train --out {tmp}/n --set neuron.v_threshold=-1", "neuron.v_threshold"),
    ("train --out {tmp}/n --set optim.lr=inf", "optim.lr"), ("train --out {tmp}/n --set optim.lr=0", "optim.lr"),
    ("train --out {tmp}/n --set optim.epochs=-1", "optim.epochs"),
    ("train --out {tmp}/n --set optim.epochs=0", "nothing to train"),
    ("train --out {tmp}/n --set optim.device=tpu", "optim.device"),
    ("train --out {tmp}/n --set optim.nope=1", "optim.nope"), ("train --out {tmp}/n --set x", "'x'"),
    ("train --out {tmp}/n --set optim.lr=[", "optim.lr"), ("train --out {tmp}/n --set network=784-0-10", "network"),
    ("train --out {tmp}/n --set network=784-99999999-10", "MAX_PARAMETERS"),
    ("train --out {tmp}/n --set data.train_samples=0", "data.train_samples"),
    ("train --out {tmp}/n --set data.dataset=imagenet", "imagenet"),
    ("train --out {tmp}/n --set data.train_samples=8", "smaller than one batch"),
    ("train --out {tmp}/n --device tpu", "tpu"), ("train --out {tmp}/n --device cuda:999", "cuda:999"),
    ("train --out {tmp}/n --resume --overwrite", "--overwrite"), ("train --out {tmp}/empty --resume", "config.json"),
    ("train --out {tmp}/n --preset mnist-mlp --data-dir {tmp}/none", "train-images-idx3-ubyte"),
    ("train --out {tmp}/n --preset mnist-mlp --data-dir {bad_mnist}", "bad_mnist"),
    ("train --out {tmp}/n --set data.dataset=cifar10 --set data.data_dir={evil_cifar} --set network=32x32x3-10",
     "refused to unpickle"),
    ("train --out {evil_run} --resume", "checkpoint.pt"),
    ("evaluate", "run_dir"), ("evaluate {tmp}/missing", "missing"), ("evaluate {file}", "{file}"),
    ("evaluate {run} --device tpu", "tpu"), ("evaluate {evil_run}", "checkpoint.pt"),
    ("evaluate {garbage_run}", "checkpoint.pt"), ("evaluate {nan_run}", "NaN"),
    ("export {run}", "--out"), ("export {run} --out {tmp}", "directory"), ("export {run} --out {tmp}/no/x.nir", "no"),
    ("export {run} --format xyz --out {tmp}/x", "xyz"), ("export {run} --dt 0 --out {tmp}/x.nir", "--dt"),
    ("export {run} --dt -1 --out {tmp}/x.nir", "--dt"), ("export {run} --dt nan --out {tmp}/x.nir", "--dt"),
    ("export {tmp}/missing --out {tmp}/x.npz --format npz", "missing"),
    ("export {file} --out {tmp}/x.npz --format npz", "{file}"), ("export {evil_run} --out {tmp}/x.npz", "checkpoint.pt"),
    ("simulate {run} --samples 0", "--samples"), ("simulate {run} --samples -3", "--samples"),
    ("simulate {run} --samples abc", "abc"), ("simulate {run} --T 0", "--T"), ("simulate {run} --T -2", "--T"),
    ("simulate {run} --dt 0", "--dt"), ("simulate {run} --input {tmp}/missing.npy", "missing.npy"),
    ("simulate {run} --input {tmp}", "{tmp}"), ("simulate {run} --input {garbage_npy}", "garbage.npy"),
    ("simulate {run} --input {object_npy}", "object.npy"), ("simulate {run} --input {short_npy}", "short.npy"),
    ("simulate {run} --input {wrong_shape_npy}", "shape"), ("simulate {run} --input {graded_npy}", "input"),
    ("simulate {run} --dataset digits --output {tmp}", "--output"),
    ("simulate {run} --dataset digits --output {tmp}/no/y.npy", "no"),
    ("simulate {run} --dataset digits --output {file}/y.npy", "{file}"),
    ("simulate {run} --dataset digits --record {file}", "{file}"),
    ("simulate {tmp}/missing.nir", "missing.nir"), ("simulate {file}", "{file}"),
    ("simulate {run} --dataset imagenet", "imagenet"),
    ("simulate {run} --dataset mnist --data-dir {tmp}/none", "train-images-idx3-ubyte"),
    ("simulate {run} --dataset cifar10 --data-dir {evil_cifar}", "refused to unpickle"),
    ("simulate {run} --timing fast", "fast"),
    ("deploy {run} --target tpu --dataset digits", "tpu"), ("deploy {run} --samples 0", "--samples"),
    ("validate {run} --samples 0", "--samples"), ("validate {run} --lava-samples -1", "--lava-samples"),
    ("validate {tmp}/missing", "missing"), ("validate {file}", "{file}"),
    ("pipeline --lava-samples 0", "--lava-samples"), ("pipeline --dt 0", "--dt"), ("pipeline --out {file}", "{file}"),
    ("pipeline --out {tmp}/p --set optim.lr=nan", "optim.lr"), ("pipeline --out {tmp}/p --preset nope", "nope"),
    ("study quant {run} --out {file}", "{file}"), ("study quant {run} --out {tmp}/s --workers 0", "--workers"),
    ("study quant {run} --out {tmp}/s --samples 0", "--samples"), ("study quant {run} --out {tmp}/s --qat-lr nan", "nan"),
    ("study quant {run} --out {tmp}/s --qat-epochs 0", "--qat-epochs"),
    ("study quant {run} --out {tmp}/s --weight-bits abc", "abc"),
    ("study quant {run} --out {tmp}/s --weight-bits 9 --mode ptq", "9"),
    ("study quant {run} --out {tmp}/s --mode xyz", "xyz"), ("study quant {run} --out {tmp}/s --T 0 --mode ptq", "T"),
    ("study quant {tmp}/missing --out {tmp}/s", "missing"), ("study quant nope-preset --out {tmp}/s", "nope-preset"),
    ("study quant {run} --out {tmp}/s --set optim.lr=0.1", "overrides"),
    ("traffic {run} --dataset digits --samples 0 --out {tmp}/t", "--samples"),
    ("traffic {run} --dataset digits --T -1 --out {tmp}/t", "--T"),
    ("traffic {run} --dataset digits --out {file}", "{file}"),
    ("traffic {run} --input {tmp}/missing.npy --out {tmp}/t", "missing.npy"),
    ("traffic {run} --dataset digits --profile nope --out {tmp}/t", "nope"),
    ("traffic {run} --dataset digits --profile {list_json} --out {tmp}/t", "list.json"),
    ("traffic {run} --out {tmp}/t", "--input"), ("traffic {tmp}/missing --dataset digits --out {tmp}/t", "missing"),
    ("simulate {lie_npz} --dataset digits", "lie.npz"), ("simulate {nan_nir} --dataset digits", "nan.nir"),
    ("simulate {wrap_netx} --dataset digits", "wrap.net"),
]


@pytest.fixture(scope="module")
def cli_files(tiny_run, tmp_path_factory):
    """Every file the bad command lines point at."""
    tmp = tmp_path_factory.mktemp("cli")
    f = {"tmp": tmp, "run": tiny_run, "file": tmp / "file"}
    f["file"].write_text("a file, not a folder")
    (tmp / "empty").mkdir()
    (tmp / "c.txt").write_text("optim:\n  lr: 0.1\n")
    f["unrelated"] = tmp / "unrelated"
    f["unrelated"].mkdir()
    (f["unrelated"] / "config.json").write_text('{"name": "another tool"}')
    for name, text in (("scanner_yaml", "optim: [\n"), ("list_json", "[1, 2]"), ("deep_yaml", "[" * 10000)):
        f[name] = tmp / name.replace("_", ".")
        f[name].write_text(text)
    f["bad_mnist"] = tmp / "bad_mnist"
    f["bad_mnist"].mkdir()
    for prefix in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            (f["bad_mnist"] / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\xff\xff\xff\xff"))
    f["evil_cifar"] = tmp / "evil_cifar"
    f["evil_cifar"].mkdir()
    marker = tmp / "marker"
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (f["evil_cifar"] / name).write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8),
                                                           b"labels": [_System(marker)]}))
    for name, change in (("evil_run", lambda s: s.__setitem__("history", [_System(marker)] + s["history"])),
                         ("nan_run", lambda s: s["model"]["layers.0.weight"].view(-1).__setitem__(0, float("nan")))):
        f[name] = tmp / name
        f[name].mkdir()
        state = torch.load(tiny_run / trainer.CHECKPOINT, weights_only=True)
        change(state)
        torch.save(state, f[name] / trainer.CHECKPOINT)
        (f[name] / trainer.CONFIG).write_bytes((tiny_run / trainer.CONFIG).read_bytes())
    f["garbage_run"] = tmp / "garbage_run"
    f["garbage_run"].mkdir()
    (f["garbage_run"] / trainer.CHECKPOINT).write_bytes(b"PK\x03\x04 not really a zip")
    arrays = {"garbage_npy": None, "object_npy": np.array([{"a": 1}], dtype=object),
              "short_npy": np.zeros((3, 4, 64), np.int8), "wrong_shape_npy": np.zeros((2, 4, 63), np.int8),
              "graded_npy": np.full((2, 4, 64), 0.5, np.float32)}
    for name, arr in arrays.items():
        f[name] = tmp / name.replace("_npy", ".npy")
        if arr is None:
            f[name].write_bytes(b"\x93NUMPY garbage")
        else:
            np.save(f[name], arr, allow_pickle=True)
    blob = f["short_npy"].read_bytes()
    f["short_npy"].write_bytes(blob[:-10])
    f["marker"] = marker
    network_files(tmp, f)
    return f


def network_files(tmp: Path, f: dict) -> None:
    """A .npz declaring 24 GB in its header, a NIR file with a NaN weight, a netx file with a uint64
    weight that int64 would wrap to -2 (each of the digits network's shape: 64 inputs)."""
    import h5py

    from spikeport.export.netx import write_netx
    from spikeport.export.nir import write_nir_graph
    from spikeport.sim.graph import Input, IntGraph, NeuronGroup, Output
    from spikeport.sim.network import Dense, Neurons

    w = np.random.default_rng(0).integers(-50, 50, (10, 64)) * 2
    graph = IntGraph({"in": Input((64,)), "fc": Dense(w), "g": NeuronGroup((10,), Neurons(dv=100, vth=20)), "y": Output()},
                     [("in", "fc"), ("fc", "g"), ("g", "y")])
    graph.save(tmp / "net.npz")
    header, arrays = npz_parts(tmp / "net.npz")
    f["lie_npz"] = tmp / "lie.npz"
    with zipfile.ZipFile(f["lie_npz"], "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("header.npy", npy_bytes(np.frombuffer(json.dumps(header).encode(), np.uint8)))
        for k, v in arrays.items():
            zf.writestr(k + ".npy", npy_bytes(v, (3_000_000_000,) if k.endswith("weight") else None))
    f["nan_nir"], f["wrap_netx"] = tmp / "nan.nir", tmp / "wrap.net"
    write_nir_graph(f["nan_nir"], graph)
    write_netx(graph, f["wrap_netx"])
    with h5py.File(f["nan_nir"], "r+") as h:
        a = h["node/nodes/fc/weight"][()].astype(np.float64)
        a[0, 0] = np.nan
        h5_replace(h["node/nodes/fc"], "weight", a)
    with h5py.File(f["wrap_netx"], "r+") as h:
        key = next(f"layer/{k}/weight" for k in range(len(h["layer"])) if f"layer/{k}/weight" in h)
        a = np.abs(h[key][()]).astype(np.uint64)
        a[0, 0] = 2 ** 64 - 2
        del h[key]
        h[key] = a


def test_fuzz_bad_command_lines(cli_files):
    """Every line must end in exit 2 with one line on stderr naming the problem: exit 0 is a silent
    acceptance, any other exit or a traceback a crash."""
    import shlex

    tally = Tally("command lines")
    marker = cli_files["marker"]
    fields = {k: str(v) for k, v in cli_files.items()}
    for i, (line, must_name) in enumerate(BAD_COMMAND_LINES):
        argv = [a.format(**fields) for a in shlex.split(line)]
        name = must_name.format(**fields)

        def run(argv=argv):
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = cli_main(argv)
                except SystemExit as exc:
                    code = exc.code
            return code, err.getvalue()

        result, error, hung = timed(run)
        code, err = result if result is not None else (None, "")
        lines = err.strip().splitlines()
        if hung:
            outcome, detail = "hang", ""
        elif error is not None:
            outcome, detail = "crash", f"{type(error).__name__}: {error}"
        elif code == 0:
            outcome, detail = "silent", "exit 0: the bad command line was accepted"
        elif code != 2 or len(lines) != 1 or "Traceback" in err or name not in err:
            outcome, detail = "crash", f"exit {code}, {len(lines)} lines, must name {name!r}: {err[-300:]!r}"
        else:
            outcome, detail = "refused", ""
        if marker.exists():
            outcome, detail = "code_ran", "the malicious payload ran"
            marker.unlink()
        tally.add(outcome, f"cli-{i}: spikeport {line}", detail)
    tally.finish(need_accepted=False)
