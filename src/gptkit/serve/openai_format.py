"""OpenAI response bodies: completion and chat choices, SSE chunks, usage, and both logprobs shapes.

Token strings are each token decoded on its own; a token that is not valid UTF-8 alone (part of a
multi-byte character) is written ``bytes:\\xNN...`` like OpenAI and vLLM do. ``text_offset`` counts
characters of the returned text (the echoed prompt, then the completion).
"""

from __future__ import annotations

import codecs
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from gptkit.engine import Completion, TokenLogprob
from gptkit.tokenizer.backend import unspell_bytes

REPLACEMENT = "\ufffd"


class TokenText:
    """Each token id's string and raw bytes, as the logprobs fields show them (cached per id)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._strings: dict[int, str] = {}
        self._bytes: dict[int, bytes] = {}

    def raw(self, token_id: int) -> bytes:
        """The bytes the token stands for."""
        if token_id not in self._bytes:
            text = self.tokenizer.decode([token_id])
            spelled = None
            if REPLACEMENT in text:  # part of a character: the byte-level spelling gives its bytes
                spelled = unspell_bytes(self.tokenizer.convert_ids_to_tokens(token_id))
            self._bytes[token_id] = spelled if spelled is not None else text.encode("utf-8")
        return self._bytes[token_id]

    def string(self, token_id: int) -> str:
        """The token as text, or ``bytes:\\xNN..`` when its bytes are not valid UTF-8 on their own."""
        if token_id not in self._strings:
            raw = self.raw(token_id)
            try:
                self._strings[token_id] = raw.decode("utf-8")
            except UnicodeDecodeError:
                self._strings[token_id] = "bytes:" + "".join(f"\\x{b:02x}" for b in raw)
        return self._strings[token_id]

    def offsets(self, token_ids: Iterable[int], start: int = 0) -> list[int]:
        """Character offset where each token starts in the text the ids decode to (plus ``start``)."""
        counter = OffsetCounter(self, start)
        return [counter.offset(t) for t in token_ids]


class OffsetCounter:
    """Running character offsets of a token sequence, fed one token at a time (partial UTF-8 held)."""

    def __init__(self, token_text: TokenText, start: int = 0) -> None:
        self.token_text = token_text
        self.position = start
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def skip(self, text: str) -> None:
        """Count text that precedes the tokens (an echoed prompt)."""
        self.position += len(text)

    def offset(self, token_id: int) -> int:
        """Where this token starts; advances past it."""
        start = self.position
        self.position += len(self.decoder.decode(self.token_text.raw(token_id)))
        return start


# ---- shared pieces ---------------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    """OpenAI's usage object; ``cached_tokens``: prompt tokens taken from the prefix cache."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def sse(payload: dict[str, Any]) -> str:
    """One server-sent event carrying a JSON object."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


SSE_DONE = "data: [DONE]\n\n"


# ---- /v1/completions -------------------------------------------------------------------------------
def completion_logprobs(
    token_text: TokenText, token_ids: Sequence[int], entries: Sequence[TokenLogprob | None], start: int
) -> dict[str, list]:
    """The completions logprobs object for tokens (entry None: no logprob, like the first prompt token).

    ``top_logprobs`` maps the top alternatives' strings to their logprobs, plus the chosen token (vLLM).
    """
    return {
        "tokens": [token_text.string(t) for t in token_ids],
        "token_logprobs": [None if e is None else e.logprob for e in entries],
        "top_logprobs": [None if e is None else _top_dict(token_text, e) for e in entries],
        "text_offset": token_text.offsets(token_ids, start),
    }


def _top_dict(token_text: TokenText, entry: TokenLogprob) -> dict[str, float]:
    top = {token_text.string(t): lp for t, lp in entry.top}
    top.setdefault(token_text.string(entry.token_id), entry.logprob)
    return top


def merge_completion_logprobs(first: dict[str, list] | None, second: dict[str, list]) -> dict[str, list]:
    """Concatenate two completions logprobs objects (echoed prompt, then completion)."""
    if first is None:
        return second
    return {key: first[key] + second[key] for key in first}


def completion_choice(
    index: int, completion: Completion, token_text: TokenText, echo_ids: list[int] | None, with_logprobs: bool
) -> dict[str, Any]:
    """One choice of a /v1/completions response; ``echo_ids`` are the prompt's ids when echoing."""
    prefix = token_text.tokenizer.decode(echo_ids) if echo_ids is not None else ""
    logprobs = None
    if with_logprobs:
        if echo_ids is not None:
            logprobs = completion_logprobs(token_text, echo_ids, completion.prompt_logprobs or [], 0)
        generated = completion_logprobs(
            token_text, completion.token_ids, completion.logprobs or [], len(prefix)
        )
        logprobs = merge_completion_logprobs(logprobs, generated)
    return {
        "index": index,
        "text": prefix + completion.text,
        "logprobs": logprobs,
        "finish_reason": completion.finish_reason,
    }


COMPLETION, CHAT, CHAT_CHUNK = "text_completion", "chat.completion", "chat.completion.chunk"  # "object"


def envelope(
    kind: str,
    response_id: str,
    created: int,
    model: str,
    choices: list[dict],
    usage_: dict | None,
    with_usage: bool = True,
) -> dict[str, Any]:
    """A response or stream chunk of ``kind`` (completion chunks are "text_completion" too); ``usage``
    only when ``with_usage`` (streams send it only when asked, on the last chunk)."""
    body = {"id": response_id, "object": kind, "created": created, "model": model, "choices": choices}
    if with_usage:
        body["usage"] = usage_
    return body


def completion_chunk_choice(
    index: int, text: str, logprobs: dict | None = None, finish_reason: str | None = None
) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


# ---- /v1/chat/completions --------------------------------------------------------------------------
def chat_logprob_content(token_text: TokenText, entries: Sequence[TokenLogprob]) -> list[dict[str, Any]]:
    """Chat's ``logprobs.content``: per token its string, logprob, bytes and ``top_logprobs``."""
    return [
        {
            **_chat_token(token_text, e.token_id, e.logprob),
            "top_logprobs": [_chat_token(token_text, t, lp) for t, lp in e.top],
        }
        for e in entries
    ]


def _chat_token(token_text: TokenText, token_id: int, logprob: float) -> dict[str, Any]:
    return {"token": token_text.string(token_id), "logprob": logprob, "bytes": list(token_text.raw(token_id))}


def chat_choice(
    index: int, completion: Completion, token_text: TokenText, with_logprobs: bool
) -> dict[str, Any]:
    """One choice of a /v1/chat/completions response."""
    logprobs = None
    if with_logprobs:
        logprobs = {"content": chat_logprob_content(token_text, completion.logprobs or []), "refusal": None}
    return {
        "index": index,
        "message": {"role": "assistant", "content": completion.text, "refusal": None},
        "logprobs": logprobs,
        "finish_reason": completion.finish_reason,
    }


def chat_chunk_choice(
    index: int, delta: dict[str, Any], logprobs: dict | None = None, finish_reason: str | None = None
) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
