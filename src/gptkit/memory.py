"""Handing memory back to the OS through the C library: glibc's malloc_trim and madvise (Linux)."""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def libc_function(name: str) -> Callable | None:
    """The C library's function ``name`` where there is one (glibc: malloc_trim, madvise), else None."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError, TypeError):  # no C library to open (Windows), or not this one
        return None


_MALLOC_TRIM = libc_function("malloc_trim")
_MADVISE = libc_function("madvise") if hasattr(mmap, "MADV_DONTNEED") else None  # Linux


def release_free_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc keeps them after many tensors come and go)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


TRIM_EVERY_BYTES = 64 * 2**20  # while streaming: glibc keeps the heap fragments temporaries leave behind


def trimming(read: Callable[[str], torch.Tensor]) -> Callable[[str], torch.Tensor]:
    """``read``, handing freed heap memory back to the OS after every TRIM_EVERY_BYTES of tensors read.

    Trimming after every tensor made SmolLM2's int4 load ~2x slower (freed pages fault back in); never
    trimming left up to ~180 MB of heap fragments in its peak.
    """
    unreleased = 0

    def read_and_trim(name: str) -> torch.Tensor:
        nonlocal unreleased
        tensor = read(name)
        unreleased += tensor.nbytes
        if unreleased >= TRIM_EVERY_BYTES:
            release_free_memory()
            unreleased = 0
        return tensor

    return read_and_trim


def drop_mapped_pages(start: int, n_bytes: int) -> None:
    """Take the whole pages inside [start, start + n_bytes) of a file map out of this process's memory.

    Only for pages of a read-only file map that nothing wrote to: touching them again reads them back from
    the file (on anonymous memory they would come back zeroed). A no-op where madvise is missing.
    """
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    last = (start + n_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first and _MADVISE is not None:
        _MADVISE(ctypes.c_void_p(first), ctypes.c_size_t(last - first), mmap.MADV_DONTNEED)
