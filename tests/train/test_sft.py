"""SFT data: assistant-only labels on real chat templates, JSONL errors, padded batches, exact resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from gptkit import GPT4Tokenizer
from gptkit.data.shards import DataError
from gptkit.train.sft import (
    IGNORE_INDEX,
    SFTBatches,
    SFTExample,
    load_sft_examples,
    pad_id_for,
    split_examples,
    tokenize_chat,
    tokenize_pair,
)

SYSTEM = {"role": "system", "content": "You are terse."}
TWO_TURNS = [
    SYSTEM,
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "It is 4."},
    {"role": "user", "content": "And 3 + 3?"},
    {"role": "assistant", "content": "Six, of course."},
]


@pytest.fixture(scope="module")
def smol() -> GPT4Tokenizer:
    return GPT4Tokenizer.from_pretrained("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def gpt4() -> GPT4Tokenizer:
    return GPT4Tokenizer.from_pretrained("gpt-4")


def write_jsonl(path: Path, lines: list) -> Path:
    """One line per item: dicts as JSON, strings verbatim."""
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def trained_spans(example: SFTExample) -> list[list[int]]:
    """The maximal runs of trained tokens, in order."""
    spans, current = [], []
    for token, label in zip(example.input_ids, example.labels, strict=True):
        if label == IGNORE_INDEX:
            if current:
                spans.append(current)
            current = []
        else:
            assert label == token
            current.append(token)
    return spans + ([current] if current else [])


# ---- chat labels -----------------------------------------------------------------------------------------
def test_chat_trains_on_assistant_content_and_im_end_only(smol):
    messages = TWO_TURNS[:3]
    example = tokenize_chat(messages, smol)
    rendered = smol.apply_chat_template(messages, tokenize=False)
    assert smol.decode(example.input_ids) == rendered
    assert [smol.decode(span) for span in trained_spans(example)] == ["It is 4.<|im_end|>"]
    # ChatML puts "\n" after <|im_end|> inside the turn; it is template glue, masked like the header.
    assert rendered.endswith("<|im_end|>\n")
    assert smol.decode(example.input_ids[-1:]) == "\n" and example.labels[-1] == IGNORE_INDEX
    assert example.labels[-2] == smol.eos_token_id


def test_multi_turn_trains_both_assistant_turns_and_masks_the_rest(smol):
    example = tokenize_chat(TWO_TURNS, smol)
    spans = [smol.decode(span) for span in trained_spans(example)]
    assert spans == ["It is 4.<|im_end|>", "Six, of course.<|im_end|>"]
    masked = smol.decode(
        [t for t, label in zip(example.input_ids, example.labels, strict=True) if label == IGNORE_INDEX]
    )
    for message in TWO_TURNS[:2] + TWO_TURNS[3:4]:
        assert message["content"] in masked
    assert masked.count("<|im_start|>assistant\n") == 2


def test_template_default_system_prompt_is_masked(smol):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    example = tokenize_chat(messages, smol)
    assert "SmolLM" in smol.decode(example.input_ids)
    assert [smol.decode(span) for span in trained_spans(example)] == ["Hello!<|im_end|>"]


def test_template_that_rewrites_earlier_turns_is_refused(smol):
    counting = "{{ messages | length }}" + smol.chat_template  # the header changes as turns are added
    tokenizer = GPT4Tokenizer(smol.backend, dataclasses.replace(smol.settings, chat_template=counting))
    with pytest.raises(DataError, match="not a prefix"):
        tokenize_chat(TWO_TURNS, tokenizer)


# ---- prompt / completion ---------------------------------------------------------------------------------
def test_pair_on_chat_tokenizer_is_a_user_assistant_exchange(smol):
    example = tokenize_pair("Capital of France?", "Paris.", smol)
    chat = [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]
    assert example == tokenize_chat(chat, smol)
    assert [smol.decode(span) for span in trained_spans(example)] == ["Paris.<|im_end|>"]


def test_pair_on_base_tokenizer_trains_completion_and_eos(gpt4):
    example = tokenize_pair("The capital of France is", " Paris.", gpt4)
    prompt_ids = gpt4.encode("The capital of France is")
    assert example.input_ids[: len(prompt_ids)] == prompt_ids
    assert example.labels[: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    assert [gpt4.decode(span) for span in trained_spans(example)] == [" Paris.<|endoftext|>"]
    assert example.input_ids[-1] == gpt4.eos_token_id == 100257


def test_base_tokenizer_treats_special_token_text_in_data_as_text(gpt4):
    example = tokenize_pair("a <|endoftext|> b", "c", gpt4)
    assert example.input_ids.count(gpt4.eos_token_id) == 1  # only the appended EOS


# ---- loading files ---------------------------------------------------------------------------------------
def test_load_mixed_file_and_truncation(tmp_path, smol):
    path = write_jsonl(
        tmp_path / "sft.jsonl", [{"messages": TWO_TURNS}, "", {"prompt": "Hi", "completion": "Hello!"}]
    )
    full = load_sft_examples(path, smol, max_length=4096)
    assert full == [tokenize_chat(TWO_TURNS, smol), tokenize_pair("Hi", "Hello!", smol)]
    first_turn_end = len(smol.apply_chat_template(TWO_TURNS[:3]))
    cut = load_sft_examples(path, smol, max_length=first_turn_end + 3)
    assert len(cut[0].input_ids) == first_turn_end + 3
    assert cut[0] == SFTExample(full[0].input_ids[: first_turn_end + 3], full[0].labels[: first_turn_end + 3])
    assert [smol.decode(span) for span in trained_spans(cut[0])] == ["It is 4.<|im_end|>"]


def test_examples_without_trainable_tokens_after_truncation_are_dropped_with_a_warning(tmp_path, smol):
    long_system = {"role": "system", "content": "word " * 200}
    path = write_jsonl(
        tmp_path / "sft.jsonl",
        [{"messages": [long_system, *TWO_TURNS[1:3]]}, {"prompt": "Hi", "completion": "Yo"}],
    )
    with pytest.warns(UserWarning, match="dropped 1 of 2 examples"):
        examples = load_sft_examples(path, smol, max_length=64)
    assert examples == [tokenize_pair("Hi", "Yo", smol)]
    with pytest.raises(DataError, match="no example"), pytest.warns(UserWarning):
        load_sft_examples(path, smol, max_length=8)


BAD_LINES = {
    "not json": ("{'messages': ", "not valid JSON"),
    "not an object": ("[1, 2]", "expected a JSON object"),
    "empty messages": ({"messages": []}, "non-empty list"),
    "unknown role": ({"messages": [{"role": "wizard", "content": "x"}]}, "unknown role 'wizard'"),
    "missing content": ({"messages": [{"role": "user"}]}, "missing field 'content'"),
    "non-string content": ({"messages": [{"role": "user", "content": 3}]}, "'content' must be a string"),
    "no assistant": ({"messages": [{"role": "user", "content": "x"}]}, "no assistant message"),
    "missing completion": ({"prompt": "x"}, "missing field 'completion'"),
    "non-string prompt": ({"prompt": 1, "completion": "x"}, "'prompt' must be a string"),
    "neither": ({"text": "x"}, "needs a 'messages' list"),
    "both": ({"messages": TWO_TURNS, "prompt": "x", "completion": "y"}, "not both"),
}


@pytest.mark.parametrize("bad, message", list(BAD_LINES.values()), ids=list(BAD_LINES))
def test_malformed_line_names_file_and_line(tmp_path, smol, bad, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "completion": "b"}, "", bad])
    with pytest.raises(DataError, match="bad.jsonl, line 3") as info:
        load_sft_examples(path, smol, max_length=128)
    assert message in str(info.value)


@pytest.mark.parametrize("content", ["", "\n  \n"], ids=["empty", "blank lines"])
def test_empty_file_is_a_data_error(tmp_path, smol, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match="empty.jsonl holds no examples"):
        load_sft_examples(path, smol, max_length=128)


def test_missing_file_and_chat_data_without_template(tmp_path, gpt4):
    with pytest.raises(DataError, match="does not exist"):
        load_sft_examples(tmp_path / "nope.jsonl", gpt4, max_length=128)
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": TWO_TURNS}])
    with pytest.raises(
        DataError, match="chat.jsonl, line 1: chat data needs a tokenizer with a chat template"
    ):
        load_sft_examples(path, gpt4, max_length=128)


# ---- batches ---------------------------------------------------------------------------------------------
def numbered_examples(n: int) -> list[SFTExample]:
    """Example k has k + 2 tokens, all equal to k + 1; the last token is trained."""
    return [SFTExample([k + 1] * (k + 2), [IGNORE_INDEX] * (k + 1) + [k + 1]) for k in range(n)]


def example_ids(input_ids: torch.Tensor) -> list[int]:
    """Which numbered example each row holds."""
    return [int(row[0]) - 1 for row in input_ids]


def test_batches_are_right_padded_to_the_longest_row():
    examples = numbered_examples(5)
    batches = SFTBatches(examples, batch_size=3, seed=1, pad_id=0)
    input_ids, labels = batches.next_batch()
    assert input_ids.dtype == labels.dtype == torch.long
    rows = [examples[k] for k in example_ids(input_ids)]
    assert input_ids.shape == labels.shape == (3, max(len(e.input_ids) for e in rows))
    for row, example in enumerate(rows):
        n = len(example.input_ids)
        assert input_ids[row, :n].tolist() == example.input_ids
        assert labels[row, :n].tolist() == example.labels
        assert (input_ids[row, n:] == 0).all() and (labels[row, n:] == IGNORE_INDEX).all()


def test_epochs_are_seeded_permutations_and_batches_stay_full():
    batches = SFTBatches(numbered_examples(5), batch_size=2, seed=7)
    served = [k for _ in range(5) for k in example_ids(batches.next_batch()[0])]  # two epochs exactly
    assert sorted(served[:5]) == sorted(served[5:]) == list(range(5))
    assert served[:5] != served[5:]  # each epoch draws its own order
    again = SFTBatches(numbered_examples(5), batch_size=2, seed=7)
    assert [k for _ in range(5) for k in example_ids(again.next_batch()[0])] == served
    other = SFTBatches(numbered_examples(5), batch_size=2, seed=8)
    assert [k for _ in range(5) for k in example_ids(other.next_batch()[0])] != served
    assert batches.state_dict()["epoch"] == 1 and batches.state_dict()["position"] == 5


@pytest.mark.parametrize("steps_before", [0, 1, 3, 4])
def test_resume_from_state_dict_is_exact(steps_before):
    examples = numbered_examples(7)
    reference = SFTBatches(examples, batch_size=3, seed=3)
    for _ in range(steps_before):
        reference.next_batch()
    state = json.loads(json.dumps(reference.state_dict()))
    resumed = SFTBatches(examples, batch_size=3, seed=0)
    resumed.load_state_dict(state)
    for _ in range(6):
        expected, got = reference.next_batch(), resumed.next_batch()
        assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])


def test_resume_refuses_different_data():
    state = SFTBatches(numbered_examples(7), batch_size=3).state_dict()
    with pytest.raises(DataError, match="saved for 7 examples"):
        SFTBatches(numbered_examples(6), batch_size=3).load_state_dict(state)


def test_resume_refuses_pretraining_state():
    with pytest.raises(DataError, match="'pretrain'"):
        SFTBatches(numbered_examples(3), batch_size=1).load_state_dict({"kind": "pretrain", "seed": 0})


def test_ranks_split_the_single_process_global_batch():
    examples = numbered_examples(9)
    single = SFTBatches(examples, batch_size=4, seed=2)
    ranks = [SFTBatches(examples, batch_size=2, seed=2, rank=r, world_size=2) for r in range(2)]
    for _ in range(5):
        together = example_ids(single.next_batch()[0])
        assert [example_ids(r.next_batch()[0]) for r in ranks] == [together[0::2], together[1::2]]
    assert all(r.state_dict() == {**single.state_dict(), "batch_size": 2} for r in ranks)


def test_eval_without_held_out_examples_is_a_data_error():
    batches = SFTBatches(numbered_examples(3), batch_size=2)
    with pytest.raises(DataError, match="no held-out examples"):
        next(batches.eval_batches(2))


def test_split_and_eval_batches():
    examples = numbered_examples(10)
    train, val = split_examples(examples, val_fraction=0.25, seed=5)
    assert len(val) == 3 and len(train) == 7
    assert sorted(id(e) for e in train + val) == sorted(id(e) for e in examples)
    assert split_examples(examples, 0.25, seed=5) == (train, val)
    assert split_examples(examples, 0.0) == (examples, [])
    batches = SFTBatches(train, batch_size=2, val_examples=val)
    assert batches.num_eval_batches == 2
    first = [example_ids(ids) for ids, _ in batches.eval_batches()]
    assert first == [[examples.index(v) for v in val[:2]], [examples.index(val[2])]]
    assert [example_ids(ids) for ids, _ in batches.eval_batches(1)] == first[:1]
    assert [example_ids(ids) for ids, _ in batches.eval_batches()] == first  # the same every time
    with pytest.raises(DataError):
        split_examples(examples, 1.0)


def test_pad_id_is_pad_token_else_eos(smol, gpt4):
    assert pad_id_for(smol) == smol.pad_token_id == smol.convert_tokens_to_ids("<|im_end|>")
    assert pad_id_for(gpt4) == gpt4.eos_token_id


def test_real_file_batches_feed_the_model_loss(tmp_path, smol):
    from gptkit import GPT4Config, GPT4LMHeadModel

    path = write_jsonl(
        tmp_path / "sft.jsonl", [{"messages": TWO_TURNS}, {"prompt": "Hi", "completion": "Yo"}]
    )
    examples = load_sft_examples(path, smol, max_length=256)
    input_ids, labels = SFTBatches(examples, batch_size=2, pad_id=pad_id_for(smol)).next_batch()
    torch.manual_seed(0)
    config = GPT4Config(vocab_size=len(smol), n_layer=1, n_head=2, n_embd=16, context_length=256)
    loss = GPT4LMHeadModel(config)(input_ids, labels=labels).loss
    assert torch.isfinite(loss)
