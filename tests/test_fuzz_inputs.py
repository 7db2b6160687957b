"""Fuzzing the readers of untrusted input: configuration files, IDX files, N-MNIST event files and
list files, CIFAR-10 batches, checkpoints, and bad command lines.

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
the counts.
"""
from __future__ import annotations

import contextlib
import copy
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
    return f


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
