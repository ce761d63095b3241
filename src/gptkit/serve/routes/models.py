"""GET /health, /metrics, /v1/models and /v1/models/{id}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from gptkit.serve.routes.embeddings import embedding_info
from gptkit.serve.state import ServerState, State, check_model

router = APIRouter()


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: 200 while the server runs."""
    return {"status": "ok"}


@router.get("/metrics")
async def metrics(state: ServerState = State) -> Response:
    """Prometheus metrics in text format."""
    return Response(state.metrics.exposition(), media_type=state.metrics.content_type)


@router.get("/v1/models")
async def list_models(state: ServerState = State) -> dict[str, Any]:
    """The served model, then its LoRA adapters (each with the base model as ``parent``, as vLLM does)."""
    names = [state.model_name, *state.adapters]
    return {"object": "list", "data": [_model_card(state, name) for name in names]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, state: ServerState = State) -> dict[str, Any]:
    check_model(state, model_id)
    return _model_card(state, model_id)


def _model_card(state: ServerState, name: str) -> dict[str, Any]:
    """One model's card; an adapter's names its base model in ``parent``."""
    card = {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": "gptkit",
        "root": state.model_name,
        "parent": None if name == state.model_name else state.model_name,
        "max_model_len": state.max_seq_len,
        "embedding": embedding_info(state.model),
    }
    return card
