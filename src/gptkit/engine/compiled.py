"""The engine's decode forward, optionally through torch.compile, with an eager fallback.

Each step prepares its attention inputs eagerly (cache columns, mask, rotary angles: data-dependent
Python), then runs ``model.transformer`` on them. With ``compile=True`` that call is a torch.compile'd
graph with a dynamic number of rows and cache columns, so it compiles twice (one row; several rows) and
never again; inductor fuses the norms, rotary, residual adds and SwiGLU, and updates the per-layer KV cache in
place. A model or machine inductor cannot handle (no C++ compiler, an unsupported op) logs one warning
and the engine goes on eagerly with the same results.
"""

from __future__ import annotations

import functools
import logging
import types
import weakref
from collections.abc import Callable

import torch

from gptkit.compiling import CompiledOrEager
from gptkit.model.attention import AttentionInputs
from gptkit.model.cache import KVCache

logger = logging.getLogger(__name__)


class DecodeStep:
    """``step(tokens, token_mask, cache)`` -> last-position logits (B, V): one new token per cache row."""

    def __init__(self, model: torch.nn.Module, compile: bool = False) -> None:
        self.model = model
        compiled = functools.partial(compiled_transformer(model), model) if compile else None
        self.transformer = CompiledOrEager(compiled, model.transformer, "the decode step", logger.warning)

    @property
    def is_compiled(self) -> bool:
        """Whether steps run through the compiled graph (False after a fallback)."""
        return self.transformer.is_compiled

    def __call__(self, tokens: torch.Tensor, token_mask: torch.Tensor, cache: KVCache) -> torch.Tensor:
        inputs, positions = self.model.cached_inputs(token_mask, cache)
        if self.transformer.is_compiled:
            _mark_dynamic(tokens, positions, inputs)
        return self.transformer(tokens, positions, inputs, 1)[:, -1]


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its compiled transformer


def compiled_transformer(model: torch.nn.Module) -> Callable:
    """``model``'s own compiled copy of ``transformer(model, ...)``, shared by every engine on the model.

    Guards on module attributes are skipped (they cost ~0.6 ms a step): safe only because each model gets
    a private copy of the function, whose compiled graphs no other model can hit, and an engine never
    changes its model's structure. (Dynamo keeps graphs per code object: with a shared one, a second model
    would silently run the first one's graph.)
    """
    if model not in _COMPILED:
        method = type(model).transformer
        code = method.__code__.replace()  # a distinct code object: a graph cache of its own
        private = types.FunctionType(code, method.__globals__, method.__name__, method.__defaults__)
        options = {"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe}
        _COMPILED[model] = torch.compile(private, fullgraph=True, options=options)
    return _COMPILED[model]


def _mark_dynamic(tokens: torch.Tensor, positions: torch.Tensor, inputs: AttentionInputs) -> None:
    """Compile for any number of rows and cache columns, keeping heads and widths static (size-1 rows
    still get their own graph: torch specializes sizes 0 and 1)."""
    rows = [
        tokens,
        positions,
        inputs.mask,
        inputs.cache_index,
        *inputs.rotary,
        *inputs.cache.k,
        *inputs.cache.v,
    ]
    for tensor in rows:
        torch._dynamo.maybe_mark_dynamic(tensor, 0)
    torch._dynamo.maybe_mark_dynamic(inputs.mask, 3)  # (B, 1, 1, used columns)
