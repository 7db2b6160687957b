"""Keep glibc from returning training's buffers to the system every iteration (CPU training only).

A training iteration on CPU allocates and frees the same few large tensors every time (for
784-800-10 at T = 20, batch 64: membrane, spike and gradient buffers of 4 MB each). glibc serves
them from the heap once its dynamic mmap threshold has grown, but its dynamic trim threshold is
only twice that threshold: when more than ~8 MB sits free at the top of the heap after an
iteration, glibc gives it back to the kernel, and the next iteration takes a page fault for every
4 KB page of it again. Measured on this project's 2-core VM (784-800-10, one thread): about 3,000
minor faults per iteration and 40.9 ms CPU against 35.5 ms with the settings below (10 faults per
iteration); the no-neuron floor of ``bench/train_throughput.py`` frees less at once and stays
at 33 ms either way.

``keep_freed_memory`` sets glibc's mmap threshold to its maximum (32 MB on 64-bit) and its trim
threshold to ``trim_mb`` (default 64 MB), which is what ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` would do: the process keeps up to ``trim_mb`` of freed memory for
reuse instead of returning it. The trainer calls it when it trains on CPU; set
``SPIKEPORT_MALLOC_TRIM_MB=0`` to leave the allocator alone, or to another size in MB. It does
nothing on a C library other than glibc, and nothing when the user has set either glibc variable.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit; mallopt refuses more
ENV = "SPIKEPORT_MALLOC_TRIM_MB"


def _trim_mb(trim_mb: int | None) -> int:
    if trim_mb is not None:
        return int(trim_mb)
    text = os.environ.get(ENV, "64").strip()
    if text.lower() in ("", "off", "no", "false"):
        return 0
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{ENV}={text!r}: expected a whole number of megabytes (0 leaves malloc alone)") from None
    if value < 0:
        raise ValueError(f"{ENV}={value}: expected >= 0 megabytes (0 leaves malloc alone)")
    return value


@functools.lru_cache(maxsize=None)
def _glibc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        return libc
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS, Windows)
        return None


def keep_freed_memory(trim_mb: int | None = None) -> str:
    """Apply the settings above once per process; returns what was done, in words (for the log)."""
    mb = _trim_mb(trim_mb)
    if mb == 0:
        return f"malloc left alone ({ENV}=0)"
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                     "GLIBC_TUNABLES")):
        return "malloc left alone (the environment sets glibc's malloc tunables)"
    libc = _glibc()
    if libc is None:
        return "malloc left alone (not glibc)"
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    ok = libc.mallopt(M_TRIM_THRESHOLD, max(mb, 1) << 20) == 1 and ok
    if not ok:
        return "malloc left alone (glibc refused mallopt)"
    return f"glibc malloc keeps up to {mb} MB of freed memory (mmap threshold 32 MB; {ENV}=0 turns this off)"
