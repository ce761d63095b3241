"""OpenAI-compatible HTTP server over gptkit's engine (FastAPI + uvicorn); imported on first use."""

from gptkit._lazy import lazy_getattr

_EXPORTS = {
    "Limits": "gptkit.serve.config",
    "ServeConfig": "gptkit.serve.config",
    "create_app": "gptkit.serve.app",
    "RunningServer": "gptkit.serve.server",
    "load_app": "gptkit.serve.server",
    "run": "gptkit.serve.server",
    "serve_in_thread": "gptkit.serve.server",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
