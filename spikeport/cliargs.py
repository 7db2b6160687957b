"""Argument types of the command line: every user-given value checked when it is parsed.

Each type either returns the value or raises ``argparse.ArgumentTypeError`` with one line naming
what is wrong; argparse prefixes the option (``argument --samples: must be an integer >= 1, got
0``). Files are checked before any work starts: an input must exist, an output's folder must exist
and be writable, and an output file must not be a directory. ``load_input_spikes`` reads a
``--input`` array the way every reader here does: header first, sizes checked against the file
and ``MAX_INPUT_BYTES`` before anything is allocated, no pickled objects.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

MAX_INPUT_BYTES = 8 << 30
"""Largest ``--input`` array read (8 GiB of spikes)."""


def positive_int(text: str) -> int:
    """An integer >= 1 (``--samples``, ``--T``, ``--workers``, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (``--dt``, ``--qat-lr``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (the rule of ``optim.device``)."""
    from spikeport.train.config import DEVICE

    if not DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def input_file(text: str) -> str:
    """An existing file."""
    p = Path(text)
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a file")
    return text


def _writable_folder(folder: Path, what: str) -> None:
    """``folder`` (where a file or folder will be created) must exist, be a folder and be writable."""
    if not folder.exists():
        raise argparse.ArgumentTypeError(f"{what}: folder {folder} does not exist")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{what}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{what}: folder {folder} is not writable")


def output_file(text: str) -> str:
    """A file to write: not a directory, in an existing writable folder."""
    p = Path(text)
    if not text or p.is_dir():
        raise argparse.ArgumentTypeError(f"{text or repr(text)} is a directory; give a file name")
    _writable_folder(p.parent, text)
    return text


def output_npy(text: str) -> str:
    """An ``.npy`` file to write (``.npy`` appended when missing, as ``numpy.save`` does, so the
    name reported is the name written)."""
    if text and Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name such as {Path(text) / 'out.npy'}")
    return output_file(text if text.endswith(".npy") else text + ".npy")


def output_dir(text: str) -> str:
    """A folder to write into: an existing folder, or a new one under a writable existing folder."""
    p = Path(text)
    if not text:
        raise argparse.ArgumentTypeError("empty folder name")
    if p.exists():
        if not p.is_dir():
            raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
        _writable_folder(p, text)
        return text
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    _writable_folder(parent, text)
    return text


def load_input_spikes(path) -> "np.ndarray":  # noqa: F821 - numpy imported lazily
    """Read a ``--input`` ``.npy`` array: numeric (bool, int, uint or float), sizes from the header
    checked against the file and ``MAX_INPUT_BYTES`` before reading; ``ValueError`` naming the
    file otherwise. Values are checked by the network runners (``sim.simulator.check_input``)."""
    import numpy as np

    from spikeport.sim.npzfile import read_npy_header

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"input {path} does not exist")
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            shape, fortran, dtype = read_npy_header(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        problem = " ".join(str(exc).split())[:200]
        raise ValueError(f"input {path}: not a .npy array ({problem})") from None
    if dtype.hasobject or dtype.kind not in "biuf" or dtype.fields is not None:
        raise ValueError(f"input {path}: dtype {dtype} is not a plain numeric type (spikes are 0/1 numbers)")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_INPUT_BYTES:
        raise ValueError(f"input {path}: shape {shape} needs {nbytes} bytes, more than the {MAX_INPUT_BYTES} "
                         "read (MAX_INPUT_BYTES)")
    if size - offset != nbytes:
        raise ValueError(f"input {path}: header says shape {shape} of {dtype} ({nbytes} bytes) but the file "
                         f"holds {size - offset} bytes of data")
    return np.load(path, allow_pickle=False)


def add_network_args(p) -> None:
    """The network to run and how to read a NIR file, one definition for simulate, deploy and
    traffic (read back by ``spikeport.pipeline.load_network``)."""
    p.add_argument("network", help="training run directory, NIR file (.nir), lava-dl netx file (.net) or integer "
                                   "network file (.npz)")
    p.add_argument("--dt", type=positive_float, help="seconds per step for NIR files that do not say it")
    p.add_argument("--nir-convention", default="nir", choices=["nir", "norse-1.1", "snntorch", "sinabs"],
                   help="the library that wrote a NIR file, where its semantics differ from the file's (norse-1.1: "
                        "tau written as dt*tau, undone; snntorch, sinabs: reset by subtraction, several spikes per "
                        "step: printed as notes)")


def add_protocol_args(p) -> None:
    """The deployment protocol's options, one definition for simulate, deploy, traffic and validate
    (read back by ``spikeport.cli._protocol``)."""
    p.add_argument("--input-bias", type=input_file,
                   help="bias mantissas (samples, *input_shape) of the input neuron group (netx's Input block), "
                        "integers, one row per sample, as lava-dl drives PilotNet")
    p.add_argument("--steps", type=positive_int, help="time steps per sample with --input-bias alone")
    p.add_argument("--reset-interval", type=positive_int,
                   help="run the samples as one stream with netx's periodic reset of u and v every N steps "
                        "(lava-dl Network(reset_interval=N)); each group one step later than the one feeding it")
    p.add_argument("--reset-offset", type=int, default=0, help="netx's reset_offset (phase of the periodic reset)")
