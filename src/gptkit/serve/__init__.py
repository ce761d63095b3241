"""OpenAI-compatible HTTP server over gptkit's engine (FastAPI + uvicorn)."""

from gptkit.serve.app import Limits, create_app
from gptkit.serve.server import RunningServer, load_app, run, serve_in_thread

__all__ = ["Limits", "RunningServer", "create_app", "load_app", "run", "serve_in_thread"]
