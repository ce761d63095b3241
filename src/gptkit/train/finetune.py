"""Fine-tuning: the training loop with an SFT batch source and, optionally, LoRA adapters."""

from __future__ import annotations

from typing import Any

import torch

from gptkit.loader import load
from gptkit.modeling import GPT4LMHeadModel
from gptkit.train.config import TrainConfig
from gptkit.train.loop import train
from gptkit.train.lora import apply_lora
from gptkit.train.progress import TrainResult


def finetune(config: TrainConfig | dict[str, Any]) -> TrainResult:
    """Fine-tune ``config.init_from`` on the JSONL file ``config.sft_data`` (LoRA when ``config.lora``)."""
    from gptkit.train.sft import SFTBatches, load_sft_examples, pad_id_for, split_examples

    config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    if not config.init_from or not config.sft_data:
        from gptkit.errors import ConfigError

        raise ConfigError("fine-tuning needs init_from (the model) and sft_data (a JSONL file)")
    model, tokenizer = load(config.init_from, dtype=torch.float32)
    torch.manual_seed(config.seed)  # LoRA's adapter init
    model = finetune_model(config, model)
    max_length = config.max_length or config.block_size or model.config.context_length
    examples = load_sft_examples(config.sft_data, tokenizer, max_length)
    train_examples, val_examples = split_examples(examples, config.sft_val_fraction, config.seed)
    source = SFTBatches(train_examples, config.batch_size, config.seed, pad_id_for(tokenizer), val_examples)
    return train(config, model=model, source=source, tokenizer=tokenizer)


def finetune_model(config: TrainConfig, model: GPT4LMHeadModel | None = None) -> GPT4LMHeadModel:
    """The pretrained model (``model``, or loaded from ``config.init_from`` in float32) in training mode,
    with LoRA adapters swapped in when ``config.lora`` (base weights frozen)."""
    if model is None:
        model = GPT4LMHeadModel.from_pretrained(config.init_from, dtype=torch.float32)
    model.train()
    if config.lora:
        add_lora(model, config)
    return model


def add_lora(model: GPT4LMHeadModel, config: TrainConfig | dict[str, Any]) -> GPT4LMHeadModel:
    """apply_lora with the run's rank, alpha, dropout and targets."""
    get = config.get if isinstance(config, dict) else lambda k: getattr(config, k)
    kwargs = dict(rank=get("lora_rank"), alpha=get("lora_alpha"), dropout=get("lora_dropout"))
    if get("lora_targets"):
        kwargs["targets"] = tuple(get("lora_targets"))
    return apply_lora(model, **kwargs)
