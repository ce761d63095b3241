"""Stop strings (across token boundaries), streamers (multi-byte text), stream_generate."""

from __future__ import annotations

import threading

import pytest
import torch

from gptkit.errors import GenerationError
from gptkit.generation import TextIteratorStreamer, TextStreamer, generate, stream_generate, truncate_at_stop
from gptkit.tokenizer.backend import bytes_to_unicode

PROMPT = torch.tensor([[3, 50, 120, 7]])


def spanning_stop(tokenizer, new_tokens: list[int]) -> tuple[str, int]:
    """A stop string made of the end of one generated token and the start of the next; its last token index."""
    pieces = [tokenizer.decode([t]) for t in new_tokens]
    for i in range(1, len(pieces)):
        stop = pieces[i - 1][-1:] + pieces[i][:1]
        text_before = tokenizer.decode(new_tokens[:i])
        if len(stop) == 2 and "\ufffd" not in stop and stop not in text_before:
            return stop, i
    raise AssertionError("no usable token boundary in the greedy output")


def test_stop_string_spanning_tokens_ends_generation(byte_model, byte_tokenizer):
    free = generate(byte_model, PROMPT, max_new_tokens=30)[0, PROMPT.shape[1] :].tolist()
    stop, last = spanning_stop(byte_tokenizer, free)
    out = generate(byte_model, PROMPT, max_new_tokens=30, stop_strings=[stop], tokenizer=byte_tokenizer)
    new = out[0, PROMPT.shape[1] :].tolist()
    assert new == free[: last + 1]  # up to and including the token that completes the stop string
    assert stop in byte_tokenizer.decode(new) and stop not in byte_tokenizer.decode(new[:-1])


def test_stop_strings_pad_finished_rows_of_a_batch(byte_model, byte_tokenizer):
    prompts = torch.cat([PROMPT, torch.tensor([[9, 9, 200, 31]])])
    free = generate(byte_model, prompts, max_new_tokens=20)
    stop, last = spanning_stop(byte_tokenizer, free[0, 4:].tolist())
    out = generate(
        byte_model, prompts, max_new_tokens=20, stop_strings=stop, tokenizer=byte_tokenizer, pad_token_id=0
    )
    if out.shape[1] > 4 + last + 1:  # the other row continued: row 0 is padded after its stop
        assert bool((out[0, 4 + last + 1 :] == 0).all())
    assert torch.equal(out[0, : 4 + last + 1], free[0, : 4 + last + 1])


def test_truncate_at_stop():
    assert truncate_at_stop("hello world. bye", ["wor", "."]) == "hello "
    assert truncate_at_stop("no stop here", ["###"]) == "no stop here"
    assert truncate_at_stop("a\n\nb", ["\n\n", "b"]) == "a"


def byte_token_ids(tokenizer, text: str) -> list[int]:
    """One token per UTF-8 byte (ByteLevel alphabet), so multi-byte characters split across tokens."""
    table = bytes_to_unicode()
    ids = [tokenizer.token_to_id(table[b]) for b in text.encode()]
    assert None not in ids
    return ids


def test_iterator_streamer_holds_back_incomplete_characters(byte_tokenizer):
    text = "héllo wörld 🙂 naïve café"
    streamer = TextIteratorStreamer(byte_tokenizer)
    for token in byte_token_ids(byte_tokenizer, text):
        streamer.put(torch.tensor([token]))
    streamer.end()
    pieces = list(streamer)
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)
    assert len(pieces) > 10  # text arrives incrementally


def test_iterator_streamer_in_a_thread_matches_final_output(byte_model, byte_tokenizer):
    streamer = TextIteratorStreamer(byte_tokenizer, skip_prompt=True)
    result = {}
    kwargs = dict(max_new_tokens=25, streamer=streamer, do_sample=True, seed=0)
    thread = threading.Thread(target=lambda: result.setdefault("out", generate(byte_model, PROMPT, **kwargs)))
    thread.start()
    streamed = "".join(streamer)
    thread.join()
    assert streamed == byte_tokenizer.decode(result["out"][0, PROMPT.shape[1] :].tolist())


def test_text_streamer_prints_prompt_and_continuation(byte_model, byte_tokenizer, capsys):
    out = generate(byte_model, PROMPT, max_new_tokens=15, streamer=TextStreamer(byte_tokenizer))
    assert capsys.readouterr().out == byte_tokenizer.decode(out[0].tolist()) + "\n"


def test_stream_generate_yields_the_generated_tokens(byte_model):
    eos = int(generate(byte_model, PROMPT, max_new_tokens=4)[0, -1])
    full = generate(byte_model, PROMPT, max_new_tokens=20, eos_token_id=eos)
    streamed = list(stream_generate(byte_model, PROMPT[0].tolist(), max_new_tokens=20, eos_token_id=eos))
    assert streamed == full[0, PROMPT.shape[1] :].tolist() and streamed[-1] == eos


def test_beam_search_stops_on_stop_strings(byte_model, byte_tokenizer):
    free = generate(byte_model, PROMPT, max_new_tokens=20, num_beams=2)
    stop, last = spanning_stop(byte_tokenizer, free[0, PROMPT.shape[1] :].tolist())
    out = generate(
        byte_model, PROMPT, max_new_tokens=20, num_beams=2, stop_strings=stop, tokenizer=byte_tokenizer
    )
    new = out[0, PROMPT.shape[1] :].tolist()
    assert stop in byte_tokenizer.decode(new) and stop not in byte_tokenizer.decode(new[:-1])


def test_stream_generate_checks_arguments_at_the_call(byte_model):
    with pytest.raises(GenerationError, match="top_p"):
        stream_generate(byte_model, PROMPT, top_p=2.0)
    with pytest.raises(GenerationError, match="one prompt"):
        stream_generate(byte_model, torch.cat([PROMPT, PROMPT]))


def test_outputs_are_ordinary_tensors(byte_model):
    for options in (dict(), dict(num_beams=2)):
        out = generate(byte_model, PROMPT, max_new_tokens=3, **options)
        assert not out.is_inference()
        out[0, 0] = 1  # callers may edit the result in place
