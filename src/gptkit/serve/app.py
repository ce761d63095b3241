"""The OpenAI-compatible FastAPI app: :func:`create_app` wires the engine, the routes and the middleware.

Every generation goes through one :class:`AsyncEngine` (continuous batching: all clients share the model).
``n`` choices of one prompt are ``n`` engine requests; with a ``seed``, choice ``i`` of the response is
sampled with ``seed + i``, so the whole response is reproducible. The routes live in
:mod:`gptkit.serve.routes`, one module per endpoint family.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from gptkit.engine import Engine
from gptkit.errors import ConfigError
from gptkit.serve.config import ServeConfig
from gptkit.serve.driver import AsyncEngine
from gptkit.serve.errors import install_error_handlers
from gptkit.serve.metrics import MetricsMiddleware, ServerMetrics
from gptkit.serve.middleware import AuthMiddleware, BodyMiddleware
from gptkit.serve.routes import ROUTERS
from gptkit.serve.state import ServerState
from gptkit.serve.web import router as web_router


def create_app(model: Any, tokenizer: Any, config: ServeConfig | None = None, **settings: Any) -> FastAPI:
    """An OpenAI-compatible app serving ``model`` with continuous batching, as ``config`` says.

    ``settings`` are :class:`ServeConfig` fields, applied over ``config`` (or the defaults):
    ``create_app(model, tokenizer, model_name="m", api_key="k")``. A model name is required. With
    ``compile``, the decode step is compiled here, before the app is returned.
    """
    config = (config or ServeConfig()).replace(**settings)
    if config.model_name is None:
        raise ConfigError("create_app needs a model_name: the name clients use for the served model")
    engine = Engine(
        model,
        tokenizer,
        config.max_batch_size,
        config.max_seq_len,
        compile=config.compile,
        prefix_cache_mb=config.prefix_cache_mb,
    )
    if config.compile:
        engine.warm_up()
    driver = AsyncEngine(engine, config.max_queue)
    metrics = ServerMetrics(lambda: driver.num_waiting, lambda: driver.num_running, engine.prefix_cache)
    state = ServerState(driver, tokenizer, config, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        driver.start()
        yield
        driver.stop()

    app = FastAPI(title="gptkit", description="OpenAI-compatible API over gptkit's engine", lifespan=lifespan)
    app.state.gptkit = state
    install_error_handlers(app)
    routers = [*ROUTERS, web_router]
    for router in routers:
        app.include_router(router)
    limits = config.limits
    app.add_middleware(BodyMiddleware, max_bytes=limits.max_body_bytes, read_timeout_s=limits.read_timeout_s)
    app.add_middleware(AuthMiddleware, api_key=state.api_key)  # outside: no body is read without the key
    paths = {route.path for router in routers for route in router.routes}
    app.add_middleware(MetricsMiddleware, metrics=metrics, paths=paths)
    return app
