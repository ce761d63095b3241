"""A request's output constraint: OpenAI's ``response_format``, vLLM's ``structured_outputs`` and ``guided_*``
fields -> SamplingParams' ``json_schema`` / ``regex`` / ``grammar``, remembering which field it came from
(errors name that field). SamplingParams compiles and checks the constraint (llguidance)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gptkit.errors import GPTKitError
from gptkit.generation.constraints import choice_grammar
from gptkit.serve.errors import invalid
from gptkit.serve.schemas import SamplingOptions

ANY_JSON_OBJECT = {"type": "object"}


@dataclass(frozen=True)
class OutputConstraint:
    """One SamplingParams constraint option and the request field it came from."""

    option: str  # "json_schema", "regex" or "grammar"
    value: Any
    field: str  # e.g. "response_format", "guided_regex", "structured_outputs.choice"

    @property
    def sampling(self) -> dict[str, Any]:
        return {self.option: self.value}


def output_constraint(body: SamplingOptions) -> OutputConstraint | None:
    """The request's constraint (None when its output is free text); a 400 when it gives several."""
    found = [c for c in (_response_format(body), *_guided(body), *_structured_outputs(body)) if c]
    if len(found) > 1:
        fields = ", ".join(c.field for c in found)
        raise invalid(found[1].field, f"give one output constraint, got several: {fields}")
    return found[0] if found else None


def _response_format(body: SamplingOptions) -> OutputConstraint | None:
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object" or fmt.json_schema.schema_ is None:
        return OutputConstraint("json_schema", ANY_JSON_OBJECT, "response_format")
    return OutputConstraint("json_schema", fmt.json_schema.schema_, "response_format.json_schema.schema")


def _guided(body: SamplingOptions) -> list[OutputConstraint | None]:
    return [
        _maybe("json_schema", body.guided_json, "guided_json"),
        _maybe("regex", body.guided_regex, "guided_regex"),
        _maybe("grammar", body.guided_grammar, "guided_grammar"),
        _choice(body.guided_choice, "guided_choice"),
    ]


def _structured_outputs(body: SamplingOptions) -> list[OutputConstraint | None]:
    so = body.structured_outputs
    if so is None:
        return []
    prefix = "structured_outputs."
    return [
        _maybe("json_schema", so.json_, prefix + "json"),
        _maybe("regex", so.regex, prefix + "regex"),
        _maybe("grammar", so.grammar, prefix + "grammar"),
        _choice(so.choice, prefix + "choice"),
        _maybe("json_schema", ANY_JSON_OBJECT if so.json_object else None, prefix + "json_object"),
    ]


def _maybe(option: str, value: Any, field: str) -> OutputConstraint | None:
    return None if value is None else OutputConstraint(option, value, field)


def _choice(choices: list[str] | None, field: str) -> OutputConstraint | None:
    if choices is None:
        return None
    try:
        return OutputConstraint("grammar", choice_grammar(choices), field)
    except GPTKitError as error:
        raise invalid(field, str(error)) from None
