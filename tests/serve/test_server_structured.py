"""Structured outputs through the official openai client: response_format (json_schema / json_object),
vLLM's guided_* and structured_outputs fields, on chat and completions, beside free requests."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import openai
import pytest

from gptkit.engine import SamplingParams
from tests.serve.structured_schemas import SCHEMAS

pytestmark = pytest.mark.slow


def ask(client, server, content, **options):
    return client.chat.completions.create(
        model=server.model_name, messages=[{"role": "user", "content": content}], **options
    )


def json_format(schema, name="answer"):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def test_twenty_schemas_all_parse_and_validate(openai_client, bundled_server):
    def run(item):
        what, schema = item
        return ask(openai_client, bundled_server, f"Give me {what} as JSON.", max_tokens=160, temperature=0,
                   response_format=json_format(schema))  # fmt: skip

    with ThreadPoolExecutor(len(SCHEMAS)) as pool:  # all in one batch
        responses = list(pool.map(run, SCHEMAS))
    for (what, schema), response in zip(SCHEMAS, responses, strict=True):
        choice = response.choices[0]
        assert choice.finish_reason == "stop", (what, choice.message.content)
        jsonschema.validate(json.loads(choice.message.content), schema)


def test_json_object_regex_grammar_and_choice(openai_client, bundled_server):
    obj = ask(openai_client, bundled_server, "Give a JSON object with a cat's name and age.", max_tokens=80, temperature=0,
              response_format={"type": "json_object"})  # fmt: skip
    assert obj.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(obj.choices[0].message.content), dict)
    regex = r"\+33 [1-9]( [0-9]{2}){4}"
    phone = ask(
        openai_client,
        bundled_server,
        "A French phone number?",
        max_tokens=30,
        extra_body={"guided_regex": regex},
    )
    assert re.fullmatch(regex, phone.choices[0].message.content)
    lark = 'start: "The answer is " answer "."\nanswer: "yes" | "no" | "maybe"'
    said = ask(openai_client, bundled_server, "Is it raining?", max_tokens=20,
               extra_body={"structured_outputs": {"grammar": lark}})  # fmt: skip
    assert re.fullmatch(r"The answer is (yes|no|maybe)\.", said.choices[0].message.content)
    gbnf = 'root ::= [0-9]{1,3} " + " [0-9]{1,3}'
    sum_ = ask(
        openai_client, bundled_server, "Write a sum.", max_tokens=12, extra_body={"guided_grammar": gbnf}
    )
    assert re.fullmatch(r"[0-9]{1,3} \+ [0-9]{1,3}", sum_.choices[0].message.content)
    pick = ask(
        openai_client,
        bundled_server,
        "Best pet?",
        max_tokens=10,
        extra_body={"guided_choice": ["cat", "dog"]},
    )
    assert pick.choices[0].message.content in {"cat", "dog"} and pick.choices[0].finish_reason == "stop"


def test_completions_and_streaming_follow_the_schema(openai_client, bundled_server):
    schema = SCHEMAS[0][1]
    done = openai_client.completions.create(model=bundled_server.model_name, prompt="A person as JSON:",
                                            max_tokens=60, temperature=0, extra_body={"guided_json": schema})  # fmt: skip
    jsonschema.validate(json.loads(done.choices[0].text), schema)
    stream = ask(openai_client, bundled_server, "A person as JSON.", max_tokens=60, temperature=0, stream=True,
                 response_format=json_format(schema))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    jsonschema.validate(json.loads(text), schema)


def test_constrained_and_free_requests_in_one_batch(openai_client, bundled_server, reference_engine):
    """Free requests next to constrained ones give exactly what they give alone. (The free prompts are
    shorter than a prefix-cache block, so no reused KV changes their numbers.)"""
    tokenizer, schema = bundled_server.tokenizer, SCHEMAS[1][1]
    prompts = ["My favourite colour is", "One, two, three,", "Hello, my name is"]

    def free(prompt):
        return openai_client.completions.create(
            model=bundled_server.model_name, prompt=prompt, max_tokens=12, temperature=0
        )

    def constrained(prompt):
        return ask(
            openai_client,
            bundled_server,
            prompt,
            max_tokens=30,
            temperature=0,
            response_format=json_format(schema),
        )

    with ThreadPoolExecutor(6) as pool:
        free_futures = [pool.submit(free, p) for p in prompts]
        constrained_futures = [pool.submit(constrained, p) for p in prompts]
    for prompt, future in zip(prompts, free_futures, strict=True):
        ids = tokenizer.encode(prompt, allowed_special="all")
        assert len(ids) < 16
        alone = reference_engine.generate([ids], SamplingParams(max_tokens=12, temperature=0))[0]
        assert future.result().choices[0].text == alone.text
    for future in constrained_futures:
        jsonschema.validate(json.loads(future.result().choices[0].message.content), schema)


def test_unsatisfiable_within_max_tokens_is_length(openai_client, bundled_server):
    cut = ask(openai_client, bundled_server, "Go.", max_tokens=3, extra_body={"guided_regex": "(abc ){20}"})
    assert cut.choices[0].finish_reason == "length"
    assert ("abc " * 20).startswith(cut.choices[0].message.content)


@pytest.mark.parametrize(
    ("options", "param", "words"),
    [
        ({"response_format": json_format({"type": "array", "uniqueItems": True})}, "response_format.json_schema.schema", "uniqueItems"),
        ({"response_format": json_format({"type": "strung"})}, "response_format.json_schema.schema", "strung"),
        ({"response_format": {"type": "json_schema"}}, "response_format", "json_schema"),
        ({"response_format": {"type": "yaml"}}, "response_format.type", ""),
        ({"extra_body": {"guided_regex": "(("}}, "guided_regex", "unclosed group"),
        ({"extra_body": {"guided_grammar": "start: nothing_here"}}, "guided_grammar", "nothing_here"),
        ({"extra_body": {"structured_outputs": {"json": {"not": {}}}}}, "structured_outputs.json", '"not"'),
        ({"extra_body": {"guided_choice": []}}, "guided_choice", ""),
        ({"response_format": {"type": "json_object"}, "extra_body": {"guided_regex": "a"}}, "guided_regex", "one output constraint"),
    ],
)  # fmt: skip
def test_bad_constraints_are_400s_naming_the_field(openai_client, bundled_server, options, param, words):
    with pytest.raises(openai.BadRequestError) as info:
        ask(openai_client, bundled_server, "Hi", max_tokens=5, **options)
    error = info.value.body
    assert error["param"] == param
    assert words in error["message"]
