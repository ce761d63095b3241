"""LoRA (Hu et al., 2021) as a module swap: y = x W^T + b + dropout(x) A^T B^T * (alpha / rank).

``apply_lora`` replaces the targeted ``nn.Linear`` layers of any model in place with ``LoRALinear`` and
freezes everything else; ``merge_lora`` folds the adapters back into plain ``nn.Linear`` weights so the
model saves and loads like any other. The frozen base weight and bias keep their parameter names
(``blocks.0.attn.qkv.weight``), so base checkpoints still load into a LoRA model; the adapters add
``...qkv.lora_A`` and ``...qkv.lora_B``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from gptkit.errors import ConfigError

DEFAULT_TARGETS = ("qkv", "proj", "gate_up", "down", "up")
ADAPTER_SUFFIXES = (".lora_A", ".lora_B")


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update B @ A, scaled by alpha / rank."""

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 16, dropout: float = 0.0) -> None:
        super().__init__()
        if rank < 1:
            raise ConfigError(f"LoRA rank must be a positive integer, got {rank}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        self.weight = base.weight.requires_grad_(False)  # (out, in), the same tensor as the base layer's
        self.bias = None if base.bias is None else base.bias.requires_grad_(False)
        factory = {"device": base.weight.device, "dtype": _adapter_dtype(base.weight.dtype)}
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **factory))  # (rank, in)
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, **factory))  # (out, rank)
        if not self.lora_A.is_meta:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own init, as in peft
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)  # (..., out)
        update = F.linear(F.linear(self.dropout(x).to(self.lora_A.dtype), self.lora_A), self.lora_B)
        return out + (update * self.scaling).to(out.dtype)  # (..., out)

    def delta_weight(self) -> torch.Tensor:
        """The update B @ A * scaling in the base weight's shape (out, in), computed in fp32."""
        return (self.lora_B.float() @ self.lora_A.float()) * self.scaling

    def merged(self) -> nn.Linear:
        """A plain nn.Linear whose weight is W + B @ A * scaling (bias shared with this layer)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        with torch.no_grad():
            self.weight.add_(self.delta_weight().to(self.weight.dtype))
        linear.weight, linear.bias = self.weight, self.bias
        return linear

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, alpha={self.alpha}"


def _adapter_dtype(base_dtype: torch.dtype) -> torch.dtype:
    """Adapters train in fp32 unless the base is already a wider float (fp64)."""
    return base_dtype if base_dtype == torch.float64 else torch.float32


def _is_target(name: str, targets: Iterable[str]) -> bool:
    """True when the module's dotted name ends with one of the targets ('qkv' or 'attn.qkv')."""
    return any(name == t or name.endswith("." + t) for t in targets)


def apply_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16,
    dropout: float = 0.0,
    targets: Iterable[str] = DEFAULT_TARGETS,
) -> nn.Module:
    """Swap every targeted nn.Linear for a LoRALinear in place and freeze all other parameters."""
    targets = tuple(targets)
    if any(hasattr(m, "qweight") for m in model.modules()):
        raise ConfigError(
            "LoRA trains float weights, and this model keeps a GGUF file's quantized blocks: "
            'load it with from_pretrained(..., dtype="float32")'
        )
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ConfigError("the model already has LoRA layers; merge_lora(model) first")
    chosen = [
        name for name, m in model.named_modules() if isinstance(m, nn.Linear) and _is_target(name, targets)
    ]
    if not chosen:
        raise ConfigError(f"no nn.Linear module name ends with any of the LoRA targets {targets}")
    _refuse_shared_weights(model, chosen)
    model.requires_grad_(False)
    for name in chosen:
        parent, child = _parent(model, name)
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha, dropout))
    return model


def _refuse_shared_weights(model: nn.Module, chosen: list[str]) -> None:
    """ConfigError for a target whose weight is tied elsewhere: merging would change the other use too."""
    owners: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        owners[id(p)] = owners.get(id(p), 0) + 1
    tied = [name for name in chosen if owners[id(model.get_submodule(name).weight)] > 1]
    if tied:
        raise ConfigError(f"LoRA cannot target {tied[0]!r}: its weight is tied to another module")


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and swap back to plain nn.Linear (parameters stay frozen)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent, child = _parent(model, name)
            setattr(parent, child, module.merged())
    return model


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module holding the submodule ``name`` and that submodule's attribute name."""
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable adapter matrices (A and B of every LoRALinear), in module order."""
    return [p for m in model.modules() if isinstance(m, LoRALinear) for p in (m.lora_A, m.lora_B)]


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Adapter weights only, keyed by their full names (``blocks.0.attn.qkv.lora_A``), for checkpoints."""
    return {name: t for name, t in model.state_dict().items() if name.endswith(ADAPTER_SUFFIXES)}


def load_lora_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load adapter weights saved by ``lora_state_dict`` into a model with the same LoRA layers."""
    expected = set(lora_state_dict(model))
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ConfigError(
            f"LoRA state does not match the model's adapters: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    model.load_state_dict(dict(state), strict=False)
