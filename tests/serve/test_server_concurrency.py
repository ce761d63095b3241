"""Serving behaviour: many clients share one batch, disconnects free slots, a full queue says 429, timeouts."""

from __future__ import annotations

import asyncio
import threading

import httpx
import openai
import pytest

from gptkit.engine import SamplingParams
from gptkit.serve import create_app, serve_in_thread

pytestmark = pytest.mark.slow

RUNNING = "gptkit_requests_running"
WAITING = "gptkit_requests_waiting"
LONG = {"max_tokens": 2000, "temperature": 0, "ignore_eos": True}  # runs for seconds unless aborted


def test_32_concurrent_streams_equal_each_run_alone(bundled_server, reference_engine, metric):
    tokenizer = bundled_server.tokenizer
    prompts = [f"Fact {i}: the number {i * 7} is" for i in range(32)]
    alone = [
        reference_engine.generate([tokenizer.encode(p)], SamplingParams(max_tokens=6, temperature=0))[0].text
        for p in prompts
    ]
    client = openai.AsyncOpenAI(
        base_url=bundled_server.base_url, api_key=bundled_server.api_key, max_retries=0
    )

    async def stream_one(prompt: str) -> str:
        chunks = await client.completions.create(
            model=bundled_server.model_name, prompt=prompt, max_tokens=6, temperature=0, stream=True
        )
        return "".join([c.choices[0].text async for c in chunks])

    async def stream_all() -> list[str]:
        async with client:
            return await asyncio.gather(*(stream_one(p) for p in prompts))

    assert asyncio.run(stream_all()) == alone
    assert metric(bundled_server.url, RUNNING) == 0


def _auth(server):
    return {"authorization": f"Bearer {server.api_key}"}


def test_a_streaming_client_that_disconnects_frees_its_slot(bundled_server, metric, eventually):
    body = {"prompt": "Count to a thousand:", "stream": True, **LONG}
    url = bundled_server.base_url + "/completions"
    with httpx.stream("POST", url, json=body, headers=_auth(bundled_server), timeout=60) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
        assert metric(bundled_server.url, RUNNING) == 1
    assert eventually(lambda: metric(bundled_server.url, RUNNING) == 0, timeout=10)


def test_a_waiting_client_that_disconnects_frees_its_slot(bundled_server, metric, eventually):
    body = {"messages": [{"role": "user", "content": "Count to a thousand."}], **LONG}
    finished_before = metric(bundled_server.url, "gptkit_requests_finished_total", {"reason": "length"})
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(bundled_server.base_url + "/chat/completions", json=body, headers=_auth(bundled_server), timeout=1.0)  # fmt: skip
    assert eventually(lambda: metric(bundled_server.url, RUNNING) == 0, timeout=10)
    assert (
        metric(bundled_server.url, "gptkit_requests_finished_total", {"reason": "length"}) == finished_before
    )


def one_slot_app(bundled_model_and_tokenizer, **options):
    """A second app on the same model with one slot (the session's server stays untouched)."""
    model, tokenizer = bundled_model_and_tokenizer
    return create_app(model, tokenizer, model_name="one-slot", max_batch_size=1, **options)


@pytest.fixture(scope="module")
def queue_server(bundled_model_and_tokenizer):
    """One slot and room for one waiting request."""
    with serve_in_thread(one_slot_app(bundled_model_and_tokenizer, max_queue=1)) as running:
        yield running


@pytest.fixture(scope="module")
def timeout_server(bundled_model_and_tokenizer):
    """Requests may take half a second."""
    with serve_in_thread(one_slot_app(bundled_model_and_tokenizer, timeout_s=0.5)) as running:
        yield running


def test_a_full_queue_answers_429_with_retry_after(queue_server, metric, eventually):
    url = queue_server.url
    stream_body = {"prompt": "Count:", "stream": True, **LONG}
    waiting_result = {}

    def wait_in_queue():
        waiting_result["response"] = httpx.post(url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2}, timeout=60)  # fmt: skip

    with httpx.stream("POST", url + "/v1/completions", json=stream_body, timeout=60) as running:
        lines = running.iter_lines()  # kept: closing this iterator would close the connection
        assert next(line for line in lines if line.startswith("data:"))
        assert metric(url, RUNNING) == 1
        waiter = threading.Thread(target=wait_in_queue)
        waiter.start()
        assert eventually(lambda: metric(url, WAITING) == 1, timeout=10)
        full = httpx.post(url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2}, timeout=60)
        assert full.status_code == 429
        assert full.headers["retry-after"] == "1"
        assert full.json()["error"]["code"] == "rate_limit_exceeded"
        with pytest.raises(openai.RateLimitError):
            openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0).completions.create(
                model="one-slot", prompt="Hi", max_tokens=2
            )
    waiter.join(30)
    assert waiting_result["response"].status_code == 200  # it got the slot once the stream went away
    assert eventually(lambda: metric(url, RUNNING) == 0 and metric(url, WAITING) == 0, timeout=10)


def test_a_request_over_the_timeout_is_408_and_frees_its_slot(timeout_server, metric, eventually):
    url = timeout_server.url
    body = {"prompt": "Count:", "max_tokens": LONG["max_tokens"], "temperature": 0}
    response = httpx.post(url + "/v1/completions", json={**body, "ignore_eos": True}, timeout=60)
    assert response.status_code == 408
    assert response.json()["error"]["type"] == "timeout_error"
    assert eventually(lambda: metric(url, RUNNING) == 0, timeout=10)
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
    with pytest.raises(openai.APIError, match="timeout"):
        for _ in client.completions.create(
            model="one-slot", stream=True, extra_body={"ignore_eos": True}, **body
        ):
            pass
    assert eventually(lambda: metric(url, RUNNING) == 0, timeout=10)
