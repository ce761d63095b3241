"""One request's life in the engine: its plan, its tokens so far, its text so far, and how it ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from gptkit.engine.params import SamplingParams
from gptkit.generation.generate import choose_tokens
from gptkit.generation.plan import Plan
from gptkit.generation.processors import (
    LogitsProcessor,
    apply_processors,
    logit_bias,
    presence_frequency_penalty,
)
from gptkit.generation.stopping import truncate_at_stop
from gptkit.generation.streamers import INCOMPLETE

FinishReason = Literal["stop", "length", "error"]


@dataclass(frozen=True)
class TokenLogprob:
    """One token's log-probability under the model (raw log-softmax) and the ``top`` alternatives."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]]  # (token id, log-probability), most likely first


def token_logprobs(logits: torch.Tensor, token_ids: torch.Tensor, top_n: int) -> list[TokenLogprob]:
    """Log-probabilities of ``token_ids`` (N,) under next-token logits (N, V), with the top_n best each."""
    log_probs = logits.float().log_softmax(dim=-1)  # (N, V)
    chosen = log_probs.gather(1, token_ids[:, None])[:, 0].tolist()  # (N,)
    top_values, top_ids = log_probs.topk(min(top_n, log_probs.shape[-1]), dim=-1)  # (N, top_n)
    return [
        TokenLogprob(token, logprob, list(zip(ids, values, strict=True)))
        for token, logprob, ids, values in zip(
            token_ids.tolist(), chosen, top_ids.tolist(), top_values.tolist(), strict=True
        )
    ]


@dataclass
class Completion:
    """A finished request: the text (cut before any stop string), every generated id, and why it ended.

    ``token_ids`` keep the token that ended the request (EOS / a stop token id, as ``generate`` does);
    ``text`` leaves such a token out.
    """

    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] | None = None  # one per token id, when SamplingParams.logprobs is set
    prompt_logprobs: list[TokenLogprob | None] | None = None  # per prompt token, None for the first
    error: str | None = None  # why the request failed (finish_reason "error"); other requests go on
    cached_tokens: int = 0  # prompt tokens reused from the prefix cache, not prefilled (of prompt_tokens)


@dataclass
class Event:
    """What one :meth:`Engine.step` did for one request: a new token, the text it made final, the end."""

    request_id: int
    token_id: int | None  # None only for the single event of a max_tokens=0 request
    delta: str  # newly final text; the deltas of a request add up to its completion's text
    completion: Completion | None = None  # set on the request's last event
    logprob: TokenLogprob | None = None  # when SamplingParams.logprobs is set

    @property
    def finished(self) -> bool:
        return self.completion is not None


class IncrementalText:
    """The text of a growing list of token ids, decoding only the last few ids per token (vLLM's offsets).

    Decoding ``ids[prefix:]`` and ``ids[prefix:read]`` and keeping the difference handles tokenizers whose
    decode depends on the neighbouring token (leading spaces), and waits while a character is incomplete.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""  # final text so far: never ends inside a character
        self.prefix = self.read = 0

    def add(self, token: int) -> None:
        self.ids.append(token)
        before = self.tokenizer.decode(self.ids[self.prefix : self.read])
        after = self.tokenizer.decode(self.ids[self.prefix :])
        if len(after) > len(before) and not after.endswith(INCOMPLETE):
            self.text += after[len(before) :]
            self.prefix, self.read = self.read, len(self.ids)


class Request:
    """A running (or waiting) request: its plan from ``make_plan`` and the tokens generated so far."""

    def __init__(self, request_id: int, params: SamplingParams, plan: Plan, tokenizer: Any) -> None:
        self.id = request_id
        self.params = params
        self.plan = plan
        self.tokenizer = tokenizer
        self.slot: int | None = None
        self.cached_tokens = 0  # prompt tokens whose KV came from the prefix cache
        self.prompt_len = plan.prompt_len
        self.buffer = plan.input_ids.new_zeros((1, plan.max_length))  # (1, prompt + max_tokens)
        self.buffer[:, : self.prompt_len] = plan.input_ids
        self.length = self.prompt_len
        self.emitted = 0  # characters of text already handed out as deltas
        self.text = IncrementalText(tokenizer)  # the generated text, decoded a few tokens at a time
        self.hold_back = max((len(s) for s in params.stops), default=1) - 1  # a stop string may be starting
        self.processors = _openai_processors(params, self.prompt_len) + plan.processors
        self.logprobs: list[TokenLogprob] | None = None if params.logprobs is None else []
        self.prompt_logprobs: list[TokenLogprob | None] | None = None

    @property
    def sequence(self) -> torch.Tensor:
        """Prompt and generated tokens so far (1, L), a view of the buffer."""
        return self.buffer[:, : self.length]

    @property
    def generated(self) -> list[int]:
        return self.buffer[0, self.prompt_len : self.length].tolist()

    @property
    def last_token(self) -> int:
        return int(self.buffer[0, self.length - 1])

    def score_prompt(self, logits: torch.Tensor) -> None:
        """Keep the prompt tokens' log-probabilities from the prefill's logits (1, T, V)."""
        ids = self.buffer[0, 1 : self.prompt_len]  # (T - 1,): each token scored by the logits before it
        scored = token_logprobs(logits[0, :-1], ids, self.params.prompt_logprobs)
        self.prompt_logprobs = [None, *scored]

    def next_token(self, logits: torch.Tensor) -> tuple[int, TokenLogprob | None]:
        """Process this request's next-token logits (1, V) with its own processors and pick a token."""
        scores = apply_processors(self.processors, self.sequence, logits)
        token = int(choose_tokens(scores, self.plan.config.sampling, self.plan.generator)[0])
        if self.logprobs is None:
            return token, None
        return token, token_logprobs(logits, torch.tensor([token]), self.params.logprobs)[0]

    def append(self, token: int, logprob: TokenLogprob | None = None) -> Event:
        """Record ``token``; the event carries the text it makes final and, when done, the completion."""
        self.buffer[0, self.length] = token
        self.length += 1
        self.text.add(token)
        if self.logprobs is not None:
            self.logprobs.append(logprob)
        n_generated = self.length - self.prompt_len
        done = bool(self.plan.stop(self.sequence)[0]) and n_generated >= self.params.min_tokens
        if not done:
            return Event(self.id, token, self._partial_delta(), logprob=logprob)
        completion = self._completion()
        delta = completion.text[self.emitted :]
        self.emitted = len(completion.text)
        return Event(self.id, token, delta, completion, logprob)

    def fail(self, message: str) -> Event:
        """End this request with an error (e.g. its sampling options gave NaN probabilities)."""
        ids = self.generated
        completion = Completion(
            self.text.text,
            ids,
            "error",
            self.prompt_len,
            len(ids),
            self.logprobs,
            self.prompt_logprobs,
            message,
            self.cached_tokens,
        )
        return Event(self.id, None, "", completion)

    def finish_without_tokens(self) -> Event:
        """The single event of a max_tokens=0 request: no token, an empty completion."""
        completion = Completion("", [], "length", self.prompt_len, 0, self.logprobs, self.prompt_logprobs)
        return Event(self.id, None, "", completion)

    def _partial_delta(self) -> str:
        """Text that no later token can change: not an incomplete character, not a possible stop start."""
        if self.params.stops and self.length - self.prompt_len < self.params.min_tokens:
            return ""  # a stop string seen now may still cut the final text here
        final = len(self.text.text) - self.hold_back
        if final <= self.emitted:
            return ""
        delta, self.emitted = self.text.text[self.emitted : final], final
        return delta

    def _completion(self) -> Completion:
        """The finished request: EOS / stop ids end it as "stop", a stop string too, else "length"."""
        ids = self.generated
        ended_by_id = ids[-1] in self.plan.config.eos_ids
        text = self.tokenizer.decode(ids[:-1] if ended_by_id else ids)
        cut = truncate_at_stop(text, self.params.stops)
        reason: FinishReason = "stop" if ended_by_id or len(cut) < len(text) else "length"
        return Completion(
            cut,
            ids,
            reason,
            self.prompt_len,
            len(ids),
            self.logprobs,
            self.prompt_logprobs,
            cached_tokens=self.cached_tokens,
        )


def _openai_processors(params: SamplingParams, prompt_len: int) -> list[LogitsProcessor]:
    """Presence/frequency penalties (over generated tokens only) and logit_bias, applied before the rest."""
    chain: list[LogitsProcessor] = []
    presence, frequency = params.presence_penalty, params.frequency_penalty
    if presence or frequency:
        chain.append(lambda ids, s: presence_frequency_penalty(s, ids[:, prompt_len:], presence, frequency))
    if params.logit_bias:
        bias = dict(params.logit_bias)
        chain.append(lambda ids, s: logit_bias(s, bias))
    return chain
