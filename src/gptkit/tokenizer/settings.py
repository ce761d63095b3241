"""The tokenizer facts that live beside the vocabulary: named special tokens, chat template, sides."""

from __future__ import annotations

from dataclasses import dataclass, field

SPECIAL_ROLES = ("bos_token", "eos_token", "unk_token", "pad_token")
DEFAULT_PADDING_SIDE = "left"  # gptkit pads for batched generation; pass padding_side="right" for training


@dataclass
class TokenizerSettings:
    """Named special tokens (role -> token text), chat template, padding/truncation sides, max length."""

    special: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(SPECIAL_ROLES))
    chat_template: str | None = None
    padding_side: str = DEFAULT_PADDING_SIDE
    truncation_side: str = "right"
    model_max_length: int | None = None
