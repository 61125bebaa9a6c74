"""The process's memory after large polls: handed back to the system (glibc only)."""

from __future__ import annotations

import ctypes
import functools
import platform

import structlog

log = structlog.get_logger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD_BYTES = 1024 * 1024


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    # Cached: platform.libc_ver() reads the Python executable to find out.
    return ctypes.CDLL(None) if platform.libc_ver()[0] == "glibc" else None


def return_large_blocks_to_the_system() -> None:
    """Have glibc map every block of 1 MiB or more on its own, and unmap it when it is freed.

    By default glibc raises that threshold to the largest block freed so far (up to 32 MiB):
    a poll's columns of a million validators then come from heaps that never shrink, and the
    resident size grew by a fifth in five minutes of polling (bench_load); with it, it stays
    flat. Setting the threshold also ends that raising. Other C libraries are left alone."""
    libc = _glibc()
    if libc is not None and not libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES):
        log.warning("malloc's mmap threshold not set: memory may grow after large polls")


def release_free_memory() -> None:
    """Hand back to the system every whole page that glibc keeps free in its heaps.

    A poll of a large set frees many blocks under the mmap threshold (the answer's socket
    reads, and pieces of its decoding). glibc keeps their pages: after each poll of 1,100,000
    validators about 120 MiB were free in its heaps, and where a block still in use was left
    above them, the resident size stepped up by 100-150 MiB for good (bench_load). Blocking,
    and it holds each heap's lock while it works: call it in a worker thread. Other C
    libraries are left alone."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
