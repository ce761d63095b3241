"""Text generation: continue a prompt (or answer a chat), with generate()'s options passed through."""

from __future__ import annotations

from typing import Any

from gptkit.tasks.base import Pipeline, TaskError


class TextGenerationPipeline(Pipeline):
    """``{"generated_text": prompt + continuation}``; a chat (list of messages) gets the reply appended."""

    task = "text-generation"
    template_key = "text-generation"
    options = frozenset({"return_full_text", "stop_strings"})
    passes_generation_options = True

    def _inputs(self, inputs: Any, opts: dict[str, Any]) -> tuple[list[Any], bool]:
        """Texts or chats (lists of {"role", "content"} messages); one of either counts as single."""
        if is_chat(inputs):
            return [inputs], True
        if isinstance(inputs, (list, tuple)) and inputs and all(is_chat(x) for x in inputs):
            return list(inputs), False
        return super()._inputs(inputs, opts)

    def _run(self, items: list[Any], opts: dict[str, Any]) -> list[dict[str, Any]]:
        gen = self.generation_options(opts)
        stops = opts.get("stop_strings") or []
        stops = [stops] if isinstance(stops, str) else list(stops)
        chats = [is_chat(x) for x in items]
        prompts = [self._prompt(x, opts) for x in items]
        texts = []
        for chat in (False, True):  # plain prompts keep their text; chats go through the chat template
            chosen = [p for p, c in zip(prompts, chats, strict=True) if c is chat]
            texts += self.generate(chosen, chat, stops, **gen) if chosen else []
        by_kind = {False: iter(texts[: chats.count(False)]), True: iter(texts[chats.count(False) :])}
        full = opts.get("return_full_text", True)
        return [
            self._result(x, p, next(by_kind[c]), full) for x, p, c in zip(items, prompts, chats, strict=True)
        ]

    def _prompt(self, item: Any, opts: dict[str, Any]) -> str:
        """The prompt as given (or through a ``prompt`` template), or a chat rendered by its template."""
        if is_chat(item):
            if getattr(self.tokenizer, "chat_template", None) is None:
                raise TaskError("chat messages need a tokenizer with a chat template")
            return self.tokenizer.apply_chat_template(item, add_generation_prompt=True, tokenize=False)
        template = self.template(opts)
        return template.query.format(text=item) if opts.get("prompt") or opts.get("templates") else item

    def _result(self, item: Any, prompt: str, text: str, full: bool) -> dict[str, Any]:
        """transformers' output: the prompt plus the continuation, or the chat plus the reply."""
        if is_chat(item):
            reply = {"role": "assistant", "content": text.strip()}
            return {"generated_text": [*item, reply] if full else reply["content"]}
        return {"generated_text": prompt + text if full else text}


def is_chat(value: Any) -> bool:
    """Whether value is one chat: a non-empty list of {"role", "content"} dicts."""
    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(isinstance(m, dict) and "role" in m and isinstance(m.get("content"), str) for m in value)
    )
