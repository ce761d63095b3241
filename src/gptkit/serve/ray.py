"""Ray Serve (``pip install gptkit[ray]``): N replicas of the same FastAPI app behind Ray's HTTP proxy.

``gptkit serve MODEL --ray --replicas N``, or ``serve run gptkit.serve.ray:app model=MODEL replicas=N``.
Each replica loads the model and runs :func:`gptkit.serve.create_app` unchanged (auth, limits, queue and
errors are the single process's), wrapped by :class:`~gptkit.serve.ray_metrics.ReplicaFrontend` for /metrics
across replicas. Requests carrying an ``x-session-id`` header go to one replica by consistent hashing (Ray's
``ConsistentHashRouter``), so a conversation keeps hitting the replica whose cache holds its prefix.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import Any

from gptkit.errors import ConfigError

try:
    import ray
    from ray import serve
    from ray.serve.config import RequestRouterConfig
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("Ray Serve is not installed: pip install 'gptkit[ray]'") from exc

from gptkit.serve.app import create_app
from gptkit.serve.config import Limits, RayOptions, ServeConfig
from gptkit.serve.ray_metrics import ReplicaFrontend
from gptkit.serve.startup import base_url, startup_line

SESSION_ROUTER = "ray.serve.experimental.consistent_hash_router.ConsistentHashRouter"
SESSION_HEADER = "x-session-id"  # Ray's default session header (RAY_SERVE_SESSION_ID_HEADER_KEY)
DEPLOYMENT_NAME = "GPTKitReplica"
TEXT_FIELDS = frozenset({"model_name", "api_key", "address", "routing", "app_name", "log_level"})
ModelSource = (
    str | Callable[[], tuple[Any, Any]]
)  # a name or path for gptkit.load, or () -> (model, tokenizer)


@serve.ingress()
class GPTKitReplica:
    """One replica: the model, its engine and the FastAPI app around them (built once the replica starts)."""

    def __init__(self, model: ModelSource, config: ServeConfig, load_options: dict[str, Any], app_name: str):
        import torch

        torch.set_num_threads(max(1, int(float(os.environ.get("OMP_NUM_THREADS", "1")))))
        if callable(model):
            self.model, self.tokenizer = model()
        else:
            from gptkit.loader import load

            self.model, self.tokenizer = load(model, **load_options)
        self.config, self.app_name = config, app_name
        self.replica = serve.get_replica_context().replica_id.unique_id

    def __serve_build_asgi_app__(self) -> ReplicaFrontend:
        app = create_app(self.model, self.tokenizer, self.config)
        return ReplicaFrontend(app, self.replica, app.state.gptkit.metrics, self.app_name)


def build_app(
    model: ModelSource, config: ServeConfig, options: RayOptions | None = None, **load_options: Any
) -> serve.Application:
    """The Ray Serve application: ``options.replicas`` (or autoscaled) replicas serving ``model``."""
    options = options or RayOptions()
    if config.model_name is None:
        if callable(model):
            raise ConfigError("build_app needs config.model_name when the model comes from a function")
        config = config.replace(model_name=str(model))
    deployment = serve.deployment(GPTKitReplica, name=DEPLOYMENT_NAME).options(
        **deployment_options(config, options)
    )
    return deployment.bind(model, config, load_options, options.app_name)


def deployment_options(config: ServeConfig, options: RayOptions) -> dict[str, Any]:
    """Replica count or autoscaling, CPUs, the router, and room for the app's own queue (which answers 429)."""
    scale = (
        {"autoscaling_config": options.autoscaling}
        if options.autoscaling
        else {"num_replicas": options.replicas}
    )
    router = {}
    if options.routing == "session":
        router["request_router_config"] = RequestRouterConfig(request_router_class=SESSION_ROUTER)
    return {
        **scale,
        **router,
        "ray_actor_options": {"num_cpus": options.cpus_per_replica},
        "max_ongoing_requests": config.max_batch_size + config.max_queue,
    }


def start(model: ModelSource, config: ServeConfig, options: RayOptions, **load_options: Any) -> str:
    """Join (or start) a Ray cluster, deploy the app on config.host:config.port and return its base URL."""
    if not ray.is_initialized():
        ray.init(address=options.address, log_to_driver=False)
    serve.start(http_options={"host": config.host, "port": config.port})
    app = build_app(model, config, options, **load_options)
    serve.run(app, name=options.app_name, route_prefix="/")
    return base_url(config.host, config.port)


def run(model: str, config: ServeConfig, options: RayOptions, **load_options: Any) -> None:
    """``gptkit serve MODEL --ray``: deploy, announce, and keep serving until interrupted."""
    url = start(model, config, options, **load_options)
    replicas = (
        f"autoscaling {options.autoscaling}" if options.autoscaling else f"{options.replicas} replica(s)"
    )
    name = config.model_name or model
    print(startup_line(name, url, bool(config.api_key)) + f" | ray serve: {replicas}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()


def app(args: dict[str, str]) -> serve.Application:
    """``serve run gptkit.serve.ray:app model=NAME [replicas=2 autoscaling='{...}' api_key=... key=value]``.

    Keys: ``model``, ``dtype``, ``quantize``, :class:`RayOptions` and :class:`ServeConfig` fields, and
    :class:`Limits` fields; the API key may also come from $GPTKIT_API_KEY. Serve's own CLI sets host and port.
    """
    args = dict(args)
    if "model" not in args:
        raise ConfigError("serve run gptkit.serve.ray:app needs model=NAME_OR_PATH")
    model = args.pop("model")
    load_options = {k: args.pop(k) for k in ("dtype", "quantize") if k in args}
    options = _fields(RayOptions, args)
    limits = _fields(Limits, args)
    config = _fields(ServeConfig, args)
    if args:
        raise ConfigError(f"unknown serve run argument(s): {', '.join(sorted(args))}")
    config.setdefault("api_key", os.environ.get("GPTKIT_API_KEY") or None)
    serve_config = ServeConfig(limits=Limits(**limits), **{"model_name": model, **config})
    return build_app(model, serve_config, RayOptions(**options), **load_options)


def _fields(cls: type, args: dict[str, Any]) -> dict[str, Any]:
    """Pop ``cls``'s fields from ``args``, parsing the text ``serve run key=value`` passes."""
    taken = {}
    for field in dataclasses.fields(cls):
        if field.name in args and field.name not in ("limits", "host", "port"):
            taken[field.name] = _parse(field.name, args.pop(field.name), field.default)
    return taken


def _parse(name: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str) or name in TEXT_FIELDS:
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise ConfigError(
            f"{name}={value!r} is not valid (expected JSON: a number, true/false or an object)"
        ) from None
