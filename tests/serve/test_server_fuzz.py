"""Property-based fuzzing of the running server over HTTP: no request may get a 5xx.

Two sources of requests: schemathesis generates valid and deliberately invalid requests (wrong types,
missing fields, out-of-range values, junk keys) for every operation of the server's own OpenAPI spec, and
a hand-written Hypothesis strategy combines the generation options of the two generating endpoints
(prompt shapes, sampling, penalties, logit_bias, stops, logprobs, echo, n, streaming) in ways the spec
alone rarely reaches. After each run the server must still answer a normal request exactly as before.
Generation is kept short: requested lengths and counts are capped, except values beyond the server's
limits, which it must refuse.
"""

from __future__ import annotations

import json

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow
schemathesis = pytest.importorskip("schemathesis")

OPERATIONS = [
    "GET /health",
    "GET /metrics",
    "GET /v1/models",
    "GET /v1/models/{model_id}",
    "POST /v1/completions",
    "POST /v1/chat/completions",
    "POST /v1/embeddings",
    "POST /tokenize",
    "POST /detokenize",
    "GET /tokenizer_info",
]
GENERATING = ("POST /v1/completions", "POST /v1/chat/completions")
SCHEMA_EXAMPLES = 30  # per operation
OPTION_EXAMPLES = 30  # per generating endpoint
LENGTH_FIELDS = ("max_tokens", "max_completion_tokens", "min_tokens")
COUNT_FIELDS = ("n", "best_of")
MAX_GENERATED = 4  # tokens per choice the fuzzer may ask for
MAX_COUNT = 2  # choices per prompt the fuzzer may ask for
COUNT_LIMIT = 1024  # counts above this stay as generated: the server must refuse them
REQUEST_TIMEOUT_S = 60
NORMAL_REQUEST = {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}
FUZZ_SETTINGS = dict(
    deadline=None,
    database=None,
    derandomize=True,  # the same requests on every run: a failure reproduces
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],  # no shrinking: every step would be more model calls
    report_multiple_bugs=False,
)


@pytest.fixture(scope="module")
def api(bundled_server):
    """The server's schema, auth header, window, vocabulary size and its answer to a normal request."""
    auth = {"Authorization": f"Bearer {bundled_server.api_key}"}
    schema = schemathesis.openapi.from_url(
        f"{bundled_server.url}/openapi.json", headers=auth
    )  # behind the key
    info = requests.get(f"{bundled_server.url}/tokenizer_info", headers=auth, timeout=30).json()
    return schema, auth, info["model_max_length"], info["vocab_size"], normal_completion(bundled_server, auth)


def normal_completion(server, auth: dict) -> str:
    """The greedy text of NORMAL_REQUEST (which must succeed)."""
    body = {"model": server.model_name, **NORMAL_REQUEST}
    response = requests.post(f"{server.base_url}/completions", json=body, headers=auth, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["text"]


def cheap(body, window: int, generating: bool):
    """The body with lengths and counts capped (values past the server's limits kept as they are)."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    if generating and not any(name in body for name in LENGTH_FIELDS[:2]):
        body["max_tokens"] = MAX_GENERATED  # the default would be the whole window
    limits = [(f, MAX_GENERATED, window) for f in LENGTH_FIELDS] + [
        (f, MAX_COUNT, COUNT_LIMIT) for f in COUNT_FIELDS
    ]
    for name, cap, limit in limits:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and cap < value <= limit:
            body[name] = cap
    return body


def send(server, auth: dict, method: str, path: str, body) -> requests.Response:
    """One request, checked by :func:`assert_no_server_error`."""
    response = requests.request(method, server.url + path, json=body, headers=auth, timeout=REQUEST_TIMEOUT_S)
    assert_no_server_error(response, f"{method} {path} {body!r}")
    return response


def assert_no_server_error(response, request: str) -> None:
    """No 5xx status, and no server error reported inside a stream that had already started with 200."""
    assert response.status_code < 500, f"{request}\n-> {response.status_code} {response.text}"
    content_type = response.headers.get("content-type") or ""  # schemathesis: a list of values
    if "text/event-stream" in str(content_type):
        for line in response.text.splitlines():
            data = line.removeprefix("data: ")
            if line.startswith("data: ") and data != "[DONE]" and "error" in json.loads(data):
                assert json.loads(data)["error"].get("type") != "server_error", f"{request}\n-> {line}"


def test_every_operation_is_fuzzed(api):
    schema, *_ = api
    found = {f"{method.upper()} {path}" for path, methods in schema.items() for method in methods}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_schema_fuzzed_requests_get_no_server_error(api, bundled_server, label):
    schema, auth, window, _, before = api
    method, path = label.split(" ")
    operation = schema[path][method]
    modes = [schemathesis.GenerationMode.POSITIVE]
    if operation.body or any(True for _ in operation.iter_parameters()):
        modes.append(schemathesis.GenerationMode.NEGATIVE)
    cases = st.one_of([operation.as_strategy(generation_mode=mode) for mode in modes])

    @settings(max_examples=SCHEMA_EXAMPLES, **FUZZ_SETTINGS)
    @given(case=cases, served_model=st.booleans())
    def fuzz(case, served_model):
        case.body = cheap(case.body, window, label in GENERATING)
        if served_model:  # else the name is generated, and mostly unknown: a 404
            if isinstance(case.body, dict) and "model" in case.body:
                case.body["model"] = bundled_server.model_name
            if "model_id" in (case.path_parameters or {}):
                case.path_parameters = {**case.path_parameters, "model_id": bundled_server.model_name}
        response = case.call(base_url=bundled_server.url, headers=auth, timeout=REQUEST_TIMEOUT_S)
        assert_no_server_error(response, case.as_curl_command())

    fuzz()
    assert normal_completion(bundled_server, auth) == before


def sampling_options(vocab: int) -> dict:
    """Optional sampling fields shared by both endpoints, in their valid ranges and a little beyond."""
    token = st.integers(0, vocab - 1)
    return {
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0.01, 1),
        "top_k": st.integers(-1, 50),
        "n": st.integers(1, MAX_COUNT),
        "seed": st.integers(0, 2**32),
        "stop": st.one_of(
            st.text(min_size=1, max_size=3), st.lists(st.text(min_size=1, max_size=3), max_size=3)
        ),
        "stop_token_ids": st.lists(token, max_size=3),
        "presence_penalty": st.floats(-2, 2),
        "frequency_penalty": st.floats(-2, 2),
        "repetition_penalty": st.floats(0.5, 2),
        "logit_bias": st.dictionaries(token.map(str), st.floats(-100, 100), max_size=3),
        "min_tokens": st.integers(0, MAX_GENERATED),
        "ignore_eos": st.booleans(),
        "stream": st.booleans(),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    }


def completion_bodies(model: str, vocab: int) -> st.SearchStrategy[dict]:
    """/v1/completions bodies: every prompt shape, lengths 0..MAX_GENERATED, echo and logprobs."""
    token = st.integers(0, vocab - 1)
    prompt = st.one_of(
        st.text(min_size=1, max_size=40),
        st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=3),
        st.lists(token, min_size=1, max_size=20),
        st.lists(st.lists(token, min_size=1, max_size=10), min_size=1, max_size=2),
    )
    options = {**sampling_options(vocab), "logprobs": st.integers(0, 5), "echo": st.booleans()}
    required = {"model": st.just(model), "prompt": prompt, "max_tokens": st.integers(0, MAX_GENERATED)}
    return st.fixed_dictionaries(required, optional=options)


def chat_bodies(model: str, vocab: int) -> st.SearchStrategy[dict]:
    """/v1/chat/completions bodies: short conversations, text parts, logprobs, a capped length."""
    content = st.one_of(
        st.text(max_size=40),
        st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)}), max_size=2),
    )
    message = st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer", "user", "assistant"]), "content": content}
    )
    length = st.sampled_from(["max_tokens", "max_completion_tokens"])
    logprobs = st.one_of(
        st.just({}), st.builds(lambda top: {"logprobs": True, "top_logprobs": top}, st.integers(0, 5))
    )
    required = {"model": st.just(model), "messages": st.lists(message, min_size=1, max_size=3)}
    return st.builds(
        lambda body, name, value, extra: {**body, name: value, **extra},
        st.fixed_dictionaries(required, optional=sampling_options(vocab)),
        length,
        st.integers(1, MAX_GENERATED),
        logprobs,
    )


@pytest.mark.parametrize("label", GENERATING)
def test_generation_options_get_no_server_error(api, bundled_server, label):
    _, auth, _, vocab, before = api
    method, path = label.split(" ")
    bodies = (completion_bodies if "chat" not in path else chat_bodies)(bundled_server.model_name, vocab)
    statuses: list[int] = []

    @settings(max_examples=OPTION_EXAMPLES, **FUZZ_SETTINGS)
    @given(body=bodies)
    def fuzz(body):
        statuses.append(send(bundled_server, auth, method, path, body).status_code)

    fuzz()
    assert statuses.count(200) >= len(statuses) // 2, f"most option combinations should be served: {statuses}"
    assert normal_completion(bundled_server, auth) == before


LONE_SURROGATE = "\ud800"  # valid JSON ("\\ud800"), but no UTF-8 encoding exists
COMPLETIONS, CHAT = "/v1/completions", "/v1/chat/completions"
EDGE_CASES = [  # values at the edges of the accepted ranges, which random generation rarely hits
    pytest.param(COMPLETIONS, {"temperature": 5e-324}, id="subnormal temperature"),
    pytest.param(COMPLETIONS, {"temperature": 5e-324, "stream": True}, id="subnormal temperature streamed"),
    pytest.param(CHAT, {"temperature": 5e-324, "stream": True}, id="subnormal temperature chat streamed"),
    pytest.param(COMPLETIONS, {"temperature": 1, "repetition_penalty": 1e-300}, id="tiny repetition penalty"),
    pytest.param(COMPLETIONS, {"temperature": 1, "repetition_penalty": 1e300}, id="huge repetition penalty"),
    pytest.param(COMPLETIONS, {"temperature": 1, "top_p": 1e-300}, id="tiny top_p"),
    pytest.param(COMPLETIONS, {"temperature": 1, "logit_bias": {"0": 100, "1": 100}}, id="logit_bias +100"),
    pytest.param(COMPLETIONS, {"seed": 2**64 + 1}, id="seed past int64"),
    pytest.param(COMPLETIONS, {"top_k": 10**12}, id="huge top_k"),
    pytest.param(COMPLETIONS, {"stop_token_ids": [10**12]}, id="huge stop token id"),
    pytest.param(
        COMPLETIONS, {"prompt": [0], "max_tokens": 0, "echo": True, "logprobs": 20}, id="echo one token"
    ),
    pytest.param(COMPLETIONS, {"prompt": LONE_SURROGATE}, id="lone surrogate prompt"),
    pytest.param(COMPLETIONS, {"stop": [LONE_SURROGATE]}, id="lone surrogate stop"),
    pytest.param(CHAT, {"messages": [{"role": "user", "content": LONE_SURROGATE}]}, id="lone surrogate chat"),
    pytest.param("/tokenize", {"prompt": LONE_SURROGATE}, id="lone surrogate tokenize"),
    pytest.param("/detokenize", {"tokens": []}, id="empty detokenize"),
]
DEFAULT_BODIES = {
    COMPLETIONS: {"prompt": "Hi", "max_tokens": MAX_GENERATED},
    CHAT: {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": MAX_GENERATED},
}


@pytest.mark.parametrize(("path", "body"), EDGE_CASES)
def test_edge_values_get_no_server_error(api, bundled_server, path, body):
    _, auth, *_, before = api
    send(bundled_server, auth, "POST", path, {**DEFAULT_BODIES.get(path, {}), **body})
    assert normal_completion(bundled_server, auth) == before
