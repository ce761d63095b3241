"""The non-generation routes: models, tokenizer endpoints in vLLM's shapes, health, metrics, the chat page."""

from __future__ import annotations

import httpx
import pytest
from lm_eval.utils import RemoteTokenizer, check_remote_tokenizer_support

pytestmark = pytest.mark.slow


def auth(server):
    return {"authorization": f"Bearer {server.api_key}"}


def test_models_lists_the_served_model(openai_client, bundled_server):
    models = openai_client.models.list().data
    assert [m.id for m in models] == [bundled_server.model_name]
    assert models[0].owned_by == "gptkit"


def test_tokenize_and_detokenize_round_trip(bundled_server):
    tokenizer = bundled_server.tokenizer
    text = "Hello world<|im_end|> héllo 🙂"
    body = {"prompt": text, "add_special_tokens": False, "return_token_strs": True}
    result = httpx.post(bundled_server.url + "/tokenize", json=body, headers=auth(bundled_server)).json()
    expected = tokenizer.encode(text, add_special_tokens=False, allowed_special="all")
    assert result["tokens"] == expected
    assert tokenizer.eos_token_id in expected  # special-token text is the special token, as in vLLM
    assert result["count"] == len(expected) and result["max_model_len"] == 2048
    assert len(result["token_strs"]) == len(expected)
    back = httpx.post(
        bundled_server.url + "/detokenize", json={"tokens": expected}, headers=auth(bundled_server)
    )
    assert back.json() == {"prompt": text}


def test_tokenize_chat_messages_uses_the_chat_template(bundled_server):
    messages = [{"role": "user", "content": "Hi"}]
    result = httpx.post(
        bundled_server.url + "/tokenize", json={"messages": messages}, headers=auth(bundled_server)
    ).json()
    assert result["tokens"] == bundled_server.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True
    )


def test_tokenizer_info_has_what_lm_eval_reads(bundled_server):
    info = httpx.get(bundled_server.url + "/tokenizer_info").json()
    tokenizer = bundled_server.tokenizer
    assert info["eos_token"] == tokenizer.eos_token and info["bos_token"] == tokenizer.bos_token
    assert info["chat_template"] == tokenizer.chat_template
    assert info["model_max_length"] == 2048


def test_lm_eval_remote_tokenizer_works_against_the_server(bundled_server):
    url = bundled_server.base_url + "/completions"
    assert check_remote_tokenizer_support(url, auth_token=bundled_server.api_key)
    remote = RemoteTokenizer(url, auth_token=bundled_server.api_key)
    tokenizer = bundled_server.tokenizer
    assert remote.eos_token_id == tokenizer.eos_token_id
    ids = remote.encode("The quick brown fox")
    assert ids == tokenizer.encode("The quick brown fox", add_special_tokens=False)
    assert remote.decode(ids) == "The quick brown fox"
    messages = [{"role": "user", "content": "Hi"}]
    assert remote.apply_chat_template(messages) == tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )


def test_health_and_index(bundled_server):
    assert httpx.get(bundled_server.url + "/health").json() == {"status": "ok"}
    page = httpx.get(bundled_server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_metrics_count_requests_tokens_and_latency(bundled_server, openai_client, metric):
    url = bundled_server.url
    route = {"route": "/v1/completions", "status": "200"}
    before = {
        "requests": metric(url, "gptkit_http_requests_total", route),
        "unauthorized": metric(
            url, "gptkit_http_requests_total", {"route": "/v1/completions", "status": "401"}
        ),
        "prompt": metric(url, "gptkit_prompt_tokens_total"),
        "generated": metric(url, "gptkit_generation_tokens_total"),
        "e2e": metric(url, "gptkit_e2e_request_latency_seconds_count"),
        "ttft": metric(url, "gptkit_time_to_first_token_seconds_count"),
    }
    response = openai_client.completions.create(
        model=bundled_server.model_name, prompt="Hello", max_tokens=3, temperature=0
    )
    httpx.post(url + "/v1/completions", json={"prompt": "x"})  # no key: 401
    assert metric(url, "gptkit_http_requests_total", route) == before["requests"] + 1
    assert metric(url, "gptkit_http_requests_total", {"route": "/v1/completions", "status": "401"}) == before["unauthorized"] + 1  # fmt: skip
    assert metric(url, "gptkit_prompt_tokens_total") == before["prompt"] + response.usage.prompt_tokens
    assert (
        metric(url, "gptkit_generation_tokens_total")
        == before["generated"] + response.usage.completion_tokens
    )
    assert metric(url, "gptkit_e2e_request_latency_seconds_count") == before["e2e"] + 1
    assert metric(url, "gptkit_time_to_first_token_seconds_count") == before["ttft"] + 1
    assert metric(url, "gptkit_requests_running") == 0 and metric(url, "gptkit_requests_waiting") == 0
