"""`gptkit finetune` wires SFT batches and LoRA into the training loop; export merges the adapters."""

from __future__ import annotations

import json

import torch

from gptkit import GPT4LMHeadModel, preset
from gptkit.cli import main
from gptkit.tokenizer.trainer import train_char


def test_finetune_with_lora_exports_and_resumes(tmp_path):
    (tmp_path / "chars.txt").write_text("0123456789+=\n")
    tokenizer = train_char([tmp_path / "chars.txt"], tmp_path / "tok", special_tokens=["<|endoftext|>"])
    config = preset("gpt-nano", vocab_size=len(tokenizer), bias=True, eos_token_id=tokenizer.eos_token_id)
    base = GPT4LMHeadModel(config)
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    lines = [json.dumps({"prompt": f"{i}+1=", "completion": f"{i + 1}"}) for i in range(40)]
    (tmp_path / "sft.jsonl").write_text("\n".join(lines) + "\n")
    args = ["finetune", str(tmp_path / "base"), str(tmp_path / "sft.jsonl"), "--lora", "--lora-rank", "4",
            "--batch_size=4", "--lr=1e-2", f"--out_dir={tmp_path / 'out'}", "--eval_interval=10",
            "--checkpoint_interval=10", "--progress=false", "--tensorboard=false", "--dtype=float32"]  # fmt: skip
    assert main([*args, "--max_iters=10", "--export", str(tmp_path / "hf")]) == 0
    tuned = GPT4LMHeadModel.from_pretrained(tmp_path / "hf")
    assert (tmp_path / "hf" / "tokenizer.json").is_file()
    ids = torch.tensor([tokenizer.encode("3+1=")])
    assert not torch.allclose(tuned(ids).logits, base.eval()(ids).logits)  # adapters merged into weights
    assert main([*args, "--max_iters=20", "--resume"]) == 0
    assert (tmp_path / "out" / "ckpt-000020" / "COMPLETE").is_file()
