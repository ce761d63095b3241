"""Ray Serve: two replicas of the tiny model on a local Ray cluster, behind Ray's HTTP proxy.

One cluster for the module (Ray starts slowly). The same model also runs in a single-process server here, so
the answers, auth and limit errors through Ray are compared with the single process's.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families
from ray import serve

from gptkit.serve import create_app, serve_in_thread
from gptkit.serve import ray as ray_serve
from gptkit.serve.config import Limits, RayOptions, ServeConfig
from gptkit.serve.ray_metrics import merge_expositions

pytestmark = pytest.mark.slow

API_KEY = "ray-key"
CONFIG = ServeConfig(
    model_name="tiny", api_key=API_KEY, max_batch_size=8, max_queue=16, limits=Limits(max_n=2)
)
AUTH = {"Authorization": f"Bearer {API_KEY}"}
REPLICA = "x-gptkit-replica"


def tiny_model_and_tokenizer():
    """Runs in each replica (pickled by value): a seeded one-layer model over the bundled vocabulary."""
    import torch

    from gptkit import GPT4Config, GPT4LMHeadModel, GPT4Tokenizer
    from gptkit.registry import DEFAULT_MODEL

    tokenizer = GPT4Tokenizer.from_pretrained(DEFAULT_MODEL)
    torch.manual_seed(0)
    config = GPT4Config(
        vocab_size=len(tokenizer), n_layer=1, n_head=2, n_embd=32, context_length=2048,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    return GPT4LMHeadModel(config).eval(), tokenizer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_url():
    """A local Ray cluster serving 2 replicas of the tiny model; its HTTP base URL."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        options = RayOptions(replicas=2, cpus_per_replica=0.5)
        yield ray_serve.start(tiny_model_and_tokenizer, CONFIG.replace(port=_free_port()), options)
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def local_url():
    """The same model and config in one process (uvicorn in a thread)."""
    model, tokenizer = tiny_model_and_tokenizer()
    with serve_in_thread(create_app(model, tokenizer, CONFIG)) as running:
        yield running.url


def _post(url: str, path: str, body: dict | bytes, headers=AUTH) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(
            url + path, content=body, headers={**headers, "content-type": "application/json"}, timeout=60
        )
    return httpx.post(url + path, json=body, headers=headers, timeout=60)


def test_the_openai_client_gets_the_single_process_answers(ray_url, local_url):
    answers = []
    for url in (ray_url, local_url):
        client = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
        assert [m.id for m in client.models.list()] == ["tiny"]
        chat = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0
        )
        stream = client.completions.create(
            model="tiny", prompt="Once upon", max_tokens=6, temperature=0, stream=True
        )
        answers.append(
            (
                chat.choices[0].message.content,
                chat.usage.completion_tokens,
                "".join(c.choices[0].text for c in stream),
            )
        )
    assert answers[0] == answers[1]
    assert answers[0][1] == 8


HOSTILE = [
    ("no key", "/v1/completions", {"model": "tiny", "prompt": "x"}, {}),
    ("wrong key", "/v1/completions", {"model": "tiny", "prompt": "x"}, {"Authorization": "Bearer nope"}),
    ("n over the limit", "/v1/completions", {"model": "tiny", "prompt": "x", "n": 3}, AUTH),
    (
        "unknown model",
        "/v1/chat/completions",
        {"model": "big", "messages": [{"role": "user", "content": "x"}]},
        AUTH,
    ),
    ("body too large", "/v1/completions", b'{"prompt": "' + b"x" * (5 * 1024 * 1024) + b'"}', AUTH),
    ("bad json", "/v1/completions", b"{", AUTH),
]


@pytest.mark.parametrize("case, path, body, headers", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_auth_and_limits_answer_as_the_single_process(ray_url, local_url, case, path, body, headers):
    through_ray, local = (_post(url, path, body, headers) for url in (ray_url, local_url))
    assert through_ray.status_code == local.status_code >= 400
    assert through_ray.json() == local.json()


def _replica_of(url: str, headers: dict | None = None) -> str:
    response = _post(
        url,
        "/v1/completions",
        {"model": "tiny", "prompt": "hi", "max_tokens": 1},
        {**AUTH, **(headers or {})},
    )
    assert response.status_code == 200, response.text
    return response.headers[REPLICA]


def test_requests_spread_and_sessions_stick(ray_url):
    with ThreadPoolExecutor(4) as pool:
        anonymous = set(pool.map(lambda _: _replica_of(ray_url), range(16)))
        alice = set(pool.map(lambda _: _replica_of(ray_url, {"x-session-id": "alice"}), range(8)))
        sessions = set(pool.map(lambda i: _replica_of(ray_url, {"x-session-id": f"s{i}"}), range(16)))
    assert len(anonymous) == 2  # no session: spread over both replicas
    assert len(alice) == 1  # one session: always the replica holding its prefix
    assert sessions == anonymous  # many sessions: spread too


def _requests_by_replica(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=30).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "gptkit_http_requests_total"
                and sample.labels.get("route") == "/v1/completions"
            ):
                replica = sample.labels["replica"]
                counts[replica] = counts.get(replica, 0) + sample.value
    return counts


def test_metrics_cover_every_replica_with_labels(ray_url):
    replicas = {_replica_of(ray_url, {"x-session-id": f"m{i}"}) for i in range(12)}
    time.sleep(1.5)  # each replica publishes once a second
    before = _requests_by_replica(ray_url)
    assert set(before) == replicas and len(replicas) == 2
    target = _replica_of(ray_url, {"x-session-id": "m0"})
    time.sleep(1.5)
    after = _requests_by_replica(ray_url)
    assert after[target] == before[target] + 1


def test_merge_labels_each_sample_with_its_replica():
    text = '# HELP c_total C\n# TYPE c_total counter\nc_total{route="/x"} 3.0\n'
    merged = merge_expositions({"a": text, "b": text.replace("3.0", "4.0")}).decode()
    assert 'c_total{replica="a",route="/x"} 3.0' in merged
    assert 'c_total{replica="b",route="/x"} 4.0' in merged


def _stream(url: str, session: str, started: threading.Event, outcome: list) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)
    try:
        stream = client.completions.create(
            model="tiny", prompt="go", max_tokens=2000, temperature=0, stream=True,
            extra_headers={"x-session-id": session},
        )  # fmt: skip
        for chunks, _ in enumerate(stream, 1):
            if chunks == 3:
                started.set()
        outcome.append("completed")
    except Exception as exc:  # the replica died under it: any error, as long as it is not a hang
        outcome.append(type(exc).__name__)
    finally:
        started.set()


def _kill_replica(unique_id: str) -> None:
    names = [
        a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].endswith("#" + unique_id)
    ]
    assert len(names) == 1, names
    ray.kill(ray.get_actor(names[0]["name"], namespace=names[0]["namespace"]), no_restart=True)


def test_a_killed_replica_is_replaced_and_only_its_in_flight_requests_fail(ray_url):
    victim = _replica_of(ray_url, {"x-session-id": "victim"})
    outcomes: list[str] = []
    threads = []
    for _ in range(2):
        started = threading.Event()
        thread = threading.Thread(target=_stream, args=(ray_url, "victim", started, outcomes), daemon=True)
        thread.start()
        assert started.wait(60)
        threads.append(thread)
    _kill_replica(victim)
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "an in-flight request hung after its replica died"
    assert len(outcomes) == 2 and "completed" not in outcomes, outcomes
    with ThreadPoolExecutor(4) as pool:  # every request after the kill is answered
        served = list(pool.map(lambda _: _replica_of(ray_url), range(12)))
    assert victim not in served
    deadline = time.monotonic() + 120
    replicas = set(served)
    while len(replicas) < 2 and time.monotonic() < deadline:  # the controller starts a replacement
        replicas |= set(_replica_of(ray_url) for _ in range(4))
        time.sleep(0.5)
    assert len(replicas) == 2 and victim not in replicas


def test_app_builder_parses_serve_run_arguments():
    application = ray_serve.app(
        {
            "model": "m",
            "replicas": "3",
            "api_key": "123",
            "max_n": "4",
            "routing": "pow2",
            "max_batch_size": "4",
        }
    )
    model, config, load_options, app_name = application._bound_deployment.init_args
    assert (model, config.api_key, config.limits.max_n, config.max_batch_size) == ("m", "123", 4, 4)
    options = ray_serve.deployment_options(
        config, RayOptions(autoscaling={"min_replicas": 1, "max_replicas": 3})
    )
    assert options["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 3}
    assert options["max_ongoing_requests"] == 4 + config.max_queue
    assert "request_router_config" in options
    with pytest.raises(Exception, match="unknown serve run argument"):
        ray_serve.app({"model": "m", "replica": "3"})
