"""Every error is OpenAI-shaped with the right status, bad input is never a 500, and the server keeps serving."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MESSAGES = [{"role": "user", "content": "Hi"}]


def post(server, path, body=None, *, key="right", content=None, headers=None):
    """POST to the server with the right key (or ``key=None`` / another key)."""
    sent = {"content-type": "application/json", **(headers or {})}
    if key is not None:
        sent["authorization"] = f"Bearer {server.api_key if key == 'right' else key}"
    data = content if content is not None else json.dumps(body).encode()
    return httpx.post(server.url + path, content=data, headers=sent, timeout=60)


def error_of(response, status):
    """The OpenAI error object of a response, after checking its status and shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def chat(**fields):
    return {"messages": MESSAGES, "max_tokens": 2, **fields}


def completion(**fields):
    return {"prompt": "Hi", "max_tokens": 2, **fields}


INVALID = [  # (path, body, param)
    (CHAT, chat(temperature=-0.1), "temperature"),
    (CHAT, chat(temperature=2.5), "temperature"),
    (COMPLETIONS, completion(top_p=0), "top_p"),
    (COMPLETIONS, completion(top_p=1.5), "top_p"),
    (CHAT, chat(n=0), "n"),
    (CHAT, chat(n=1000), "n"),
    (COMPLETIONS, completion(n=1000), "n"),
    (CHAT, chat(presence_penalty=2.5), "presence_penalty"),
    (COMPLETIONS, completion(frequency_penalty=-3), "frequency_penalty"),
    (COMPLETIONS, completion(logprobs=21), "logprobs"),
    (COMPLETIONS, completion(logprobs=-1), "logprobs"),
    (CHAT, chat(logprobs=True, top_logprobs=21), "top_logprobs"),
    (CHAT, chat(top_logprobs=2), "top_logprobs"),
    (CHAT, chat(temperature="hot"), "temperature"),
    (CHAT, chat(max_tokens="ten"), "max_tokens"),
    (CHAT, chat(max_tokens=True), "max_tokens"),
    (COMPLETIONS, completion(max_tokens=-1), "max_tokens"),
    (CHAT, chat(stream="yes"), "stream"),
    (CHAT, {"messages": "hello"}, "messages"),
    (CHAT, {"messages": []}, "messages"),
    (CHAT, {"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    (CHAT, {}, "messages"),
    (COMPLETIONS, completion(prompt=""), "prompt"),
    (COMPLETIONS, completion(prompt=[]), "prompt"),
    (COMPLETIONS, completion(prompt=[[]]), "prompt"),
    (COMPLETIONS, completion(prompt=[1, "a"]), "prompt"),
    (COMPLETIONS, completion(prompt=[10**9]), "prompt"),
    (COMPLETIONS, {"max_tokens": 2}, "prompt"),
    (COMPLETIONS, completion(stop=["x"] * 17), "stop"),
    (COMPLETIONS, completion(stop=[1]), "stop"),
    (CHAT, chat(logit_bias={"abc": 1}), "logit_bias"),
    (CHAT, chat(logit_bias={"5": 500}), "logit_bias"),
    (CHAT, chat(logit_bias={"99999999": 1}), "logit_bias"),
    (CHAT, chat(seed="x"), "seed"),
    (CHAT, chat(response_format={"type": "json_schema"}), "response_format"),
    (
        CHAT,
        chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"not": {}}}}),
        "response_format.json_schema.schema",
    ),
    (
        CHAT,
        chat(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="auto", guided_regex="(("),
        "guided_regex",
    ),
    (CHAT, chat(repetition_penalty=1e-300), "repetition_penalty"),
    (COMPLETIONS, completion(stop_token_ids=[-1]), "stop_token_ids"),
    (COMPLETIONS, completion(min_tokens=5), "min_tokens"),
    (COMPLETIONS, completion(logit_bias={"-5": 1}), "logit_bias"),
    (COMPLETIONS, completion(stop=""), "stop"),
    (CHAT, chat(logprobs=True, top_logprobs=-1), "top_logprobs"),
    (CHAT, chat(max_tokens=None, max_completion_tokens=2, min_tokens=3), "min_tokens"),
    (COMPLETIONS, completion(prompt="\ud800"), "prompt"),
    (COMPLETIONS, completion(prompt=["ok", "\udfff"]), "prompt"),
    (CHAT, {"messages": [{"role": "user", "content": "\ud800"}]}, "messages[0].content"),
    (CHAT, chat(stop=["\ud800"]), "stop"),
    ("/tokenize", {"prompt": "\ud800"}, "prompt"),
]


@pytest.mark.parametrize(("path", "body", "param"), INVALID, ids=[f"{p}-{x}" for p, _, x in INVALID])
def test_invalid_parameters_are_400_naming_the_param(bundled_server, path, body, param):
    error = error_of(post(bundled_server, path, body), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("field", ["temperature", "top_p", "presence_penalty"])
def test_nan_is_refused(bundled_server, field):
    content = json.dumps({"messages": MESSAGES, field: float("nan")}).encode()  # json writes NaN
    assert error_of(post(bundled_server, CHAT, content=content), 400)["param"] == field


@pytest.mark.parametrize("content", [b"{bad json", b"[1, 2]", b"", b'"just a string"'])
def test_malformed_bodies_are_400(bundled_server, content):
    for path in (CHAT, COMPLETIONS):
        error_of(post(bundled_server, path, content=content), 400)


def test_context_length_exceeded_names_both_numbers(bundled_server, openai_client):
    long_prompt = "hello " * 100
    n_prompt = len(bundled_server.tokenizer.encode(long_prompt))
    error = error_of(post(bundled_server, COMPLETIONS, completion(prompt=long_prompt, max_tokens=2000)), 400)
    assert error["code"] == "context_length_exceeded"
    assert str(n_prompt) in error["message"] and "2000" in error["message"]
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client.chat.completions.create(
            model=bundled_server.model_name,
            messages=[{"role": "user", "content": long_prompt}],
            max_tokens=2000,
        )
    assert raised.value.code == "context_length_exceeded"


def test_prompt_longer_than_the_context_is_400(bundled_server):
    error = error_of(
        post(bundled_server, CHAT, {"messages": [{"role": "user", "content": "hi " * 3000}]}), 400
    )
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"


def test_unknown_model_is_404(bundled_server, openai_client):
    for path, body in ((CHAT, chat(model="gpt-5")), (COMPLETIONS, completion(model="gpt-5"))):
        error = error_of(post(bundled_server, path, body), 404)
        assert error["code"] == "model_not_found" and error["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("gpt-5")
    assert openai_client.models.retrieve(bundled_server.model_name).id == bundled_server.model_name


def test_the_openai_client_raises_typed_errors(bundled_server, openai_client):
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client.chat.completions.create(
            model=bundled_server.model_name, messages=MESSAGES, temperature=5
        )
    assert raised.value.param == "temperature"
    bad_key = openai.OpenAI(base_url=bundled_server.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.chat.completions.create(model=bundled_server.model_name, messages=MESSAGES, max_tokens=1)


PROTECTED = [  # (method, path, body) of every inference and tokenizer route
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/smollm2-135m-instruct", None),
    ("POST", COMPLETIONS, completion()),
    ("POST", CHAT, chat()),
    ("POST", "/tokenize", {"prompt": "hello"}),
    ("POST", "/detokenize", {"tokens": [1, 2]}),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=[p for _, p, _ in PROTECTED])
def test_auth_on_every_inference_route(bundled_server, method, path, body):
    def call(headers):
        return httpx.request(method, bundled_server.url + path, json=body, headers=headers, timeout=60)

    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": bundled_server.api_key}):
        error = error_of(call(headers), 401)
        assert error["code"] == "invalid_api_key"
    assert call({"authorization": f"Bearer {bundled_server.api_key}"}).status_code == 200


def test_auth_comes_before_validation(bundled_server):
    error_of(post(bundled_server, CHAT, content=b"{bad", key=None), 401)


@pytest.mark.parametrize("path", ["/health", "/metrics", "/tokenizer_info", "/"])
def test_open_routes_need_no_key(bundled_server, path):
    assert httpx.get(bundled_server.url + path, timeout=30).status_code == 200


def test_unknown_route_and_method_are_openai_shaped(bundled_server):
    error_of(httpx.get(bundled_server.url + "/v1/nothing", headers=_auth(bundled_server), timeout=30), 404)
    error_of(httpx.get(bundled_server.url + CHAT, headers=_auth(bundled_server), timeout=30), 405)


def test_body_too_large_is_413(bundled_server):
    content = json.dumps(chat(padding="x" * (5 * 1024 * 1024))).encode()
    error_of(post(bundled_server, CHAT, content=content), 413)


def test_a_vanishing_temperature_is_greedy(bundled_server):
    tiny, zero = (post(bundled_server, CHAT, chat(temperature=t, max_tokens=4)) for t in (5e-324, 0))
    assert tiny.status_code == 200, tiny.text
    assert tiny.json()["choices"][0]["message"] == zero.json()["choices"][0]["message"]


def test_the_server_keeps_serving_after_errors(bundled_server, openai_client):
    for path, body, _ in INVALID[:10]:
        post(bundled_server, path, body)
    response = openai_client.chat.completions.create(
        model=bundled_server.model_name, messages=MESSAGES, max_tokens=2, temperature=0
    )
    assert response.choices[0].message.content is not None


def _auth(server):
    return {"authorization": f"Bearer {server.api_key}"}
