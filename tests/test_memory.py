"""gptkit.memory: heap trimming while streaming tensors, and dropping the pages of a file map."""

from __future__ import annotations

import mmap

import pytest
import torch

from gptkit import memory


def test_trimming_releases_after_every_threshold_of_bytes(monkeypatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(memory, "TRIM_EVERY_BYTES", 1000)
    monkeypatch.setattr(memory, "release_free_memory", lambda: calls.append(1))
    sizes = {"a": 600, "b": 600, "c": 100, "d": 900}  # bytes: 600, 1200 (trim), 100, 1000 (trim)
    read = memory.trimming(lambda name: torch.zeros(sizes[name], dtype=torch.uint8))
    trims_after_each = []
    for name, size in sizes.items():
        assert read(name).nbytes == size
        trims_after_each.append(len(calls))
    assert trims_after_each == [0, 1, 1, 2]


def test_release_free_memory_runs() -> None:
    memory.release_free_memory()  # a no-op without glibc, malloc_trim(0) with it: neither raises


@pytest.mark.skipif(memory.libc_function("madvise") is None, reason="no madvise in this C library")
def test_drop_mapped_pages_discards_private_writes_and_keeps_partial_pages(tmp_path) -> None:
    page = mmap.PAGESIZE
    path = tmp_path / "pages.bin"
    path.write_bytes(bytes(range(256)) * (3 * page // 256))
    with path.open("rb") as fh:
        buffer = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    view = torch.frombuffer(buffer, dtype=torch.uint8)
    view[:] = 7  # private copies of all three pages
    memory.drop_mapped_pages(view.data_ptr() + 1, page * 2)  # covers page 1 whole, pages 0 and 2 in part
    assert (view[:page] == 7).all() and (view[2 * page :] == 7).all()
    assert bytes(buffer[page : 2 * page]) == path.read_bytes()[page : 2 * page]  # read back from the file
