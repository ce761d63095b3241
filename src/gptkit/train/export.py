"""Export a training checkpoint as a Hugging Face directory (LoRA adapters merged into the weights), or a
LoRA run's adapter alone in PEFT's layout (``export_adapter``: served with ``gptkit serve --lora``)."""

from __future__ import annotations

from pathlib import Path

from gptkit.config import GPT4Config
from gptkit.modeling import GPT4LMHeadModel
from gptkit.train import checkpoint as ckpt
from gptkit.train.loop import load_tokenizer


def export_checkpoint(path: str | Path, out_dir: str | Path) -> Path:
    """Write ``out_dir`` (config.json + model.safetensors [+ tokenizer]) from a checkpoint or run directory."""
    found = _find_checkpoint(path)
    model = checkpoint_model(found)
    model.save_pretrained(out_dir)
    tokenizer = load_tokenizer(found.config.get("tokenizer"))
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


def export_adapter(path: str | Path, out_dir: str | Path) -> Path:
    """Write a LoRA run's adapter (``adapter_config.json`` + ``adapter_model.safetensors``, PEFT's names)
    from a checkpoint or run directory; the base weights are not written."""
    from gptkit.train.lora import ADAPTER_SUFFIXES
    from gptkit.weights.adapters import save_adapter

    found = _find_checkpoint(path)
    train = found.config["train"]
    if not train.get("lora"):
        raise ckpt.CheckpointError(f"{path} is not from a LoRA run: export it without --adapter")
    config = GPT4Config.from_dict(found.config["model"])
    state = {name: t for name, t in found.model.items() if name.endswith(ADAPTER_SUFFIXES)}
    rank, alpha, base = train["lora_rank"], train["lora_alpha"], train.get("init_from")
    return save_adapter(out_dir, config, state, rank=rank, alpha=alpha, base_model=base)


def _find_checkpoint(path: str | Path) -> ckpt.Checkpoint:
    """The checkpoint at ``path``, or a run directory's newest one."""
    path = Path(path)
    if (path / "model.safetensors").exists():
        return ckpt.load_checkpoint(path)
    return ckpt.latest_checkpoint(path)


def checkpoint_model(found: ckpt.Checkpoint) -> GPT4LMHeadModel:
    """The checkpoint's model as a plain GPT4LMHeadModel (LoRA adapters merged)."""
    config = GPT4Config.from_dict(found.config["model"])
    train = found.config["train"]
    if not train.get("lora"):
        return GPT4LMHeadModel.from_state_dict(config, found.model)
    from gptkit.train.finetune import add_lora
    from gptkit.train.lora import merge_lora

    model = add_lora(GPT4LMHeadModel(config), train)
    missing, unexpected = model.load_state_dict(found.model, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ckpt.CheckpointError(
            f"checkpoint does not match its LoRA model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return merge_lora(model).eval()
