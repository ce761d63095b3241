"""Reading corpora: expand input paths and globs, stream text files in chunks, read JSONL records.

Text files are read as bytes (exactly what is on disk: no newline translation), decoded as strict UTF-8
and handed out in chunks of about ``CHUNK_CHARS`` characters. A chunk ends just after a newline that is
followed by a non-whitespace character. GPT-4's split regex (cl100k, and Llama 3's copy of it) never
makes a piece that crosses such a point, so encoding chunk by chunk gives exactly the ids of encoding the
whole document; the character-level tokenizer is exact anyway. Tokenizers whose pieces can cross it
(GPT-2's ``\\s+(?!\\S)``, SentencePiece's prefix space) may differ at those line starts only. A text
with no such newline in ``MAX_CHUNK_CHARS`` characters is cut there regardless, to bound memory.
"""

from __future__ import annotations

import codecs
import glob
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from gptkit.data.jsonl import iter_jsonl
from gptkit.data.shards import DataError

CHUNK_CHARS = 1 << 17
MAX_CHUNK_CHARS = 32 * CHUNK_CHARS
READ_BYTES = 1 << 20
JSONL_SUFFIXES = (".jsonl", ".ndjson")

OnBytes = Callable[[int], object]


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files named by paths or glob patterns, in order, without repeats; DataError for missing or empty ones."""
    if not inputs:
        raise DataError("no input files given")
    paths: dict[Path, None] = {}
    for item in inputs:
        for path in _expand_one(str(item)):
            paths.setdefault(path, None)
    for path in paths:
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty")
    return list(paths)


def _expand_one(item: str) -> list[Path]:
    """The files one input names: itself, or the sorted matches of a glob pattern."""
    path = Path(item)
    if path.is_file():
        return [path]
    if path.is_dir():
        raise DataError(f"{item} is a directory; pass the files in it or a glob such as '{item}/*.txt'")
    if not glob.has_magic(item):
        raise DataError(f"no such file: {item}")
    matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
    if not matches:
        raise DataError(f"the pattern {item!r} matches no files")
    return matches


def is_jsonl(path: Path) -> bool:
    """True when the file holds one JSON record per line (by its suffix)."""
    return path.suffix.lower() in JSONL_SUFFIXES


def _is_break(text: str, index: int) -> bool:
    """True when a chunk may end at index: just after a newline, before a non-whitespace character."""
    return text[index - 1] == "\n" and not text[index].isspace()


def chunk_end(text: str, limit: int) -> int:
    """The last break point (see ``_is_break``) at or before limit, else the first one after; 0 when none."""
    end = min(limit, len(text) - 1)
    while (newline := text.rfind("\n", 0, end)) >= 0:
        if _is_break(text, newline + 1):
            return newline + 1
        end = newline
    start = min(limit, len(text))
    while (newline := text.find("\n", start, len(text) - 1)) >= 0:
        if _is_break(text, newline + 1):
            return newline + 1
        start = newline + 1
    return 0


def read_text_chunks(
    path: Path, chunk_chars: int = CHUNK_CHARS, on_bytes: OnBytes | None = None
) -> Iterator[str]:
    """The text of a UTF-8 file in chunks cut at line starts (see the module docstring)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    with path.open("rb") as file:
        while block := file.read(READ_BYTES):
            pending += _decode(decoder, block, path, file.tell() - len(block))
            if on_bytes is not None:
                on_bytes(len(block))
            while len(pending) >= chunk_chars:
                cut = chunk_end(pending, chunk_chars) or (
                    len(pending) if len(pending) >= MAX_CHUNK_CHARS else 0
                )
                if not cut:
                    break
                yield pending[:cut]
                pending = pending[cut:]
        pending += _decode(decoder, b"", path, file.tell(), final=True)
    if pending:
        yield pending


def _decode(decoder: codecs.IncrementalDecoder, block: bytes, path: Path, offset: int, final=False) -> str:
    """Decode the next block of a file, turning bad UTF-8 into a DataError with its byte offset."""
    try:
        return decoder.decode(block, final=final)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (bad byte near offset {offset + exc.start})") from None


def jsonl_texts(path: Path, field: str, on_bytes: OnBytes | None = None) -> Iterator[str]:
    """The string ``field`` of every record of a JSONL file; DataError names the file and line."""
    found = False
    for number, record in iter_jsonl(path, on_bytes):
        if isinstance(record, str):
            raise DataError(f"{path}:{number}: {record}")
        value = record.get(field)
        if not isinstance(value, str):
            problem = "is not a string" if field in record else "is missing"
            raise DataError(f"{path}:{number}: field {field!r} {problem}")
        found = True
        yield value
    if not found:
        raise DataError(f"{path} has no JSON records")


def iter_documents(
    path: Path, jsonl_field: str, chunk_chars: int = CHUNK_CHARS, on_bytes: OnBytes | None = None
) -> Iterator[Iterator[str]]:
    """The documents of one input, each as an iterator of text chunks: a text file is one document."""
    if is_jsonl(path):
        for text in jsonl_texts(path, jsonl_field, on_bytes):
            yield iter((text,))
    else:
        yield read_text_chunks(path, chunk_chars, on_bytes)
