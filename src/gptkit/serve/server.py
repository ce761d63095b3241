"""Running the app: uvicorn in a background thread (tests, benchmarks, notebooks) or in the foreground (CLI)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from gptkit.serve.app import create_app

STARTUP_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 30.0

__all__ = ["RunningServer", "create_app", "load_app", "run", "serve_in_thread"]


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
    *,
    served_name: str | None = None,
    dtype: str | None = None,
    quantize: str | None = None,
    **options: Any,
) -> FastAPI:
    """Load a model and its tokenizer by registry name or path and build the app (options: create_app's;
    ``speculative="draft:MODEL"`` loads the draft model the same way)."""
    from gptkit.loader import load

    model, tokenizer = load(model_name_or_path, dtype=dtype, quantize=quantize)
    speculative = options.pop("speculative", None)
    if isinstance(speculative, str) and speculative.startswith("draft:"):
        from gptkit.engine.speculative import check_draft_tokenizer

        speculative, draft_tokenizer = load(speculative[len("draft:") :], dtype=dtype, quantize=quantize)
        check_draft_tokenizer(tokenizer, draft_tokenizer)
    return create_app(
        model,
        tokenizer,
        model_name=served_name or str(model_name_or_path),
        speculative=speculative,
        **options,
    )


def run(
    model_name_or_path: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    **options: Any,
) -> None:
    """Load the model and serve it in the foreground until interrupted (options: load_app's); once it
    listens, one line names the model, the API and web chat URLs and whether an API key is needed."""
    from gptkit.serve.startup import AnnouncingServer, base_url, startup_line

    app = load_app(model_name_or_path, **options)
    state = app.state.gptkit
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level)

    def announce(bound_port: int) -> str:
        return startup_line(state.model_name, base_url(host, bound_port), state.api_key is not None)

    AnnouncingServer(config, announce).run()
