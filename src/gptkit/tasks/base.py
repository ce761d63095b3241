"""The one prompt / generate / score mechanism every task pipeline shares.

A pipeline renders each input into a prompt (chat template for chat models, few-shot text for base
models, templates from :mod:`gptkit.tasks.prompts`), then either generates an answer (greedy by default,
left-padded batches) or scores candidate answers with :func:`gptkit.scoring.loglik.score_continuations`
(batched, with the prompt text that all inputs share computed once).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from gptkit.checks import is_int
from gptkit.errors import ContextLengthError, GPTKitError
from gptkit.generation import truncate_at_stop
from gptkit.scoring.loglik import SCORING_BATCH_SIZE, Loglik, score_continuations
from gptkit.tasks.prompts import TEMPLATES, PromptTemplate

COMMON_OPTIONS = {"prompt", "templates", "examples", "use_chat_template", "system", "batch_size"}


class TaskError(GPTKitError, ValueError):
    """A task pipeline was given an unknown task, bad options or unusable input."""


class Pipeline:
    """Base class: holds the model, tokenizer and default options; subclasses define ``_run``."""

    task = ""
    template_key = ""
    options: frozenset[str] = frozenset()  # task options besides COMMON_OPTIONS
    passes_generation_options = False  # unknown options are generate() keyword arguments
    single_unwrapped = False  # one input returns its result itself (not a one-item list)

    def __init__(self, model: torch.nn.Module, tokenizer: Any, **defaults: Any) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.defaults = self._checked(defaults)

    # ----- calling --------------------------------------------------------------------------------
    def __call__(self, inputs: Any = None, **options: Any) -> Any:
        """Run on one input or a list: a list gives one result per input (see docs/applications.md)."""
        opts = {**self.defaults, **self._checked(options)}
        items, single = self._inputs(inputs, opts)
        results = self._run(items, opts)
        if single:
            return results[0] if self.single_unwrapped else [results[0]]
        return results

    def _checked(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options, after rejecting names this task does not know."""
        unknown = set(options) - COMMON_OPTIONS - self.options
        if unknown and not self.passes_generation_options:
            raise TaskError(
                f"unknown option(s) for {self.task}: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(COMMON_OPTIONS | self.options))}"
            )
        return options

    def _inputs(self, inputs: Any, opts: dict[str, Any]) -> tuple[list[Any], bool]:
        """(list of non-empty texts, whether one input was given)."""
        single = isinstance(inputs, str)
        items = [inputs] if single else inputs
        if not isinstance(items, (list, tuple)) or not items:
            raise TaskError(f"{self.task} takes a text or a non-empty list of texts, got {inputs!r}")
        for item in items:
            require_text(item, "input text")
        return list(items), single

    def render_for(self, inputs: Any = None, **options: Any) -> str:
        """The prompt text the model would see for one input (what ``__call__`` would run)."""
        opts = {**self.defaults, **self._checked(options)}
        items, _ = self._inputs(inputs, opts)
        return self._prompt(items[0], opts)

    def _prompt(self, item: Any, opts: dict[str, Any]) -> str:
        """The prompt of one input."""
        raise NotImplementedError

    def _run(self, items: list[Any], opts: dict[str, Any]) -> list[Any]:
        """One result per input."""
        raise NotImplementedError

    # ----- prompts --------------------------------------------------------------------------------
    def uses_chat(self, opts: dict[str, Any]) -> bool:
        """Chat models (a tokenizer with a chat template) are prompted through it, unless told otherwise."""
        choice = opts.get("use_chat_template")
        has_template = getattr(self.tokenizer, "chat_template", None) is not None
        if choice and not has_template:
            raise TaskError("use_chat_template=True, but the tokenizer has no chat template")
        return has_template if choice is None else bool(choice)

    def template(self, opts: dict[str, Any], key: str | None = None) -> PromptTemplate:
        """The task's template with the ``templates`` / ``prompt`` / ``system`` overrides applied."""
        template = TEMPLATES[key or self.template_key]
        overrides = dict(opts.get("templates") or {})
        if opts.get("prompt"):
            overrides.update(user=opts["prompt"], query=opts["prompt"])
        if opts.get("system"):
            overrides["system"] = opts["system"]
        fields = {f.name for f in dataclasses.fields(PromptTemplate)}
        unknown = set(overrides) - fields
        if unknown:
            raise TaskError(f"unknown template field(s) {sorted(unknown)}; known: {sorted(fields)}")
        if "shots" in overrides:
            overrides["shots"] = tuple(overrides["shots"])
        return dataclasses.replace(template, **overrides)

    def render(self, template: PromptTemplate, fields: dict[str, str], examples: Sequence[dict], chat: bool):
        """The prompt text, ending where the answer starts (examples: fields plus "answer")."""
        try:
            if chat:
                return self._render_chat(template, fields, examples)
            return self._render_base(template, fields, examples)
        except (KeyError, IndexError) as exc:
            raise TaskError(
                f"the {self.task} prompt template uses a field it is not given: {exc}; "
                f"fields: {', '.join('{' + f + '}' for f in fields)}"
            ) from None

    def _render_chat(self, template: PromptTemplate, fields: dict[str, str], examples: Sequence[dict]) -> str:
        """Chat messages (examples as earlier turns) through the tokenizer's chat template."""
        messages = [{"role": "system", "content": template.system}] if template.system else []
        for example in examples:
            messages.append({"role": "user", "content": template.user.format(**{**fields, **example})})
            messages.append({"role": "assistant", "content": example["answer"]})
        messages.append({"role": "user", "content": template.user.format(**fields)})
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _render_base(self, template: PromptTemplate, fields: dict[str, str], examples: Sequence[dict]) -> str:
        """Instruction, solved examples, then the query."""
        parts = [template.instruction.format(**fields)] if template.instruction else []
        for example in examples:
            merged = {**fields, **example}
            parts.append(template.query.format(**merged) + template.answer.format(**merged))
        parts.append(template.query.format(**fields))
        return template.separator.join(parts)

    def continuation(self, template: PromptTemplate, answer: str, chat: bool, closed: bool = False) -> str:
        """The text of an answer as it follows the prompt; ``closed`` adds the end of the answer."""
        if chat:
            return answer + ((self.tokenizer.eos_token or "") if closed else "")
        ending = (template.stop[0] if template.stop else "") if closed else ""
        return template.answer.format(answer=answer) + ending

    def encode(self, text: str, chat: bool, *, prompt: bool = True) -> list[int]:
        """Token ids of prompt text (base prompts get BOS).

        Chat text keeps its template's control tokens; content in it stays text (a ChatText's spans).
        """
        if chat:
            return self.tokenizer.encode(text, add_special_tokens=False, allowed_special="all")
        return self.tokenizer.encode(text, add_special_tokens=prompt)

    def check_fits(self, ids: list[int], extra: int) -> None:
        """ContextLengthError when the prompt plus ``extra`` tokens exceeds the model's window."""
        window = self.model.config.context_length
        if len(ids) + extra > window:
            raise ContextLengthError(
                f"the {self.task} prompt has {len(ids)} tokens; with {extra} more it exceeds the model's "
                f"context window of {window} tokens: shorten the input (gptkit does not truncate it)"
            )

    # ----- generation and scoring -----------------------------------------------------------------
    def generation_options(self, opts: dict[str, Any], **defaults: Any) -> dict[str, Any]:
        """The options that are generate() arguments (and batch_size), over the task's defaults."""
        own = self.options | (COMMON_OPTIONS - {"batch_size"})
        return {**defaults, **{k: v for k, v in opts.items() if k not in own}}

    def generate(self, prompts: list[str], chat: bool, stops: Sequence[str], **gen: Any) -> list[str]:
        """Greedy (by default) continuations of the prompts, batched with left padding, cut at stops/EOS."""
        gen = {"do_sample": False, **gen}
        rows = [self.encode(p, chat) for p in prompts]
        extra = gen.get("max_new_tokens") or 20
        for row in rows:
            self.check_fits(row, extra)
        size = batch_size_of(gen.pop("batch_size", 8))
        texts = []
        for start in range(0, len(rows), size):
            texts += self._generate_batch(rows[start : start + size], list(stops), gen)
        return texts

    def _generate_batch(self, rows: list[list[int]], stops: list[str], gen: dict[str, Any]) -> list[str]:
        """One left-padded generate call; new tokens decoded up to the first EOS and stop string."""
        ids, mask = left_pad(rows, self.tokenizer.pad_token_id or 0)
        device = self.model.device
        out = self.model.generate(
            ids.to(device),
            attention_mask=mask.to(device),
            stop_strings=stops or None,
            tokenizer=self.tokenizer,
            **gen,
        )
        eos = set(self.model.config.eos_token_ids)
        texts = []
        for row in out[:, ids.shape[1] :].tolist():
            end = next((i for i, t in enumerate(row) if t in eos), len(row))
            texts.append(truncate_at_stop(self.tokenizer.decode(row[:end], skip_special_tokens=True), stops))
        return texts

    def score(
        self, pairs: list[tuple[str, str]], chat: bool, batch_size: int = SCORING_BATCH_SIZE
    ) -> list[Loglik]:
        """log p(continuation | prompt) for (prompt text, continuation text) pairs."""
        encoded = []
        for prompt, continuation in pairs:
            context = self.encode(prompt, chat)
            tokens = self.encode(continuation, chat, prompt=False)
            if not tokens:
                raise TaskError(f"the answer {continuation!r} has no tokens to score")
            self.check_fits(context, len(tokens))
            encoded.append((context, tokens))
        return score_continuations(self.model, encoded, batch_size=batch_size_of(batch_size))


def example_dicts(examples: Any, input_field: str) -> list[dict[str, str]]:
    """Few-shot examples as template fields: (input, answer) pairs or dicts with an "answer" key."""
    if examples is None:
        return []
    if not isinstance(examples, (list, tuple)):
        raise TaskError(f"examples must be a list of (input, answer) pairs or dicts, got {examples!r}")
    result = []
    for example in examples:
        if isinstance(example, dict) and "answer" in example:
            result.append(dict(example))
        elif isinstance(example, (list, tuple)) and len(example) == 2:
            result.append({input_field: require_text(example[0], "example input"), "answer": str(example[1])})
        else:
            raise TaskError(
                f"an example must be an (input, answer) pair or a dict with 'answer', got {example!r}"
            )
    return result


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids and attention mask, padded on the left."""
    longest = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (longest - len(r)) + r for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (longest - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids, mask


def require_text(value: Any, what: str) -> str:
    """The value, if it is a string with something besides whitespace; TaskError otherwise."""
    if not isinstance(value, str):
        raise TaskError(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise TaskError(f"{what} is empty")
    return value


def batch_size_of(value: Any) -> int:
    """A positive batch size, or TaskError."""
    if not is_int(value) or value < 1:
        raise TaskError(f"batch_size must be a positive integer, got {value!r}")
    return value


def softmax(values: Sequence[float]) -> list[float]:
    """Probabilities from log-scores (a distribution that sums to 1)."""
    return torch.tensor(values, dtype=torch.float64).softmax(0).tolist()
