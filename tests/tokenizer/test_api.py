"""The HF-style surface: inputs it refuses, BatchEncoding, lazy export, GGUF files it cannot read."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gptkit
from gptkit.errors import TokenizerError
from gptkit.tokenizer import BatchEncoding, GPT4Tokenizer
from gptkit.tokenizer.pretokenize import SPLIT_REGEXES, byte_level_pre_tokenizer


def test_lazy_top_level_export():
    assert gptkit.GPT4Tokenizer is GPT4Tokenizer


@pytest.mark.parametrize("bad", [None, 42, b"bytes", ["a", 1]])
def test_non_str_text_is_refused(smol, bad):
    with pytest.raises(TokenizerError):
        smol.encode(bad) if not isinstance(bad, list) else smol(bad)


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.decode([0, 49152]),
        lambda t: t.decode([-1]),
        lambda t: t.decode("abc"),
        lambda t: t.decode([[1, 2], [3, 4]]),
        lambda t: t.decode([1.5]),
        lambda t: t(["a", "b"], padding="sideways"),
        lambda t: t(["a"], padding=True, padding_side="middle"),
        lambda t: t("a", truncation="sometimes", max_length=2),
        lambda t: t("a", truncation=True, max_length=-1),
        lambda t: t(["a", "bb cc dd"], return_tensors="pt"),
        lambda t: t("a", return_tensors="np"),
        lambda t: t.encode("a", allowed_special={"<not-special>"}),
        lambda t: t.apply_chat_template("not a list"),
        lambda t: t.apply_chat_template([{"content": "no role"}]),
        lambda t: t.apply_chat_template([{"role": "user", "content": "x"}], chat_template="{% if %}"),
        lambda t: t.apply_chat_template([], chat_template="{{ raise_exception('no empty chats') }}"),
        lambda t: t.convert_ids_to_tokens([10**6]),
        lambda t: setattr(t, "pad_token", "<not-in-vocab>"),
    ],
)
def test_bad_input_raises_tokenizer_error(smol, call):
    with pytest.raises(TokenizerError):
        call(smol)


def test_decode_accepts_tensors_and_single_rows(smol):
    ids = smol.encode("Hello world")
    assert smol.decode(torch.tensor(ids)) == smol.decode(torch.tensor([ids])) == smol.decode(np.array(ids))
    assert smol.decode(ids[0]) == "Hello"
    assert smol.batch_decode(torch.tensor([ids, ids])) == ["Hello world", "Hello world"]


def test_batch_encoding_behaves_like_transformers(smol):
    out = smol(["Hello world", "hi"], padding=True, return_tensors="pt")
    assert isinstance(out, BatchEncoding) and set(out) == {"input_ids", "attention_mask"}
    assert out.to("cpu") is out and out.input_ids.device.type == "cpu"
    assert out.input_ids.shape == out.attention_mask.shape == (2, 2)
    assert out.attention_mask.tolist() == [[1, 1], [0, 1]]  # gptkit pads left by default
    assert "attention_mask" not in smol("hi", return_attention_mask=False)
    with pytest.raises(AttributeError):
        _ = out.token_type_ids


def test_padding_side_attribute(smol):
    assert smol.padding_side == "left"
    smol.padding_side = "right"
    try:
        assert smol(["Hello world", "hi"], padding=True).attention_mask == [[1, 1], [1, 0]]
    finally:
        smol.padding_side = "left"
    with pytest.raises(TokenizerError):
        smol.padding_side = "up"


def test_every_llama_cpp_pre_tokenizer_compiles():
    for name in SPLIT_REGEXES:
        pieces = byte_level_pre_tokenizer(name).pre_tokenize_str("Hello  world 1234 你好!!\n")
        assert "".join(p for p, _ in pieces)  # every split regex runs in Oniguruma
    with pytest.raises(TokenizerError, match="pre-tokenizer"):
        byte_level_pre_tokenizer("no-such-pre")


def write_gguf(path, model: str):
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model(model)
    writer.add_token_list(["<unk>", "<s>", "</s>", "a", "b"])
    writer.add_token_scores([0.0, 0.0, 0.0, -1.0, -2.0])
    writer.add_token_types([2, 3, 3, 1, 1])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_unsupported_gguf_tokenizer_model_is_a_clear_error(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer.ggml.model"):
        GPT4Tokenizer.from_pretrained(write_gguf(tmp_path / "t5.gguf", "t5"))


def test_corrupt_gguf_is_a_tokenizer_error(tmp_path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + b"\x00" * 10)
    with pytest.raises(TokenizerError):
        GPT4Tokenizer.from_pretrained(path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=30), min_size=1, max_size=4))
def test_batch_round_trip_cl100k(gpt4, texts):
    gpt4.pad_token = gpt4.eos_token
    try:
        out = gpt4(texts, padding=True, padding_side="right")
    finally:
        gpt4.pad_token = None
    decoded = [
        gpt4.decode(ids[: sum(mask)]) for ids, mask in zip(out.input_ids, out.attention_mask, strict=True)
    ]
    assert decoded == texts
