"""The Engine's whole-batch conveniences: generate (many prompts to completions), stream, warm_up.

They only queue requests and drive ``step``; the scheduling lives in gptkit.engine.engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from gptkit.engine.params import SamplingParams
from gptkit.engine.request import Completion
from gptkit.errors import GenerationError

Prompt = str | Sequence[int]


class BatchConveniences:
    """Mixed into Engine: needs its make_request, add_request, step, abort, waiting and max_batch_size."""

    def warm_up(self) -> None:
        """Decode a short request alone, then two together: a compiled engine compiles both of its graphs
        (one row; several rows) now rather than during the first real requests. Needs two free slots."""
        params = SamplingParams(max_tokens=2, temperature=0)
        self.generate([[0]], params)
        if self.max_batch_size > 1:
            self.generate([[0], [0, 0]], params)

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        adapters: Sequence[str | None] | None = None,
    ) -> list[Completion]:
        """Complete every prompt (batched continuously); one SamplingParams for all, or one per prompt;
        ``adapters``: one LoRA adapter name (or None) per prompt.

        All requests are checked before any is queued. Events of requests added elsewhere that finish
        meanwhile are not returned (drive :meth:`step` yourself to see them).
        """
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            raise GenerationError("prompts must be a list of prompts (texts or token-id lists)")
        per_prompt = _params_per_prompt(params, len(prompts))
        adapters = [None] * len(prompts) if adapters is None else list(adapters)
        if len(adapters) != len(prompts):
            raise GenerationError(
                f"got {len(adapters)} adapters for {len(prompts)} prompts", param="adapters"
            )
        requests = [self.make_request(*args) for args in zip(prompts, per_prompt, adapters, strict=True)]
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
