"""The server with speculative decoding: same completions, acceptance in /metrics, opt-out, bad input."""

from __future__ import annotations

import httpx
import pytest

from gptkit.cli import build_parser, main
from gptkit.engine.speculative import check_draft_tokenizer
from gptkit.errors import GenerationError
from gptkit.serve import serve_in_thread

BODY = {"prompt": "one two one two one two", "max_tokens": 12, "temperature": 0}


def complete(url: str, **extra) -> httpx.Response:
    return httpx.post(url + "/v1/completions", json={**BODY, **extra}, timeout=60)


def test_speculative_server_answers_like_the_plain_one(tiny_app, tiny_chat_model, metric):
    with serve_in_thread(tiny_app()) as plain:
        expected = complete(plain.url).json()["choices"][0]["text"]
    app = tiny_app(speculative=tiny_chat_model, num_speculative_tokens=4)  # its own draft: all accepted
    with serve_in_thread(app) as running:
        assert complete(running.url).json()["choices"][0]["text"] == expected
        drafted = metric(running.url, "gptkit_speculative_draft_tokens")
        assert drafted > 0 and metric(running.url, "gptkit_speculative_acceptance_rate") == 1.0
        assert complete(running.url, speculative=False).json()["choices"][0]["text"] == expected
        assert metric(running.url, "gptkit_speculative_draft_tokens") == drafted  # opted out: no drafts
        chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "speculative": False}
        assert httpx.post(running.url + "/v1/chat/completions", json=chat, timeout=60).status_code == 200
        error = complete(running.url, speculative="no")
        assert error.status_code == 400 and error.json()["error"]["param"] == "speculative"


def test_plain_server_reports_no_speculation(tiny_app, metric):
    with serve_in_thread(tiny_app()) as running:
        assert complete(running.url).status_code == 200
        assert metric(running.url, "gptkit_speculative_draft_tokens") == 0


def test_too_many_speculative_tokens_refused_at_start(tiny_app):
    with pytest.raises(GenerationError, match="num_speculative_tokens=300 is too large"):
        tiny_app(speculative="ngram", num_speculative_tokens=300, max_seq_len=256)


def test_cli_options_and_one_line_errors(capsys):
    args = build_parser().parse_args(
        ["serve", "m", "--speculative", "draft:small", "--num-speculative-tokens", "3"]
    )
    assert (args.speculative, args.num_speculative_tokens) == ("draft:small", 3)
    for bad in (["--speculative", "medusa"], ["--speculative", "draft:"], ["--num-speculative-tokens", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(["serve", "m", *bad])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.strip().count("\n") == 0
    argv = ["serve", "--port", "0", "--speculative", "ngram", "--num-speculative-tokens", "9999"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "num_speculative_tokens" in err


class _Spelling:
    """A tokenizer stand-in: ``len`` and ``convert_ids_to_tokens`` over a list of spellings."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens

    def __len__(self) -> int:
        return len(self.tokens)

    def convert_ids_to_tokens(self, i: int) -> str:
        return self.tokens[i]


def test_a_draft_tokenizer_must_spell_every_id_alike(chat_tokenizer):
    check_draft_tokenizer(chat_tokenizer, chat_tokenizer)
    check_draft_tokenizer(_Spelling(["a", "b"]), _Spelling(["a", "b"]))
    for other in (_Spelling(["a", "c"]), _Spelling(["a", "b", "c"])):
        with pytest.raises(GenerationError, match="tokenizer differs"):
            check_draft_tokenizer(_Spelling(["a", "b"]), other)
