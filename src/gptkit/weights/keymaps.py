"""Declarative name/transform tables between Hugging Face checkpoints and gptkit parameters.

One :class:`KeyMap` per family lists, for each of our parameters (``{i}`` = layer index), the Hugging
Face tensor(s) it is made of and how: copied, transposed (GPT-2's Conv1D stores ``(in, out)``) or fused
along rows from several tensors (q/k/v -> ``qkv``, gate/up -> ``gate_up``), split again on save.
One engine (:func:`hf_to_ours`, :func:`ours_to_hf`) applies any table in either direction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch

from gptkit.config import GPT4Config
from gptkit.errors import WeightsError

LAYER_INDEX = re.compile(r"\.(\d+)\.")


@dataclass(frozen=True)
class Rule:
    """One of our parameters and the Hugging Face tensor(s) it is made of."""

    ours: str  # e.g. "blocks.{i}.attn.qkv.weight"
    hf: tuple[str, ...]  # one name, or several stacked along dim 0 in this order
    transpose: bool = False  # Hugging Face stores the transpose (GPT-2 Conv1D: (in, out))
    split: tuple[str, ...] = ()  # size names (see part_sizes) of the stacked parts
    experts: bool = False  # names hold {e}: one set of tensors per expert, stacked along a new dim 0

    def hf_names(self, layer: str | None, n_experts: int | None = None) -> list[str]:
        """The Hugging Face names for one layer (or for a non-layer parameter); per expert, in order."""
        names = [name.replace("{i}", layer) if layer is not None else name for name in self.hf]
        if not self.experts:
            return names
        return [name.replace("{e}", str(e)) for e in range(n_experts or 0) for name in names]

    def hf_shapes(self, ours_shape: tuple[int, ...], sizes: dict[str, int]) -> list[tuple[int, ...]]:
        """The Hugging Face shapes that make up a parameter of shape ``ours_shape``."""
        if self.experts:
            one = Rule(self.ours, self.hf, self.transpose, self.split)
            return one.hf_shapes(ours_shape[1:], sizes) * ours_shape[0]
        if self.split:
            return [(sizes[s], *ours_shape[1:]) for s in self.split]
        return [tuple(reversed(ours_shape)) if self.transpose else tuple(ours_shape)]

    def to_ours(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Combine the Hugging Face tensor(s) into our parameter."""
        if self.experts:
            one, k = Rule(self.ours, self.hf, self.transpose, self.split), len(self.hf)
            return torch.stack([one.to_ours(parts[e : e + k]) for e in range(0, len(parts), k)])
        if self.split:
            return torch.cat(parts, dim=0)
        return parts[0].t().contiguous() if self.transpose else parts[0]

    def to_hf(self, tensor: torch.Tensor, sizes: dict[str, int]) -> list[torch.Tensor]:
        """Our parameter as the Hugging Face tensor(s): contiguous, sharing no storage."""
        if self.experts:
            one = Rule(self.ours, self.hf, self.transpose, self.split)
            return [part for expert in tensor for part in one.to_hf(expert, sizes)]
        if self.split:
            return [part.clone() for part in tensor.split([sizes[s] for s in self.split], dim=0)]
        return [tensor.t().contiguous() if self.transpose else tensor.contiguous()]


@dataclass(frozen=True)
class KeyMap:
    """The complete name table of one Hugging Face family."""

    family: str
    rules: tuple[Rule, ...]
    base_prefix: str  # what base-model checkpoints (no LM head) leave off every name
    ignored: tuple[str, ...] = ()  # known non-parameter buffers that some checkpoints carry
    tied_duplicates: tuple[str, ...] = ("lm_head.weight",)  # redundant copies when embeddings are tied

    def rule_for(self, ours: str) -> tuple[Rule, str | None]:
        """The rule that makes our parameter ``ours``, and its layer index (None outside the blocks)."""
        template, layer = layer_template(ours)
        for rule in self.rules:
            if rule.ours == template:
                return rule, layer
        raise WeightsError(f"the {self.family} key map has no Hugging Face name for parameter {ours!r}")

    def is_ignored(self, hf_name: str) -> bool:
        """Whether ``hf_name`` is a known non-parameter buffer that loading may skip."""
        return layer_template(hf_name)[0] in self.ignored


def layer_template(name: str) -> tuple[str, str | None]:
    """'blocks.3.attn.qkv.weight' -> ('blocks.{i}.attn.qkv.weight', '3')."""
    match = LAYER_INDEX.search(name)
    if match is None:
        return name, None
    return name[: match.start()] + ".{i}." + name[match.end() :], match.group(1)


def _with_bias(ours: str, *hf: str, **options) -> tuple[Rule, ...]:
    """Rules for a linear/norm module's weight and bias (the bias is never transposed)."""
    weight = Rule(f"{ours}.weight", tuple(f"{h}.weight" for h in hf), **options)
    bias_options = {k: v for k, v in options.items() if k != "transpose"}
    bias = Rule(f"{ours}.bias", tuple(f"{h}.bias" for h in hf), **bias_options)
    return weight, bias


GPT2 = KeyMap(
    family="gpt2",
    base_prefix="transformer.",
    rules=(
        Rule("embed.weight", ("transformer.wte.weight",)),
        Rule("pos_embed.weight", ("transformer.wpe.weight",)),
        *_with_bias("blocks.{i}.attn_norm", "transformer.h.{i}.ln_1"),
        *_with_bias("blocks.{i}.attn.qkv", "transformer.h.{i}.attn.c_attn", transpose=True),
        *_with_bias("blocks.{i}.attn.proj", "transformer.h.{i}.attn.c_proj", transpose=True),
        *_with_bias("blocks.{i}.mlp_norm", "transformer.h.{i}.ln_2"),
        *_with_bias("blocks.{i}.mlp.up", "transformer.h.{i}.mlp.c_fc", transpose=True),
        *_with_bias("blocks.{i}.mlp.down", "transformer.h.{i}.mlp.c_proj", transpose=True),
        *_with_bias("norm", "transformer.ln_f"),
        Rule("lm_head.weight", ("lm_head.weight",)),
    ),
    ignored=("transformer.h.{i}.attn.bias", "transformer.h.{i}.attn.masked_bias"),  # causal-mask buffers
)

LLAMA_LAYER = "model.layers.{i}"
LLAMA = KeyMap(
    family="llama",
    base_prefix="model.",
    rules=(
        Rule("embed.weight", ("model.embed_tokens.weight",)),
        *_with_bias("blocks.{i}.attn_norm", f"{LLAMA_LAYER}.input_layernorm"),
        *_with_bias(
            "blocks.{i}.attn.qkv",
            *(f"{LLAMA_LAYER}.self_attn.{p}_proj" for p in "qkv"),
            split=("q_dim", "kv_dim", "kv_dim"),
        ),
        *_with_bias("blocks.{i}.attn.proj", f"{LLAMA_LAYER}.self_attn.o_proj"),
        *_with_bias("blocks.{i}.mlp_norm", f"{LLAMA_LAYER}.post_attention_layernorm"),
        *_with_bias(
            "blocks.{i}.mlp.gate_up",
            f"{LLAMA_LAYER}.mlp.gate_proj",
            f"{LLAMA_LAYER}.mlp.up_proj",
            split=("ffn_dim", "ffn_dim"),
        ),
        *_with_bias("blocks.{i}.mlp.down", f"{LLAMA_LAYER}.mlp.down_proj"),
        *_with_bias("norm", "model.norm"),
        Rule("lm_head.weight", ("lm_head.weight",)),
    ),
    ignored=("model.layers.{i}.self_attn.rotary_emb.inv_freq", "model.rotary_emb.inv_freq"),  # RoPE caches
)

KEYMAPS: dict[str, KeyMap] = {"gpt2": GPT2, "llama": LLAMA, "qwen2": LLAMA, "mistral": LLAMA}


def part_sizes(config: GPT4Config) -> dict[str, int]:
    """Row counts of fused parts: queries, keys/values and each half of gate_up."""
    return {
        "q_dim": config.n_head * config.dim_per_head,
        "kv_dim": config.kv_heads * config.dim_per_head,
        "ffn_dim": config.ffn_dim,
        "expert_dim": config.expert_ffn_dim,
    }


# ---- the engine -----------------------------------------------------------------------------------------
def hf_to_ours(
    keymap: KeyMap,
    config: GPT4Config,
    expected: Mapping[str, tuple[int, ...]],
    hf_shapes: Mapping[str, tuple[int, ...]],
    read: Callable[[str], torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Our state dict for the parameters ``expected`` (name -> shape), from a checkpoint's tensors.

    ``hf_shapes`` lists the checkpoint's tensors (name -> shape) and ``read`` fetches one by name. Every
    needed tensor must exist with the shape the config implies; every other tensor must be a known buffer.
    """
    names = canonical_names(keymap, hf_shapes)
    plan = {ours: keymap.rule_for(ours) for ours in expected}
    wanted = {ours: rule.hf_names(layer, config.n_experts) for ours, (rule, layer) in plan.items()}
    _check_complete(keymap, config, names, wanted)
    sizes = part_sizes(config)
    state = {}
    for ours, (rule, _) in plan.items():
        parts = wanted[ours]
        _check_shapes(parts, [hf_shapes[names[p]] for p in parts], rule.hf_shapes(expected[ours], sizes))
        state[ours] = rule.to_ours([read(names[p]) for p in parts])
    return state


def ours_to_hf(
    keymap: KeyMap, config: GPT4Config, state: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Our parameters (tied lm_head listed once, as ``named_parameters`` does) under Hugging Face names."""
    sizes = part_sizes(config)
    out = {}
    for ours, tensor in state.items():
        rule, layer = keymap.rule_for(ours)
        out.update(
            zip(rule.hf_names(layer, config.n_experts), rule.to_hf(tensor.detach(), sizes), strict=True)
        )
    return out


def canonical_names(keymap: KeyMap, hf_names: Iterable[str]) -> dict[str, str]:
    """Full Hugging Face name -> name in the file (base-model checkpoints leave off the prefix)."""
    head_names = {
        name for rule in keymap.rules for name in rule.hf if not name.startswith(keymap.base_prefix)
    }
    canonical: dict[str, str] = {}
    for name in hf_names:
        full = (
            name if name.startswith(keymap.base_prefix) or name in head_names else keymap.base_prefix + name
        )
        if full in canonical:
            raise WeightsError(
                f"checkpoint holds tensor {full!r} twice (as {canonical[full]!r} and {name!r})"
            )
        canonical[full] = name
    return canonical


def _check_complete(
    keymap: KeyMap, config: GPT4Config, names: Mapping[str, str], wanted: Mapping[str, list[str]]
) -> None:
    """Refuse a checkpoint that lacks a needed tensor or carries one the config does not use."""
    needed = {name for parts in wanted.values() for name in parts}
    missing = sorted(needed - set(names))
    if missing:
        raise WeightsError(f"checkpoint lacks {len(missing)} tensor(s) the config needs: {_listing(missing)}")
    redundant = set(keymap.tied_duplicates) if config.tie_word_embeddings else set()
    unknown = sorted(n for n in set(names) - needed - redundant if not keymap.is_ignored(n))
    if unknown:
        raise WeightsError(
            f"checkpoint has {len(unknown)} unexpected tensor(s) the config does not use: {_listing(unknown)} "
            "(does config.json match the weights?)"
        )


def _check_shapes(names: list[str], shapes: list[tuple[int, ...]], wanted: list[tuple[int, ...]]) -> None:
    """Refuse tensors whose shapes disagree with the config."""
    for name, shape, want in zip(names, shapes, wanted, strict=True):
        if tuple(shape) != tuple(want):
            raise WeightsError(
                f"tensor {name!r} has shape {tuple(shape)}, but the config implies {tuple(want)}"
            )


def _listing(names: list[str], limit: int = 6) -> str:
    """A short comma-separated list of names."""
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
