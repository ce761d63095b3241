"""HF directories (tokenizer.json + tokenizer_config.json) against transformers' AutoTokenizer on the same files."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from gptkit.errors import TokenizerError
from gptkit.tokenizer import GPT4Tokenizer

TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello <s> there!"}]


def auto_tokenizer(directory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


@pytest.fixture(scope="module")
def saved_smol(smol, tmp_path_factory):
    directory = tmp_path_factory.mktemp("smol_hf")
    written = smol.save_pretrained(directory)
    assert {p.name for p in written} == {"tokenizer.json", "tokenizer_config.json"}
    return directory


@pytest.fixture(scope="module")
def tiny_dir(corpus, tmp_path_factory):
    """A byte-level BPE trained here, BOS added by its post-processor, pad from special_tokens_map.json."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus * 3, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    directory = tmp_path_factory.mktemp("tiny_hf")
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {"bos_token": "<s>", "eos_token": "</s>", "chat_template": TEMPLATE}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "special_tokens_map.json").write_text(json.dumps({"pad_token": {"content": "<pad>"}}))
    return directory


def test_saved_gguf_tokenizer_round_trips_through_hf_dir(smol, saved_smol, corpus):
    reloaded = GPT4Tokenizer.from_pretrained(saved_smol)
    theirs = auto_tokenizer(saved_smol)
    for text in corpus:
        assert reloaded.encode(text) == smol.encode(text), text
        assert reloaded.encode(text, allowed_special="all") == theirs(text)["input_ids"], text
        assert reloaded.encode(text) == theirs(text, split_special_tokens=True)["input_ids"], text
    assert reloaded.special_tokens_map == smol.special_tokens_map
    assert reloaded.chat_template == smol.chat_template == theirs.chat_template
    assert (reloaded.eos_token_id, reloaded.pad_token_id) == (theirs.eos_token_id, theirs.pad_token_id)
    chat = [{"role": "user", "content": "hi"}]
    assert reloaded.apply_chat_template(chat) == theirs.apply_chat_template(chat, return_dict=False)


def test_trained_tokenizer_matches_transformers(tiny_dir, corpus):
    ours, theirs = GPT4Tokenizer.from_pretrained(tiny_dir), auto_tokenizer(tiny_dir)
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id) == (0, 1, 2)
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id) == (
        theirs.bos_token_id,
        theirs.eos_token_id,
        theirs.pad_token_id,
    )
    for text in corpus:
        ids = ours.encode(text, allowed_special="all")
        assert ids[0] == ours.bos_token_id
        assert ids == theirs(text)["input_ids"], text
        assert ours.decode(ids) == theirs.decode(ids)
        assert (
            ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True) == text
        )
    assert (ours.vocab_size, len(ours)) == (theirs.vocab_size, len(theirs))


def test_trained_tokenizer_chat_template_and_padding(tiny_dir):
    ours, theirs = GPT4Tokenizer.from_pretrained(tiny_dir), auto_tokenizer(tiny_dir)
    for prompt in (False, True):
        text = ours.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=prompt)
        assert text == theirs.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=prompt)
        ids = ours.apply_chat_template(CHAT, add_generation_prompt=prompt, allow_special_in_content=True)
        assert ids == theirs.apply_chat_template(CHAT, add_generation_prompt=prompt, return_dict=False)
        safe = ours.apply_chat_template(CHAT, add_generation_prompt=prompt)  # "<s>" in content stays text
        assert safe.count(ours.bos_token_id) == ids.count(ours.bos_token_id) - 1
        assert ours.decode(safe) == text
    texts = ["a b c d e f", "a"]
    for side in ("left", "right"):
        ours_batch = ours(texts, padding=True, padding_side=side)
        assert dict(ours_batch) == dict(theirs(texts, padding=True, padding_side=side))


def test_ids_from_generation_config(tiny_dir, tmp_path):
    for name in ("tokenizer.json",):
        (tmp_path / name).write_bytes((tiny_dir / name).read_bytes())
    (tmp_path / "generation_config.json").write_text(json.dumps({"bos_token_id": 0, "eos_token_id": [1, 2]}))
    tokenizer = GPT4Tokenizer.from_pretrained(tmp_path)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<s>", "</s>", None)
    assert tokenizer.chat_template is None


def test_chat_template_jinja_file_wins(tiny_dir, tmp_path):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((tiny_dir / name).read_bytes())
    (tmp_path / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    tokenizer = GPT4Tokenizer.from_pretrained(tmp_path)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False) == "x"


def test_bad_directories(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        GPT4Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        GPT4Tokenizer.from_pretrained(tmp_path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60))
def test_hypothesis_trained_tokenizer_round_trips_and_matches(tiny_dir, text):
    ours, theirs = _cached(tiny_dir)
    ids = ours.encode(text, add_special_tokens=False)
    assert ours.decode(ids) == text
    assert ids == theirs(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


_LOADED: dict = {}


def _cached(directory):
    """Ours and transformers' tokenizer for directory, loaded once (hypothesis reruns the test body)."""
    if directory not in _LOADED:
        _LOADED[directory] = (GPT4Tokenizer.from_pretrained(directory), auto_tokenizer(directory))
    return _LOADED[directory]
