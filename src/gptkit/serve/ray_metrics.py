"""/metrics across Ray Serve replicas: each replica publishes its Prometheus text to one named actor, and any
replica answers /metrics with every live replica's samples, labelled ``replica="<id>"``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ray
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Receive, Scope, Send

PUBLISH_INTERVAL_S = 1.0
STALE_AFTER_S = 10.0  # a replica silent this long (killed, scaled down) drops out of /metrics
REPLICA_HEADER = b"x-gptkit-replica"  # every response names the replica that served it


@ray.remote(num_cpus=0)
class MetricsHub:
    """The latest exposition text of each replica of one app."""

    def __init__(self) -> None:
        self.texts: dict[str, tuple[float, str]] = {}

    def publish(self, replica: str, text: str) -> None:
        self.texts[replica] = (time.monotonic(), text)

    def forget(self, replica: str) -> None:
        self.texts.pop(replica, None)

    def collect(self) -> dict[str, str]:
        now = time.monotonic()
        self.texts = {k: v for k, v in self.texts.items() if now - v[0] < STALE_AFTER_S}
        return {replica: text for replica, (_, text) in self.texts.items()}


def hub_for(app_name: str):
    """The app's hub actor, created by the first replica that asks (it lives in Serve's namespace)."""
    return MetricsHub.options(
        name=f"gptkit-metrics-{app_name}", namespace="serve", get_if_exists=True
    ).remote()


def merge_expositions(texts: dict[str, str]) -> bytes:
    """One Prometheus text of several replicas' texts, each sample labelled with its replica."""
    families: dict[str, Metric] = {}
    for replica, text in sorted(texts.items()):
        for family in text_string_to_metric_families(text):
            merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            for sample in family.samples:
                merged.samples.append(sample._replace(labels={**sample.labels, "replica": replica}))
    registry = CollectorRegistry()
    registry.register(_Families(list(families.values())))
    return generate_latest(registry)


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


class ReplicaFrontend:
    """ASGI wrapper of one replica's app: tags responses with the replica, answers /metrics for all of them
    and keeps this replica's metrics published (everything else, lifespan included, goes to the app)."""

    def __init__(self, app: ASGIApp, replica: str, metrics: Any, app_name: str) -> None:
        self.app, self.replica, self.metrics, self.app_name = app, replica, metrics, app_name
        self.hub = hub_for(app_name)
        self._publisher: asyncio.Task | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._publisher is None:  # the first call is the lifespan startup, in the replica's loop
            self._publisher = asyncio.get_running_loop().create_task(self._publish_forever())
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            await self._metrics(send)
            return
        await self.app(scope, receive, self._tagging(send))

    def _tagging(self, send: Send) -> Send:
        async def tagged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (REPLICA_HEADER, self.replica.encode())]
                message = {**message, "headers": headers}
            await send(message)

        return tagged

    async def _metrics(self, send: Send) -> None:
        await self._publish()
        texts = await self.hub.collect.remote()
        texts[self.replica] = self.metrics.exposition().decode()
        body = merge_expositions(texts)
        headers = [
            (b"content-type", self.metrics.content_type.encode()),
            (REPLICA_HEADER, self.replica.encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _publish(self) -> None:
        await self.hub.publish.remote(self.replica, self.metrics.exposition().decode())

    async def _publish_forever(self) -> None:
        while True:
            try:
                await self._publish()
            except ray.exceptions.RayActorError:  # the hub died with the replica that created it
                self.hub = hub_for(self.app_name)
            await asyncio.sleep(PUBLISH_INTERVAL_S)
