"""`gptkit data prepare`: tokenize a corpus into train.bin / val.bin / meta.json (see ``shards``).

Documents: a text file is one document; each record of a ``.jsonl`` file is one (its ``jsonl_field``).
Every document is encoded as plain text (special-token text stays text) and followed by the tokenizer's
EOS id when it has one. Text files are streamed in chunks cut at line starts (``documents``), and ids
are appended to the open .bin files chunk by chunk, so memory stays bounded whatever the corpus size.

Split rule: the last ``val_fraction`` of each input file's tokens (EOS ids included) goes to val.bin,
the first ``int(n * (1 - val_fraction))`` to train.bin, nanoGPT's ``data[:int(n * 0.9)]``. For a
single text file val is therefore the end of the text: with the character tokenizer on tinyshakespeare,
1,003,854 train and 111,540 val tokens, the published reference split.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from gptkit.data.documents import CHUNK_CHARS, expand_inputs, iter_documents
from gptkit.data.scrub import KINDS, add_counts, scrub_text
from gptkit.data.shards import DataError, token_dtype, write_meta
from gptkit.tokenizer import GPT4Tokenizer

COPY_TOKENS = 1 << 22  # block size when moving a file's tail from train to val
WORKERS = min(4, os.cpu_count() or 1)  # encoding threads; each holds one chunk batch in flight
DOCUMENT_END = None
T = TypeVar("T")
R = TypeVar("R")


class SplitWriter:
    """Appends token ids to train.bin, then moves the tail of each input's tokens to val.bin.

    Writes go to ``*.bin.tmp`` files that ``commit`` renames, so a failed run leaves no half-written split.
    """

    def __init__(self, directory: Path, dtype: np.dtype, vocab_size: int) -> None:
        self.directory, self.dtype, self.vocab_size = directory, dtype, vocab_size
        self.paths = {split: directory / f"{split}.bin.tmp" for split in ("train", "val")}
        self.train = self.paths["train"].open("w+b")
        self.val = self.paths["val"].open("wb")
        self.train_tokens = self.val_tokens = 0

    def append(self, ids: Sequence[int]) -> None:
        """Append ids to the train split, checking each is inside the vocabulary."""
        if not len(ids):
            return
        try:
            array = np.asarray(ids, dtype=np.uint32)
        except OverflowError as exc:
            raise DataError(f"a token id is outside the vocabulary: {exc}") from None
        high = int(array.max())
        if high >= self.vocab_size:
            raise DataError(f"token id {high} is outside the vocabulary (0..{self.vocab_size - 1})")
        array.astype(self.dtype, copy=False).tofile(self.train)
        self.train_tokens += array.size

    def move_tail_to_val(self, start: int, val_fraction: float) -> None:
        """Move the last val_fraction of the tokens appended since ``start`` from train to val."""
        count = self.train_tokens - start
        keep = start + int(count * (1 - val_fraction))
        size = self.dtype.itemsize
        self.train.flush()
        self.train.seek(keep * size)
        while block := self.train.read(COPY_TOKENS * size):
            self.val.write(block)
        self.val_tokens += self.train_tokens - keep
        self.train.truncate(keep * size)
        self.train.seek(keep * size)
        self.train_tokens = keep

    def commit(self) -> None:
        """Close the files and give them their final names."""
        self.close()
        for split, path in self.paths.items():
            path.replace(self.directory / f"{split}.bin")

    def close(self) -> None:
        self.train.close()
        self.val.close()

    def discard(self) -> None:
        """Close and delete the temporary files (after a failure)."""
        self.close()
        for path in self.paths.values():
            path.unlink(missing_ok=True)


def _as_tokenizer(tokenizer: GPT4Tokenizer | str | Path) -> GPT4Tokenizer:
    """A loaded tokenizer, or one loaded from anything ``GPT4Tokenizer.from_pretrained`` accepts."""
    return tokenizer if isinstance(tokenizer, GPT4Tokenizer) else GPT4Tokenizer.from_pretrained(tokenizer)


def _check_fraction(val_fraction: float) -> float:
    if not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    return float(val_fraction)


class _Encoder:
    """Encodes text pieces as plain text, scrubbing them first when asked; callable from worker threads."""

    def __init__(self, tokenizer: GPT4Tokenizer, scrub: bool) -> None:
        self.tokenizer, self.scrub = tokenizer, scrub

    def __call__(self, pieces: list[str | None]) -> tuple[list[list[int] | None], dict[str, int]]:
        """Ids for each piece (None stays None: a document end) and the scrub counts of the batch."""
        counts = dict.fromkeys(KINDS, 0)
        results: list[list[int] | None] = []
        for text in pieces:
            if text is not None and self.scrub:
                text, found = scrub_text(text)
                add_counts(counts, found)
            results.append(None if text is None else self.tokenizer.encode(text, add_special_tokens=False))
        return results, counts


def _pieces(documents: Iterable[Iterable[str]]) -> Iterator[str | None]:
    """The text chunks of all documents in order, with None after each document."""
    for chunks in documents:
        yield from chunks
        yield DOCUMENT_END


def _batches(pieces: Iterable[str | None], chars: int) -> Iterator[list[str | None]]:
    """Group pieces into lists of about ``chars`` characters (many small JSONL records share a task)."""
    batch: list[str | None] = []
    size = 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece or "")
        if size >= chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _map_in_order(func: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """func over items on a thread pool (tiktoken and tokenizers release the GIL), at most workers in flight."""
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(func, item))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def prepare(
    inputs: Sequence[str | Path],
    tokenizer: GPT4Tokenizer | str | Path,
    out_dir: str | Path,
    *,
    val_fraction: float = 0.1,
    jsonl_field: str = "text",
    scrub: bool = False,
    progress: bool = True,
    chunk_chars: int = CHUNK_CHARS,
) -> dict[str, Any]:
    """Tokenize text / JSONL inputs into a shard directory (train.bin, val.bin, meta.json); return the meta."""
    paths = expand_inputs(inputs)
    val_fraction = _check_fraction(val_fraction)
    tok = _as_tokenizer(tokenizer)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(len(tok))
    writer = SplitWriter(out, dtype, len(tok))
    encode = _Encoder(tok, scrub)
    scrub_counts = dict.fromkeys(KINDS, 0)
    total_bytes = sum(p.stat().st_size for p in paths)
    bar = tqdm(
        total=total_bytes, unit="B", unit_scale=True, desc="prepare", file=sys.stderr, disable=not progress
    )
    try:
        with contextlib.closing(bar):
            documents = 0
            for path in paths:
                start = writer.train_tokens
                documents += _write_documents(
                    iter_documents(path, jsonl_field, chunk_chars, bar.update),
                    writer,
                    encode,
                    chunk_chars,
                    scrub_counts,
                )
                writer.move_tail_to_val(start, val_fraction)
    except BaseException:
        writer.discard()
        raise
    writer.commit()
    meta = {
        "tokenizer": tok.name_or_path,
        "vocab_size": len(tok),
        "dtype": dtype.name,
        "train_tokens": writer.train_tokens,
        "val_tokens": writer.val_tokens,
        "eos_token_id": tok.eos_token_id,
        "documents": documents,
        "inputs": [str(p) for p in paths],
        "bytes": total_bytes,
        "val_fraction": val_fraction,
        "split": "last val_fraction of each input's tokens -> val",
        "scrub": scrub_counts if scrub else None,
    }
    return write_meta(out, meta)


def _write_documents(
    documents: Iterable[Iterable[str]],
    writer: SplitWriter,
    encode: _Encoder,
    chunk_chars: int,
    scrub_counts: dict,
) -> int:
    """Encode documents (each an iterable of text chunks) into train, each followed by EOS; count them.

    An empty document (e.g. a JSONL record with "") is skipped, EOS included.
    """
    eos = [] if encode.tokenizer.eos_token_id is None else [encode.tokenizer.eos_token_id]
    count, written = 0, False
    for results, counts in _map_in_order(encode, _batches(_pieces(documents), chunk_chars), WORKERS):
        add_counts(scrub_counts, counts)
        for ids in results:
            if ids is DOCUMENT_END:
                if written:
                    writer.append(eos)
                    count += 1
                written = False
            else:
                writer.append(ids)
                written = written or bool(ids)
    return count
