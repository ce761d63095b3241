"""The extraction pipeline: a text's facts as JSON constrained to a JSON Schema (always parses, validates)."""

from __future__ import annotations

import jsonschema
import pytest

from gptkit.tasks import TaskError, pipeline

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "city": {"type": "string", "maxLength": 30},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}


@pytest.mark.slow
def test_extraction_fills_the_schema_from_the_text(smollm2):
    extract = pipeline("extraction", *smollm2, schema=SCHEMA)
    one = extract("Maria Lopez, 34, moved to Madrid last year to work as a nurse.")
    assert one == {"name": "Maria Lopez", "age": 34, "city": "Madrid"}
    many = extract(["Tom is 12 and lives in Oslo.", "Ann (70) lives in Rome."])
    for result in many:
        jsonschema.validate(result, SCHEMA)
    assert [r["city"] for r in many] == ["Oslo", "Rome"]
    base = pipeline("extraction", *smollm2, use_chat_template=False)  # a few-shot base prompt works too
    jsonschema.validate(base("Tom is 12 and lives in Oslo.", schema=SCHEMA), SCHEMA)


@pytest.mark.slow
def test_extraction_needs_a_schema_it_can_enforce(smollm2):
    extract = pipeline("extraction", *smollm2)
    with pytest.raises(TaskError, match="schema="):
        extract("Tom is 12.")
    with pytest.raises(TaskError, match="uniqueItems"):
        extract("Tom is 12.", schema={"type": "array", "uniqueItems": True})
    with pytest.raises(TaskError, match="max_new_tokens=2"):
        extract("Tom is 12 and lives in Oslo.", schema=SCHEMA, max_new_tokens=2)
