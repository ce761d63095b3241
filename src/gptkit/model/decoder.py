"""The decoder-only Transformer: embeddings + positions -> N x (attention, MLP) blocks -> norm -> LM head."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gptkit.config import GPT4Config, Positions
from gptkit.errors import ContextLengthError, WeightsError
from gptkit.model.attention import AttentionInputs, CausalSelfAttention
from gptkit.model.cache import KVCache
from gptkit.model.fused import fused_decode
from gptkit.model.layers import make_norm, sinusoidal_table
from gptkit.model.moe import MoEMLP, make_mlp
from gptkit.model.rope import RotaryEmbedding

IGNORE_INDEX = -100


@dataclass
class CausalLMOutput:
    """Logits (B, T, V) and, when labels were given, the mean next-token cross-entropy."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None


class Block(nn.Module):
    """Residual block: x + post(attn(pre(x))), then x + post(mlp(pre(x))).

    pre-norms only is the usual pre-norm block; Gemma 2/3 have both (sandwich), OLMo 2 post-norms only.
    """

    def __init__(self, config: GPT4Config, layer: int) -> None:
        super().__init__()
        optional_norm = make_norm if config.pre_norms else lambda _: nn.Identity()
        self.attn_norm = optional_norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.mlp_norm = optional_norm(config)
        self.mlp = make_mlp(config, layer)
        if config.post_norms:
            self.attn_post_norm, self.mlp_post_norm = make_norm(config), make_norm(config)
        else:
            self.attn_post_norm = self.mlp_post_norm = nn.Identity()
        self.drop = nn.Dropout(config.dropout)
        self.fusable = config.is_plain  # the native decode block computes the plain pre-norm block only

    def forward(self, x: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        if self.fusable:
            fused = fused_decode(self, x, inputs)  # one native op for a decode token on quantized weights
            if fused is not None:
                return fused
        x = x + self.drop(self.attn_post_norm(self.attn(self.attn_norm(x), inputs)))
        return x + self.drop(self.mlp_post_norm(self.mlp(self.mlp_norm(x))))


class DecoderLM(nn.Module):
    """A decoder-only Transformer with a language-modelling head, configured by GPT4Config.

    The pure network: no files, no generation (gptkit.modeling.GPT4LMHeadModel adds the Hugging Face-style
    ``from_pretrained``, ``save_pretrained`` and ``generate`` on top).
    """

    def __init__(self, config: GPT4Config) -> None:
        super().__init__()
        self.config = config
        self.embed = _embedding(config.vocab_size, config.n_embd)
        if config.positions is Positions.LEARNED:
            self.pos_embed = _embedding(config.context_length, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.norm = make_norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed.weight
        self._init_buffers()
        if not any(p.is_meta for p in self.parameters()):
            self.apply(self._init_weights)

    # ---- construction ------------------------------------------------------------------------------
    def _init_buffers(self) -> None:
        """(Re)create the non-persistent buffers: rotary frequencies or the sinusoidal table."""
        device = self.embed.weight.device if not self.embed.weight.is_meta else None
        if self.config.positions is Positions.ROPE:
            self.rotary = RotaryEmbedding(self.config).to(device)
            if self.config.rope_local_theta is not None:  # sliding layers: their own base, unscaled
                self.sliding_rotary = RotaryEmbedding(self.config, self.config.rope_local_theta, {}).to(
                    device
                )
        if self.config.positions is Positions.SINUSOIDAL:
            table = sinusoidal_table(self.config.context_length, self.config.n_embd).to(device)
            self.register_buffer("sinusoidal", table, persistent=False)

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2 initialisation: N(0, 0.02), residual output projections scaled by 1/sqrt(2 * n_layer)."""
        std = 0.02
        if isinstance(module, nn.Linear):
            outputs = [b.attn.proj for b in self.blocks] + [getattr(b.mlp, "down", None) for b in self.blocks]
            is_residual_out = any(module is out for out in outputs)
            scale = 1 / math.sqrt(2 * self.config.n_layer) if is_residual_out else 1.0
            nn.init.normal_(module.weight, mean=0.0, std=std * scale)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, MoEMLP):
            for weight in (module.router.weight, module.gate_up_exps.weight):
                nn.init.normal_(weight, mean=0.0, std=std)
            nn.init.normal_(module.down_exps.weight, mean=0.0, std=std / math.sqrt(2 * self.config.n_layer))

    @classmethod
    def from_state_dict(
        cls, config: GPT4Config, state: dict[str, torch.Tensor], *, dtype: torch.dtype | None = None
    ) -> DecoderLM:
        """Build a model whose parameters are exactly ``state`` (our names), checking names and shapes."""
        with torch.device("meta"):
            model = cls(config)
        _check_state(_shapes(model), state)
        if dtype is not None:
            state = {k: v.to(dtype) for k, v in state.items()}
        model.load_state_dict(state, strict=False, assign=True)
        if config.tie_word_embeddings:
            model.lm_head.weight = model.embed.weight
        model._init_buffers()
        return model.eval()

    # ---- forward -----------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        targets: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        logits_to_keep: int = 0,
    ) -> CausalLMOutput:
        """Logits for token ids (B, T); with ``cache`` the tokens extend the cached sequences.

        ``labels`` follow transformers (shifted inside: position t predicts labels[:, t+1]); ``targets``
        follow nanoGPT (already aligned: position t predicts targets[:, t]), so a window of T inputs trains
        T predictions. -100 is ignored in both. ``attention_mask`` (B, T) marks real tokens (0 = padding); position ids then count real tokens
        only, so a left-padded row computes exactly what it would alone. ``logits_to_keep=n`` returns
        logits for the last n positions only (generation needs just the last).
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq_len), got shape {tuple(input_ids.shape)}")
        token_mask = (
            torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        )
        if cache is None:
            inputs, positions = self._uncached_inputs(token_mask, attention_mask is not None, position_ids)
        else:
            inputs, positions = self.cached_inputs(token_mask, cache, position_ids)
        logits = self.transformer(input_ids, positions, inputs, logits_to_keep)  # (B, T, vocab)
        loss = None
        if labels is not None:
            loss = next_token_loss(logits, labels)
        elif targets is not None:
            loss = aligned_token_loss(logits, targets)
        return CausalLMOutput(logits=logits, loss=loss)

    def transformer(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        inputs: AttentionInputs,
        logits_to_keep: int = 0,
    ) -> torch.Tensor:
        """The network proper on prepared attention inputs: embed -> blocks -> norm -> head, logits (B, T, V).

        No data-dependent Python control flow happens here, so a fixed-shape step can be torch.compile'd
        (gptkit.engine.compiled); masks, cache columns and checks are made by the caller.
        """
        x = self.trunk(input_ids, positions, inputs)  # (B, T, n_embd)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        logits = self.lm_head(x)  # (B, T or logits_to_keep, vocab)
        cap = self.config.final_softcap
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def trunk(
        self, input_ids: torch.Tensor, positions: torch.Tensor, inputs: AttentionInputs
    ) -> torch.Tensor:
        """embed -> blocks -> final norm on prepared attention inputs: hidden states (B, T, n_embd)."""
        x = self._embed(input_ids, positions)  # (B, T, n_embd)
        for block in self.blocks:
            x = block(x, inputs)
        return self.norm(x)

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The final normed hidden states (B, T, n_embd) of token ids (B, T), no LM head and no cache;
        ``attention_mask`` (B, T) marks real tokens (0 = padding, whose rows are left undefined)."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq_len), got shape {tuple(input_ids.shape)}")
        padded = attention_mask is not None
        token_mask = attention_mask.bool() if padded else torch.ones_like(input_ids, dtype=torch.bool)
        inputs, positions = self._uncached_inputs(token_mask, padded, None)
        return self.trunk(input_ids, positions, inputs)

    def _embed(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Token embeddings plus absolute position information (learned or sinusoidal), if any."""
        x = self.embed(input_ids)  # (B, T, n_embd)
        if self.config.embed_scale is not None:  # in the activations' dtype, as Gemma rounds it
            x = x * torch.tensor(self.config.embed_scale, dtype=x.dtype)
        if self.config.positions is Positions.LEARNED:
            x = x + self.pos_embed(positions)
        elif self.config.positions is Positions.SINUSOIDAL:
            x = x + self.sinusoidal[positions].to(x.dtype)
        return self.drop(x)

    def _rotary(self, positions: torch.Tensor):
        return self.rotary.cos_sin(positions) if self.config.positions is Positions.ROPE else None

    def _sliding_rotary(self, positions: torch.Tensor):
        return self.sliding_rotary.cos_sin(positions) if hasattr(self, "sliding_rotary") else None

    def _windows(self) -> tuple[int | None, int | None]:
        """(window of the mask, window of the sliding mask or None when one mask serves every layer)."""
        if "_mask_windows" not in self.__dict__:
            windows = {self.config.layer_window(i) for i in range(self.config.n_layer)}
            single = len(windows) == 1
            self._mask_windows = (windows.pop(), None) if single else (None, self.config.sliding_window)
        return self._mask_windows

    def _check_positions(self, positions: torch.Tensor) -> None:
        longest = int(positions.max()) + 1 if positions.numel() else 0
        if longest > self.config.context_length:
            raise ContextLengthError(
                f"sequence of {longest} positions exceeds the model's context window of "
                f"{self.config.context_length} tokens"
            )

    def _uncached_inputs(self, token_mask: torch.Tensor, padded: bool, position_ids: torch.Tensor | None):
        """Causal (+ padding, + sliding-window) attention over the T tokens themselves."""
        B, T = token_mask.shape
        if position_ids is None:
            steps = torch.arange(T, device=token_mask.device).expand(B, T)
            position_ids = (token_mask.long().cumsum(-1) - 1).clamp(min=0) if padded else steps
        self._check_positions(position_ids)
        needs_mask = padded and not bool(token_mask.all())
        full_window, sliding_window = self._windows()
        masks = []
        for window, used in ((full_window, True), (sliding_window, sliding_window is not None)):
            wanted = used and (needs_mask or (window is not None and T > window))
            masks.append(_causal_mask(token_mask, position_ids, window) if wanted else None)
        inputs = AttentionInputs(
            mask=masks[0],
            rotary=self._rotary(position_ids),
            sliding_mask=masks[1],
            sliding_rotary=self._sliding_rotary(position_ids),
        )
        return inputs, position_ids

    def cached_inputs(
        self, token_mask: torch.Tensor, cache: KVCache, position_ids: torch.Tensor | None = None
    ) -> tuple[AttentionInputs, torch.Tensor]:
        """Reserve cache columns for new tokens (B, T mask of real ones): their attention inputs over
        everything the cache holds for their row, and their position ids (B, T)."""
        columns, positions = cache.allocate(token_mask)
        if position_ids is not None:
            positions = position_ids
        self._check_positions(positions)
        used = int(cache.next_column.max())
        window, sliding_window = self._windows()
        mask = cache.attention_mask(columns, positions, used, window)
        sliding_mask = None
        if sliding_window is not None:
            sliding_mask = cache.attention_mask(columns, positions, used, sliding_window)
        inputs = AttentionInputs(
            mask,
            self._rotary(positions),
            cache=cache,
            cache_index=cache.flat_index(columns),
            columns=columns,
            sliding_mask=sliding_mask,
            sliding_rotary=self._sliding_rotary(positions),
        )
        return inputs, positions

    # ---- conveniences ------------------------------------------------------------------------------
    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """A preallocated KV cache for ``batch_size`` rows of up to ``max_len`` tokens."""
        p = self.norm.weight
        max_len = max_len or self.config.context_length
        return KVCache(self.config, batch_size, max_len, dtype=p.dtype, device=p.device)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return self.norm.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the floating-point tensors (activations, cache); quantized layers keep theirs."""
        return self.norm.weight.dtype


def parameter_shapes(config: GPT4Config) -> dict[str, tuple[int, ...]]:
    """Our parameter names and shapes for ``config`` (a meta-device model: no memory, no init);
    a tied lm_head is listed once, as embed.weight."""
    with torch.device("meta"):
        return _shapes(DecoderLM(config))


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def _embedding(n: int, dim: int) -> nn.Embedding:
    """An uninitialised embedding table (``_init_weights`` or loaded weights fill it; skipping
    nn.Embedding's own init also avoids a slow torch._dynamo import on the meta device)."""
    return nn.Embedding(n, dim, _weight=torch.empty(n, dim))


def _causal_mask(token_mask: torch.Tensor, positions: torch.Tensor, window: int | None) -> torch.Tensor:
    """(B, 1, T, T) booleans: query t sees real key s <= t (within the window); every query sees itself."""
    T = token_mask.shape[1]
    steps = torch.arange(T, device=token_mask.device)
    visible = (steps[None, :] <= steps[:, None]) & token_mask[:, None, :]  # (B, T, T)
    if window is not None:
        visible &= (positions[:, :, None] - positions[:, None, :]) < window
    visible |= torch.eye(T, dtype=torch.bool, device=token_mask.device)
    return visible[:, None]


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting labels[:, t+1] from position t (labels of -100 are ignored)."""
    return aligned_token_loss(logits[:, :-1], labels[:, 1:])


def aligned_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting targets[:, t] from position t (targets of -100 are ignored)."""
    flat = logits.reshape(-1, logits.shape[-1]).float()  # (B*T, V)
    return F.cross_entropy(flat, targets.reshape(-1).to(logits.device), ignore_index=IGNORE_INDEX)


def _check_state(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor]) -> None:
    """Refuse weights whose names or shapes disagree with the config."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"weights do not match the config: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for name, shape in expected.items():
        if tuple(state[name].shape) != tuple(shape):
            raise WeightsError(
                f"tensor {name!r} has shape {tuple(state[name].shape)}, the config implies {tuple(shape)}"
            )
