"""Engine: continuous batching over one static KV cache whose rows are request slots.

Requests wait in a queue and take a free slot between decode steps: the new prompt is prefilled in its
own forward pass on that slot's row only (``KVCache.row_range``), then every step decodes one token for
all occupied slots at once, each request with its own processors, random generator and stop rules.
A finished request frees its slot (``reset_rows``) for the next one. With the prefix cache on (the default,
``prefix_cache_mb``), a prefilled or finished request's KV blocks are kept in a pool and a new request
copies the longest cached start of its prompt into its row and prefills only the rest
(:mod:`gptkit.engine.prefix_cache`). Not thread-safe: drive one engine from one thread (a server runs
:meth:`Engine.step` in a loop).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from gptkit.checks import is_int
from gptkit.engine.compiled import DecodeStep
from gptkit.engine.params import SamplingParams
from gptkit.engine.prefix_cache import DEFAULT_PREFIX_CACHE_MB, PrefixCache, model_namespace
from gptkit.engine.request import Completion, Event, Request
from gptkit.errors import ContextLengthError, GenerationError
from gptkit.generation.plan import make_plan

DEFAULT_MAX_SEQ_LEN = 2048  # slot size cap when the model's context is longer: bounds cache memory

Prompt = str | Sequence[int]


class Engine:
    """Serve many generation requests at once from ``max_batch_size`` slots of ``max_seq_len`` tokens.

    ``prefix_cache_mb`` MiB (None: ``DEFAULT_PREFIX_CACHE_MB``, 0: off) keep the KV of earlier requests'
    full 16-token blocks for prompts that start the same way; a budget below one block raises ConfigError.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        max_batch_size: int = 16,
        max_seq_len: int | None = None,
        *,
        compile: bool = False,
        prefix_cache_mb: float | None = None,
    ) -> None:
        context = model.config.context_length
        max_seq_len = min(context, DEFAULT_MAX_SEQ_LEN) if max_seq_len is None else max_seq_len
        _check_positive("max_batch_size", max_batch_size)
        _check_positive("max_seq_len", max_seq_len)
        if not isinstance(compile, bool):
            raise GenerationError(f"compile must be True or False, got {compile!r}")
        if max_seq_len > context:
            raise ContextLengthError(
                f"max_seq_len={max_seq_len} exceeds the model's context window {context}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        self.cache = model.new_cache(max_batch_size, max_seq_len)  # per layer (slots, n_kv_head, S, head_dim)
        self.decode = DecodeStep(model, compile)
        self.prefix_cache = _prefix_cache(self.cache, prefix_cache_mb)
        self.namespace = model_namespace(model)  # cached KV is reused only by this model (and adapter)
        self.waiting: deque[Request] = deque()
        self.running: dict[int, Request] = {}  # slot -> request
        self.free_slots = list(range(max_batch_size))  # a heap: the lowest free slot is taken first
        self._ids = itertools.count()

    @property
    def max_batch_size(self) -> int:
        return self.cache.batch_size

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    def has_unfinished(self) -> bool:
        """Whether any request is waiting or running."""
        return bool(self.waiting or self.running)

    # ---- submission --------------------------------------------------------------------------------
    def add_request(self, prompt: Prompt, params: SamplingParams | None = None) -> int:
        """Queue a prompt (text or token ids); returns its request id. Bad input raises here, at once."""
        return self.enqueue(self.make_request(prompt, params or SamplingParams()))

    def enqueue(self, request: Request) -> int:
        """Queue a request built by :meth:`make_request`; returns its id."""
        self.waiting.append(request)
        return request.id

    def abort(self, request_id: int) -> None:
        """Drop a waiting or running request (its slot is freed); unknown ids are ignored."""
        self.waiting = deque(r for r in self.waiting if r.id != request_id)
        for request in list(self.running.values()):
            if request.id == request_id:
                self._release(request)

    def make_request(self, prompt: Prompt, params: SamplingParams) -> Request:
        """Tokenize and check one request against the slot size; build its plan (processors, stops, rng).

        Touches no engine state but the id counter, so another thread (a server's handler) may call it.
        """
        if not isinstance(params, SamplingParams):
            raise GenerationError(f"params must be SamplingParams, got {type(params).__name__}")
        ids = self._token_ids(prompt)
        vocab_size = self.model.config.vocab_size
        for what, tokens in (("prompt", ids), ("logit_bias", list(params.logit_bias or {}))):
            if tokens and not 0 <= min(tokens) <= max(tokens) < vocab_size:
                raise GenerationError(
                    f"{what} token ids must lie in [0, {vocab_size}), got {min(tokens)}..{max(tokens)}",
                    param=what,
                )
        if len(ids) + params.max_tokens > self.max_seq_len:
            what = (
                "the prompt"
                if len(ids) >= self.max_seq_len
                else f"the prompt + max_tokens={params.max_tokens}"
            )
            raise ContextLengthError(
                f"{what} ({len(ids)} prompt tokens) does not fit an engine slot of {self.max_seq_len} tokens",
                param="prompt",
            )
        config = params.generation_config(list(self.model.config.eos_token_ids))
        plan = make_plan(self.model, [ids], None, config, self.tokenizer, None, {})
        return Request(next(self._ids), params, plan, self.tokenizer)

    def _token_ids(self, prompt: Prompt) -> list[int]:
        """A prompt's token ids (text is encoded with the tokenizer); empty prompts are refused."""
        if isinstance(prompt, str):
            encoded = self.tokenizer.encode(prompt)
            ids = list(getattr(encoded, "ids", encoded))  # tokenizers.Encoding or a list
        else:
            ids = torch.as_tensor(prompt).reshape(-1).tolist() if torch.is_tensor(prompt) else list(prompt)
        if not ids:
            raise GenerationError("the prompt is empty: give at least one token", param="prompt")
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise GenerationError("a prompt must be text or a list of integer token ids", param="prompt")
        return ids

    # ---- scheduling --------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self) -> list[Event]:
        """Decode one token for every running request, then admit waiting requests into free slots."""
        events = self._decode_running()
        while self.waiting and self.free_slots:
            events.append(self._admit(self.waiting.popleft()))
        return events

    def _decode_running(self) -> list[Event]:
        """One forward pass over slots [0, highest occupied]: running rows take their last token."""
        if not self.running:
            return []
        width = max(self.running) + 1
        device = self.cache.valid.device
        tokens = torch.zeros(width, 1, dtype=torch.long, device=device)  # (width, 1)
        occupied = torch.zeros(width, 1, dtype=torch.long, device=device)  # (width, 1); 0 = idle slot
        for slot, request in self.running.items():
            tokens[slot, 0], occupied[slot, 0] = request.last_token, 1
        rows = self.cache.row_range(0, width)
        logits = self.decode(tokens, occupied, rows).float()  # (width, V)
        idle = [slot for slot in range(width) if slot not in self.running]
        if idle:
            rows.reset_rows(idle)  # their pad token took a column: keep idle slots empty
        return [
            self._advance(request, logits[slot : slot + 1]) for slot, request in list(self.running.items())
        ]

    def _admit(self, request: Request) -> Event:
        """Give ``request`` the lowest free slot and prefill its prompt on that row alone."""
        if request.params.max_tokens == 0:
            self._prefill(request, cache=None)  # nothing to generate: no slot needed
            return request.finish_without_tokens()
        slot = heapq.heappop(self.free_slots)
        request.slot = slot
        self.running[slot] = request
        request.cached_tokens = self._reuse_prefix(request, slot)
        logits = self._prefill(request, cache=self.cache.row_range(slot, slot + 1))
        self._keep_prefix(request, computed=request.prompt_len)
        return self._advance(request, logits)

    def _reuse_prefix(self, request: Request, slot: int) -> int:
        """Copy the longest cached start of the prompt into the slot's row (at least its last token is left
        to prefill: its logits are needed); returns how many tokens were reused."""
        if self.prefix_cache is None or request.params.prompt_logprobs is not None:
            return 0  # prompt logprobs need every prompt position's logits
        prompt = request.sequence[0].tolist()
        chain = self.prefix_cache.lookup(self.namespace, prompt, limit=len(prompt) - 1)
        return self.prefix_cache.load(chain, self.cache, slot)

    def _keep_prefix(self, request: Request, computed: int) -> None:
        """Store the full blocks of the request's row in the prefix cache if the row holds the KV of exactly
        its first ``computed`` tokens (a step that failed half-way leaves another count: nothing is kept)."""
        if self.prefix_cache is None or request.slot is None:
            return
        if int(self.cache.next_column[request.slot]) == computed:
            tokens = request.sequence[0, :computed].tolist()
            self.prefix_cache.store(self.namespace, tokens, self.cache, request.slot)

    def _prefill(self, request: Request, cache: Any) -> torch.Tensor:
        """Run the prompt (on a cache row, or none) after its reused tokens; keeps prompt logprobs when
        asked; last logits (1, V)."""
        wants_prompt_logprobs = request.params.prompt_logprobs is not None
        keep = 0 if wants_prompt_logprobs else 1  # 0 keeps every position
        rest = request.sequence[:, request.cached_tokens :]  # (1, T - cached)
        logits = self.model(rest, cache=cache, logits_to_keep=keep).logits  # (1, T - cached or 1, V)
        if wants_prompt_logprobs:
            request.score_prompt(logits)
        return logits[:, -1].float()

    def _advance(self, request: Request, logits: torch.Tensor) -> Event:
        """Pick the request's next token from its logits (1, V); free its slot when it finishes.

        A request whose own options make sampling fail (NaN / inf probabilities) ends with an error
        completion; the other requests in the batch are not disturbed.
        """
        try:
            token, logprob = request.next_token(logits)
        except RuntimeError as error:
            self._release(request)
            return request.fail(f"sampling failed for this request's options: {error}")
        event = request.append(token, logprob)
        if event.finished:
            self._release(request)
        return event

    def _release(self, request: Request) -> None:
        """Keep the request's KV blocks in the prefix cache and free its slot for the next one."""
        self._keep_prefix(request, computed=request.length - 1)  # the last token was never fed
        slot = request.slot
        del self.running[slot]
        self.cache.reset_rows([slot])
        heapq.heappush(self.free_slots, slot)
        request.slot = None

    # ---- conveniences ------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Decode a short request alone, then two together: a compiled engine compiles both of its graphs
        (one row; several rows) now rather than during the first real requests. Needs two free slots."""
        params = SamplingParams(max_tokens=2, temperature=0)
        self.generate([[0]], params)
        if self.max_batch_size > 1:
            self.generate([[0], [0, 0]], params)

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams | Sequence[SamplingParams] | None = None
    ) -> list[Completion]:
        """Complete every prompt (batched continuously); one SamplingParams for all, or one per prompt.

        All requests are checked before any is queued. Events of requests added elsewhere that finish
        meanwhile are not returned (drive :meth:`step` yourself to see them).
        """
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            raise GenerationError("prompts must be a list of prompts (texts or token-id lists)")
        per_prompt = _params_per_prompt(params, len(prompts))
        requests = [self.make_request(p, sp) for p, sp in zip(prompts, per_prompt, strict=True)]
        self.waiting.extend(requests)
        done: dict[int, Completion] = {}
        wanted = {r.id for r in requests}
        try:
            while len(done) < len(requests):
                done.update(
                    {e.request_id: e.completion for e in self.step() if e.finished and e.request_id in wanted}
                )
        finally:
            for request_id in wanted - set(done):
                self.abort(request_id)
        return [done[r.id] for r in requests]

    def stream(self, prompt: Prompt, params: SamplingParams | None = None) -> Iterator[str]:
        """Text deltas of one request as they become final (checked now; generated while iterating)."""
        return self._deltas(self.add_request(prompt, params))

    def _deltas(self, request_id: int) -> Iterator[str]:
        """Step the engine and yield ``request_id``'s non-empty deltas; abort it if the caller stops early."""
        finished = False
        try:
            while not finished:
                for event in self.step():
                    if event.request_id == request_id:
                        finished = event.finished
                        if event.delta:
                            yield event.delta
        finally:
            if not finished:
                self.abort(request_id)


def _params_per_prompt(params: SamplingParams | Sequence[SamplingParams] | None, n: int) -> list:
    """One SamplingParams per prompt."""
    if params is None or isinstance(params, SamplingParams):
        return [params or SamplingParams()] * n
    params = list(params)
    if len(params) != n:
        raise GenerationError(f"got {len(params)} SamplingParams for {n} prompts")
    return params


def _prefix_cache(cache: Any, budget_mb: float | None) -> PrefixCache | None:
    """The engine's prefix cache over its slot cache's layout (None: the default budget), or None for 0."""
    if budget_mb == 0 and not isinstance(budget_mb, bool):
        return None
    return PrefixCache(cache, DEFAULT_PREFIX_CACHE_MB if budget_mb is None else budget_mb)


def _check_positive(name: str, value: Any) -> None:
    if not is_int(value) or value < 1:
        raise GenerationError(f"{name} must be a positive integer, got {value!r}")
