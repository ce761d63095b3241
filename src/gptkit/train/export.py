"""Export a training checkpoint as a Hugging Face directory (LoRA adapters merged into the weights)."""

from __future__ import annotations

from pathlib import Path

from gptkit.config import GPT4Config
from gptkit.modeling import GPT4LMHeadModel
from gptkit.train import checkpoint as ckpt
from gptkit.train.loop import load_tokenizer


def export_checkpoint(path: str | Path, out_dir: str | Path) -> Path:
    """Write ``out_dir`` (config.json + model.safetensors [+ tokenizer]) from a checkpoint or run directory."""
    path = Path(path)
    found = (
        ckpt.load_checkpoint(path) if (path / "model.safetensors").exists() else ckpt.latest_checkpoint(path)
    )
    model = checkpoint_model(found)
    model.save_pretrained(out_dir)
    tokenizer = load_tokenizer(found.config.get("tokenizer"))
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


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
