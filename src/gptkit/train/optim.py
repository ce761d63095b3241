"""AdamW with decoupled weight decay on matrices only, and the warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from gptkit.train.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay 2-D+ weight matrices; never norms, biases (1-D) or embedding tables."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for param in model.parameters():  # shared (tied) parameters are listed once
        if not param.requires_grad:
            continue
        (decay if param.dim() >= 2 and id(param) not in embedding_ids else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW, fused where the device supports it (CPU and CUDA in torch >= 2.4), else foreach."""
    groups = param_groups(model, config.weight_decay)
    kwargs = dict(lr=config.lr, betas=config.betas)
    try:
        return torch.optim.AdamW(groups, **kwargs, fused=True)
    except (RuntimeError, ValueError):  # e.g. DTensor parameters or an unsupported device
        return torch.optim.AdamW(groups, **kwargs, foreach=True)


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warmup to ``lr`` over warmup_iters, cosine decay to ``min_lr`` at lr_decay_iters, then flat."""
    if step < config.warmup_iters:
        return config.lr * (step + 1) / (config.warmup_iters + 1)
    if step >= config.decay_iters:
        return config.min_lr
    progress = (step - config.warmup_iters) / max(1, config.decay_iters - config.warmup_iters)
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - config.min_lr)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
