"""POST /v1/embeddings: OpenAI's embeddings (float or base64), from the served model's pooled hidden states.

The vectors are the final normed hidden states, mean-pooled over the input's tokens (``pooling: "last"``,
an extra field, takes the last token's), L2-normalised; ``dimensions`` keeps the first d values and
normalises again (gptkit.embeddings). Each batch of inputs runs on the engine's thread between decode
steps, so embeddings and generation share the model safely.
"""

from __future__ import annotations

import base64
import functools
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Strict

from gptkit.embeddings import (
    DEFAULT_POOLING,
    check_lengths,
    check_options,
    embed_token_ids,
    length_batches,
    token_inputs,
)
from gptkit.errors import GPTKitError
from gptkit.serve.errors import from_library_error, invalid
from gptkit.serve.state import ServerState, State, check_model

router = APIRouter()

Int = Annotated[int, Strict()]
MAX_INPUTS = 2048  # OpenAI's limit on inputs per request


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request (``pooling`` is ours)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    input: Annotated[str, Strict()] | list[Annotated[str, Strict()]] | list[Int] | list[list[Int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Int | None = None
    pooling: Literal["mean", "last"] | None = None
    user: str | None = None


@router.post("/v1/embeddings")
async def create_embeddings(body: EmbeddingRequest, state: ServerState = State) -> dict[str, Any]:
    """Embeddings of a string, strings, token ids or lists of them, with usage counts."""
    check_model(state, body.model)
    if isinstance(body.input, list) and len(body.input) > MAX_INPUTS:
        raise invalid("input", f"at most {MAX_INPUTS} inputs per request, got {len(body.input)}")
    pooling = body.pooling or DEFAULT_POOLING
    model = state.model
    try:
        check_options(model, pooling, body.dimensions)
        ids = token_inputs(state.tokenizer, body.input, model.config.vocab_size)
        check_lengths(ids, state.max_seq_len)
    except GPTKitError as error:
        raise from_library_error(error) from None
    embed = functools.partial(
        embed_token_ids,
        model,
        pooling=pooling,
        dimensions=body.dimensions,
        adapter=state.adapter_for(body.model),
        max_length=state.max_seq_len,
    )
    vectors: list[Any] = [None] * len(ids)
    for group in length_batches(ids):  # one engine-thread call per batch: decode steps go on in between
        batch = await state.driver.call(functools.partial(embed, [ids[i] for i in group]))
        for i, vector in zip(group, batch, strict=True):
            vectors[i] = vector
    data = [_item(i, vector, body.encoding_format) for i, vector in enumerate(vectors)]
    tokens = sum(len(row) for row in ids)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": body.model or state.model_name, "usage": usage,
            "pooling": pooling}  # fmt: skip


def _item(index: int, vector: Any, encoding_format: str) -> dict[str, Any]:
    """One embedding object: floats, or base64 of little-endian float32 as OpenAI sends them."""
    if encoding_format == "base64":
        raw = vector.numpy().astype("<f4").tobytes()
        return {"object": "embedding", "index": index, "embedding": base64.b64encode(raw).decode("ascii")}
    return {"object": "embedding", "index": index, "embedding": vector.tolist()}


def embedding_info(model: Any) -> dict[str, Any]:
    """What /v1/models says about the model's embeddings."""
    return {"pooling": DEFAULT_POOLING, "poolings": ["mean", "last"], "dimensions": model.config.n_embd,
            "normalized": True}  # fmt: skip
