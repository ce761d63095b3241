"""Information extraction: a text's facts as JSON that follows a JSON Schema (decoding constrained to it)."""

from __future__ import annotations

import json
from typing import Any

from gptkit.errors import GPTKitError
from gptkit.generation.constraints import compile_constraint
from gptkit.tasks.base import Pipeline, TaskError, example_dicts

DEFAULT_NEW_TOKENS = 256


class ExtractionPipeline(Pipeline):
    """A dict (per input) that validates against ``schema``: the model fills it in from the text, its
    tokens constrained by the schema, so the answer always parses (unless ``max_new_tokens`` cuts it)."""

    task = "extraction"
    template_key = "extraction"
    options = frozenset({"schema", "max_new_tokens"})
    single_unwrapped = True

    def _run(self, items: list[str], opts: dict[str, Any]) -> list[Any]:
        schema = checked_schema(opts.get("schema"))
        chat = self.uses_chat(opts)
        prompts = [self._prompt(text, opts) for text in items]
        budget = opts.get("max_new_tokens", DEFAULT_NEW_TOKENS)
        texts = self.generate(prompts, chat, (), json_schema=schema, max_new_tokens=budget)
        return [parsed(text, budget) for text in texts]

    def _prompt(self, text: str, opts: dict[str, Any]) -> str:
        """The instruction with the schema, the examples (answers as JSON), then the text."""
        chat, template = self.uses_chat(opts), self.template(opts)
        schema_text = json.dumps(checked_schema(opts.get("schema")), ensure_ascii=False)
        examples = example_dicts(opts.get("examples"), "text")
        for example in examples:
            if not isinstance(example["answer"], str):
                example["answer"] = json.dumps(example["answer"], ensure_ascii=False)
        return self.render(template, {"text": text, "schema": schema_text}, examples, chat)


def checked_schema(schema: Any) -> Any:
    """The ``schema`` option, or TaskError when it is missing or not a JSON Schema gptkit can enforce."""
    if schema is None:
        raise TaskError("extraction needs schema= (a JSON Schema of the fields to extract)")
    try:
        compile_constraint("json_schema", schema)
    except GPTKitError as error:
        raise TaskError(f"schema: {error}") from None
    return json.loads(schema) if isinstance(schema, str) else schema


def parsed(text: str, budget: int) -> Any:
    """The answer's JSON value; TaskError when max_new_tokens ended it before the JSON was complete."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise TaskError(
            f"the answer was cut at max_new_tokens={budget} before its JSON was complete: {text[:80]!r}..."
        ) from None
