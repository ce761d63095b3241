"""`gptkit finetune` wires SFT batches and LoRA into the training loop; export merges the adapters."""

from __future__ import annotations

import json

import torch

from gptkit import GPT4LMHeadModel, preset
from gptkit.cli import main
from gptkit.data.tokenizer_training import train_char
from gptkit.train.sft import tokenize_pair


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
    tuned = GPT4LMHeadModel.from_pretrained(tmp_path / "hf", dtype="float32")
    assert (tmp_path / "hf" / "tokenizer.json").is_file()
    ids = torch.tensor([tokenizer.encode("3+1=")])
    assert not torch.allclose(tuned(ids).logits, base.eval()(ids).logits)  # adapters merged into weights
    assert main([*args, "--max_iters=20", "--resume"]) == 0
    assert (tmp_path / "out" / "ckpt-000020" / "COMPLETE").is_file()


def test_finetune_counts_real_tokens_and_writes_to_a_printed_default_dir(tmp_path, monkeypatch, capsys):
    """Tokens and MFU count the examples' real tokens (not batch x context); out/finetune-NAME by default."""
    (tmp_path / "chars.txt").write_text("0123456789+=\n")
    tokenizer = train_char([tmp_path / "chars.txt"], tmp_path / "tok", special_tokens=["<|endoftext|>"])
    config = preset("gpt-nano", vocab_size=len(tokenizer), bias=True, eos_token_id=tokenizer.eos_token_id)
    GPT4LMHeadModel(config).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    pairs = [(f"{i}+1=", f"{i + 1}") for i in range(1, 7)]  # 6 short examples of one length; context 64
    (tmp_path / "sft.jsonl").write_text(
        "".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs)
    )
    seen = []
    real_forward = GPT4LMHeadModel.forward
    monkeypatch.setattr(
        GPT4LMHeadModel,
        "forward",
        lambda self, ids, *a, **k: seen.append(ids.shape) or real_forward(self, ids, *a, **k),
    )
    monkeypatch.chdir(tmp_path)
    from gptkit.train import finetune as finetune_module

    results = []
    real_finetune = finetune_module.finetune
    monkeypatch.setattr(
        finetune_module, "finetune", lambda c: results.append(real_finetune(c)) or results[-1]
    )
    args = ["finetune", str(tmp_path / "base"), "sft.jsonl", "--batch_size=4", "--max_iters=3", "--sft_val_fraction=0.2",
            "--eval_interval=1000", "--tensorboard=false", "--dtype=float32"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "writing checkpoints and metrics to out/finetune-base/" in out
    assert (tmp_path / "out" / "finetune-base" / "ckpt-000003" / "COMPLETE").is_file()
    (length,) = {len(tokenize_pair(p, c, tokenizer).input_ids) for p, c in pairs}
    assert {shape[1] for shape in seen} == {length} and length < config.context_length  # no padding to 64
    result = results[0]
    assert result.tokens == 3 * 4 * length  # 3 steps of 4 examples: their real tokens, not 3 x 4 x 64
    assert f"tokens {result.tokens:,} " in out
    assert result.mfu is not None and 0 < result.mfu < 1
