"""Tool calling through the official openai client: forced calls with schema-valid arguments, the round
trip call -> tool result -> answer (streamed and not), and the 400s."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

pytestmark = pytest.mark.slow

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 30}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city now",
                                      "parameters": WEATHER_PARAMETERS}},
    {"type": "function", "function": {"name": "get_time", "description": "The time now",
                                      "parameters": {"type": "object", "properties": {}, "additionalProperties": False}}},
]  # fmt: skip
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


def create(client, server, messages, **options):
    return client.chat.completions.create(model=server.model_name, messages=messages, tools=TOOLS, **options)


def collect_stream(chunks):
    """A streamed answer reassembled as OpenAI's clients do: content, calls by index, finish reason."""
    content, calls, reason = "", {}, None
    for chunk in chunks:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for call in delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
            entry["id"] = call.id or entry["id"]
            entry["name"] += (call.function.name or "") if call.function else ""
            entry["arguments"] += (call.function.arguments or "") if call.function else ""
        reason = chunk.choices[0].finish_reason or reason
    return content, list(calls.values()), reason


def test_round_trip_call_result_answer(openai_client, bundled_server):
    first = create(openai_client, bundled_server, QUESTION, tool_choice="required", parallel_tool_calls=False,
                   max_tokens=60, temperature=0)  # fmt: skip
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in {"get_weather", "get_time"}
    schema = WEATHER_PARAMETERS if call.function.name == "get_weather" else TOOLS[1]["function"]["parameters"]
    jsonschema.validate(json.loads(call.function.arguments), schema)
    follow_up = [
        *QUESTION,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees."},
    ]
    answer = create(openai_client, bundled_server, follow_up, max_tokens=30, temperature=0)
    assert answer.choices[0].finish_reason in {"stop", "length"}
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls
    streamed = create(openai_client, bundled_server, follow_up, max_tokens=30, temperature=0, stream=True)
    content, calls, reason = collect_stream(streamed)
    assert (content, calls, reason) == (
        answer.choices[0].message.content,
        [],
        answer.choices[0].finish_reason,
    )


def test_named_function_streamed_as_tool_call_deltas(openai_client, bundled_server):
    plain = create(openai_client, bundled_server, QUESTION, tool_choice=NAMED, max_tokens=60, temperature=0)
    (call,) = plain.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and plain.choices[0].finish_reason == "tool_calls"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_PARAMETERS)
    stream = create(openai_client, bundled_server, QUESTION, tool_choice=NAMED, max_tokens=60, temperature=0,
                    stream=True)  # fmt: skip
    content, calls, reason = collect_stream(stream)
    assert content == "" and reason == "tool_calls"
    assert [(c["name"], c["arguments"]) for c in calls] == [("get_weather", call.function.arguments)]
    assert calls[0]["id"].startswith("call_")
    # the streamed round trip: the call goes back with its result
    follow_up = [*QUESTION, {"role": "assistant", "tool_calls": [{"id": calls[0]["id"], "type": "function",
                 "function": {"name": "get_weather", "arguments": calls[0]["arguments"]}}]},
                 {"role": "tool", "tool_call_id": calls[0]["id"], "content": "Rain, 12 degrees."}]  # fmt: skip
    content, calls, reason = collect_stream(
        create(openai_client, bundled_server, follow_up, tool_choice="none", max_tokens=20, stream=True)
    )
    assert content and calls == [] and reason in {"stop", "length"}


def test_auto_and_none_leave_free_text(openai_client, bundled_server):
    auto = create(
        openai_client, bundled_server, [{"role": "user", "content": "Say hi."}], max_tokens=10, temperature=0
    )
    none = create(openai_client, bundled_server, [{"role": "user", "content": "Say hi."}], tool_choice="none",
                  max_tokens=10, temperature=0)  # fmt: skip
    for response in (auto, none):
        assert response.choices[0].message.content and response.choices[0].finish_reason in {"stop", "length"}


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"tool_choice": {"type": "function", "function": {"name": "send_email"}}}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "not": {}}}}]},
         "tools[0].function.parameters"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "not an object"}}]},
         "tools[0].function.parameters"),
    ],
)  # fmt: skip
def test_bad_tools_are_400s(openai_client, bundled_server, options, param):
    options = {"tools": TOOLS, **options}
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(
            model=bundled_server.model_name, messages=QUESTION, max_tokens=5, **options
        )
    assert info.value.body["param"] == param
