"""Running the app: uvicorn in a background thread (tests, benchmarks, notebooks) or in the foreground (CLI)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from gptkit.errors import ConfigError
from gptkit.serve.app import create_app
from gptkit.serve.config import ServeConfig

STARTUP_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 30.0

__all__ = ["RunningServer", "ServeConfig", "create_app", "load_app", "run", "serve_in_thread"]


@dataclass
class RunningServer:
    """A server started by :func:`serve_in_thread`: its base URL (``http://host:port``) and uvicorn server."""

    url: str
    host: str
    port: int
    server: uvicorn.Server


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningServer]:
    """Serve ``app`` with uvicorn in a daemon thread (port 0: a free port); stop it cleanly on exit."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="gptkit-uvicorn", daemon=True)
    thread.start()
    try:
        _wait_started(server, thread)
        bound_port = server.servers[0].sockets[0].getsockname()[1]
        yield RunningServer(f"http://{host}:{bound_port}", host, bound_port, server)
    finally:
        server.should_exit = True
        thread.join(SHUTDOWN_TIMEOUT_S)


def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server thread exited before it started (is the port in use?)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start within {STARTUP_TIMEOUT_S:g} s")
        time.sleep(0.01)


def load_app(
    model_name_or_path: str,
    config: ServeConfig | None = None,
    *,
    dtype: str | None = None,
    quantize: str | None = None,
    lora: Mapping[str, str | Path] | None = None,
) -> FastAPI:
    """Load a model and its tokenizer by registry name or path and build the app as ``config`` says
    (its ``model_name`` defaults to ``model_name_or_path``; ``speculative="draft:MODEL"`` loads that
    draft model the same way, checking that its tokenizer is the model's). ``lora``: adapter name ->
    directory, each served under its name (AdapterError, before anything listens, when one does not fit)."""
    from gptkit.loader import load
    from gptkit.weights.adapters import load_adapter

    config = config or ServeConfig()
    if config.model_name is None:
        config = config.replace(model_name=str(model_name_or_path))
    _check_adapter_names(config.model_name, lora or {})
    model, tokenizer = load(model_name_or_path, dtype=dtype, quantize=quantize)
    draft = config.speculative
    if isinstance(draft, str) and draft.startswith("draft:"):
        from gptkit.engine.speculative import check_draft_tokenizer

        draft_model, draft_tokenizer = load(draft[len("draft:") :], dtype=dtype, quantize=quantize)
        check_draft_tokenizer(tokenizer, draft_tokenizer)
        config = config.replace(speculative=draft_model)
    for name, path in (lora or {}).items():
        load_adapter(model, path, name=name)
    return create_app(model, tokenizer, config)


def _check_adapter_names(model_name: str, lora: Mapping[str, str | Path]) -> None:
    """ConfigError for an adapter named like the served model or with no name."""
    for name in lora:
        if not name or name == model_name:
            raise ConfigError(f"an adapter needs a name of its own, other than the model's: got {name!r}")


def run(
    model_name_or_path: str,
    config: ServeConfig | None = None,
    *,
    dtype: str | None = None,
    quantize: str | None = None,
    lora: Mapping[str, str | Path] | None = None,
) -> None:
    """Load the model (and its LoRA adapters) and serve it on ``config.host:config.port`` until interrupted;
    once it listens, one line names the model, the API and web chat URLs and whether an API key is needed."""
    from gptkit.serve.startup import AnnouncingServer, base_url, startup_line

    config = config or ServeConfig()
    app = load_app(model_name_or_path, config, dtype=dtype, quantize=quantize, lora=lora)
    state = app.state.gptkit
    uvicorn_config = uvicorn.Config(app, host=config.host, port=config.port, log_level=config.log_level)

    def announce(bound_port: int) -> str:
        return startup_line(state.model_name, base_url(config.host, bound_port), state.api_key is not None)

    AnnouncingServer(uvicorn_config, announce).run()
