"""Prefix cache: keys and values of earlier requests, kept in a pool of fixed-size token blocks for reuse.

When a request has been prefilled, and again when it ends, the engine copies the KV entries of every *full*
block of its tokens from its slot row into the pool (:meth:`PrefixCache.store`). A new request looks up the
longest chain of full blocks that exactly equals the start of its prompt (:meth:`PrefixCache.lookup`), gets
them copied into columns [0, n) of its slot row (:meth:`PrefixCache.load`) and prefills only the rest.
A prefix always starts at position 0, so the reused keys sit at the same absolute (rotary) positions as if
they had been computed for this request.

Why copies and blocks of 16 tokens: the engine's slots are rows of one static cache (see ``engine.py``),
so copying a block in or out is one batched tensor copy per layer, and pool blocks need no reference
counts (a running request never points into the pool). A copy costs far less than the prefill it saves
(a few MB of memory traffic versus a forward pass over the same tokens). Sixteen tokens (vLLM's default)
keep the unreusable tail of a prefix short (at most 15 tokens are recomputed) while the block tree stays
small. A partial block is never stored, so nothing is ever reused past what was computed for exactly
the same tokens.

The blocks form a tree per *namespace* (model identity, dtype, quantization and, once adapters exist,
the adapter): a block's children are keyed by their exact token tuple, so a match is exact token equality
all the way from position 0, never a hash that could collide, and two models never share an entry.
Eviction is LRU over leaf blocks under a memory budget: every lookup or store touches its chain leaf
first, so a parent is always more recently used than its children and the oldest block is a leaf.
The pool is allocated once, ``budget // block bytes`` blocks, so its memory never exceeds the budget
(on a CPU, pages are only touched as blocks are first written).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from gptkit.checks import is_number
from gptkit.errors import ConfigError
from gptkit.model.cache import KVCache

BLOCK_SIZE = 16  # tokens per block: see the module docstring
# 512 MiB: ~11,600 tokens of the bundled model's fp32 KV (45 KiB a token), i.e. several long chats or
# few-shot prompts, a third of its default slot cache (16 x 2048 tokens); on a CPU it costs RAM only as used
DEFAULT_PREFIX_CACHE_MB = 512.0
MIB = 2**20


def model_namespace(model: torch.nn.Module, adapter: str | None = None) -> tuple:
    """What KV entries are only valid for: this model object, its dtype, its quantization, an adapter."""
    return (id(model), str(getattr(model, "dtype", None)), getattr(model, "quantization", None), adapter)


@dataclass(frozen=True)
class PrefixCacheStats:
    """Counters since the engine started (tokens) and the pool's memory now (bytes)."""

    lookups: int  # requests that looked for a cached prefix
    hits: int  # of which reused at least one block
    prompt_tokens: int  # prompt tokens of those lookups
    cached_tokens: int  # prompt tokens taken from the cache instead of prefilled
    stored_tokens: int  # tokens copied into the pool
    evicted_tokens: int  # tokens dropped from the pool to make room
    memory_bytes: int  # bytes of the blocks held now
    capacity_bytes: int  # bytes of the whole pool (at most the budget)

    @property
    def token_hit_rate(self) -> float:
        """Fraction of looked-up prompt tokens that were reused."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


class _Block:
    """One pool block: ``tokens`` after its parent's, its pool index, its children by their tokens."""

    __slots__ = ("children", "index", "parent", "tokens")

    def __init__(self, parent: _Block | None, tokens: tuple[int, ...], index: int) -> None:
        self.parent, self.tokens, self.index = parent, tokens, index
        self.children: dict[tuple[int, ...], _Block] = {}


class PrefixCache:
    """A pool of ``BLOCK_SIZE``-token KV blocks shaped like ``cache``'s rows, within ``budget_mb`` MiB."""

    def __init__(self, cache: KVCache, budget_mb: float, block_size: int = BLOCK_SIZE) -> None:
        per_token = sum(t.shape[1] * t.shape[3] * t.element_size() for t in (*cache.k, *cache.v))
        self.block_size = block_size
        self.block_bytes = per_token * block_size
        capacity = check_budget(budget_mb, self.block_bytes)
        _, heads, _, head_dim = cache.k[0].shape
        shape = (capacity, heads, block_size, head_dim)  # (blocks, n_kv_head, block_size, head_dim)
        layer = cache.k[0]
        self.k = [torch.empty(shape, dtype=layer.dtype, device=layer.device) for _ in cache.k]
        self.v = [torch.empty(shape, dtype=layer.dtype, device=layer.device) for _ in cache.v]
        self.free = list(range(capacity - 1, -1, -1))  # pool indices; pop() takes the lowest
        self.lru: OrderedDict[_Block, None] = OrderedDict()  # least recently used first
        self.roots: dict[tuple, _Block] = {}  # namespace -> a storage-less root
        self._counts = dict.fromkeys(("lookups", "hits", "prompt_tokens", "cached", "stored", "evicted"), 0)

    @property
    def capacity(self) -> int:
        """Blocks the pool holds at most."""
        return self.k[0].shape[0]

    def stats(self) -> PrefixCacheStats:
        c, size = self._counts, self.block_size
        return PrefixCacheStats(
            c["lookups"], c["hits"], c["prompt_tokens"], size * c["cached"], size * c["stored"],
            size * c["evicted"], len(self.lru) * self.block_bytes, self.capacity * self.block_bytes,
        )  # fmt: skip

    # ---- reuse -------------------------------------------------------------------------------------
    def lookup(self, namespace: tuple, tokens: list[int], limit: int) -> list[_Block]:
        """The longest chain of cached full blocks equal to ``tokens[:limit]``'s start (counted in stats)."""
        chain = self._walk(namespace, tokens[: limit - limit % self.block_size])
        self._touch(chain)
        self._counts["lookups"] += 1
        self._counts["hits"] += bool(chain)
        self._counts["prompt_tokens"] += len(tokens)
        self._counts["cached"] += len(chain)
        return chain

    def load(self, chain: list[_Block], cache: KVCache, row: int) -> int:
        """Copy ``chain``'s blocks into columns [0, n) of the empty cache ``row``; returns n."""
        if not chain:
            return 0
        length = len(chain) * self.block_size
        where = self._places(chain)
        for pool, rows in ((self.k, cache.k), (self.v, cache.v)):
            for pool_layer, layer in zip(pool, rows, strict=True):
                target = layer[row, :, :length].unflatten(1, (len(chain), self.block_size))
                target.copy_(pool_layer[where].transpose(0, 1))  # (n_kv_head, n_blocks, block_size, head_dim)
        cache.adopt_prefix(row, length)
        return length

    # ---- storing -----------------------------------------------------------------------------------
    def store(self, namespace: tuple, tokens: list[int], cache: KVCache, row: int) -> None:
        """Keep the full blocks of ``tokens``, whose keys and values are columns [0, len) of cache ``row``."""
        chain = self._walk(namespace, tokens)
        self._touch(chain)
        new: list[_Block] = []
        parent = chain[-1] if chain else self.roots[namespace]
        for start in range(len(chain) * self.block_size, len(tokens) - self.block_size + 1, self.block_size):
            index = self._allocate(keep=parent)
            if index is None:
                break
            block_tokens = tuple(tokens[start : start + self.block_size])
            parent.children[block_tokens] = parent = _Block(parent, block_tokens, index)
            new.append(parent)
        self._copy_in(new, len(chain), cache, row)
        self._touch(chain + new)
        self._counts["stored"] += len(new)

    def _copy_in(self, blocks: list[_Block], depth: int, cache: KVCache, row: int) -> None:
        """Copy the row's columns of ``blocks`` (consecutive blocks of one chain, the first ``depth``
        blocks deep) into their pool places."""
        if not blocks:
            return
        first = depth * self.block_size
        columns = slice(first, first + len(blocks) * self.block_size)
        where = self._places(blocks)
        for pool, rows in ((self.k, cache.k), (self.v, cache.v)):
            for pool_layer, layer in zip(pool, rows, strict=True):
                source = layer[row, :, columns]  # (n_kv_head, n_blocks * block_size, head_dim)
                pool_layer[where] = source.unflatten(1, (len(blocks), self.block_size)).transpose(0, 1)

    def _places(self, blocks: list[_Block]) -> slice | torch.Tensor:
        """The blocks' pool indices: a slice when consecutive (the usual case: a view, no gather), else a
        tensor of indices."""
        first = blocks[0].index
        if all(block.index == first + i for i, block in enumerate(blocks)):
            return slice(first, first + len(blocks))
        return torch.tensor([block.index for block in blocks], device=self.k[0].device)

    def _allocate(self, keep: _Block) -> int | None:
        """A free pool index, evicting the least recently used leaf when full; None when nothing can go:
        the oldest block is ``keep`` (the parent of the next block) or a parent, so only the chain being
        stored is left (it was touched last)."""
        if self.free:
            return self.free.pop()
        oldest = next(iter(self.lru), None)
        if oldest is None or oldest is keep or oldest.children:
            return None
        del self.lru[oldest]
        del oldest.parent.children[oldest.tokens]
        self._counts["evicted"] += 1
        return oldest.index

    # ---- the tree ----------------------------------------------------------------------------------
    def _walk(self, namespace: tuple, tokens: list[int]) -> list[_Block]:
        """The cached blocks that spell the full blocks of ``tokens`` from position 0, as far as they go."""
        node = self.roots.setdefault(namespace, _Block(None, (), -1))
        chain = []
        for start in range(0, len(tokens) - self.block_size + 1, self.block_size):
            node = node.children.get(tuple(tokens[start : start + self.block_size]))
            if node is None:
                break
            chain.append(node)
        return chain

    def _touch(self, chain: list[_Block]) -> None:
        """Mark a chain used, leaf first: a parent is then always more recent than its children."""
        for block in reversed(chain):
            self.lru[block] = None
            self.lru.move_to_end(block)


def check_budget(budget_mb: Any, block_bytes: int) -> int:
    """Blocks of ``block_bytes`` that ``budget_mb`` MiB hold; ConfigError for a bad or too small budget."""
    if not is_number(budget_mb) or not 0 < budget_mb < float("inf"):
        raise ConfigError(
            f"prefix_cache_mb must be a positive number of MiB (0 turns it off), got {budget_mb!r}",
            param="prefix_cache_mb",
        )
    capacity = int(budget_mb * MIB) // block_bytes
    if capacity < 1:
        raise ConfigError(
            f"prefix_cache_mb={budget_mb:g} MiB is smaller than one cache block of {block_bytes} bytes "
            f"({block_bytes / MIB:.3f} MiB): give at least that, or 0 to turn the prefix cache off",
            param="prefix_cache_mb",
        )
    return capacity
