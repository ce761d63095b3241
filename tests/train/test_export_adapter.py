"""`gptkit finetune --lora` -> `gptkit export --adapter`: the adapter alone (PEFT's layout) gives what the
merged export gives, loaded with lora= (merged), served per request (applied) and through generate --lora."""

from __future__ import annotations

import json

import pytest
import torch

from gptkit import GPT4LMHeadModel, preset
from gptkit.cli import main
from gptkit.data.tokenizer_training import train_char
from gptkit.engine import Engine, SamplingParams
from gptkit.weights.adapters import load_adapter

pytestmark = pytest.mark.slow  # a short fine-tuning run


def test_a_finetuned_adapter_gives_the_merged_models_outputs(tmp_path, capsys):
    (tmp_path / "chars.txt").write_text("0123456789+=\n")
    tokenizer = train_char([tmp_path / "chars.txt"], tmp_path / "tok", special_tokens=["<|endoftext|>"])
    config = preset("gpt-nano", vocab_size=len(tokenizer), bias=True, eos_token_id=tokenizer.eos_token_id)
    base = GPT4LMHeadModel(config)  # GPT-2 layout: LoRA on c_attn / c_proj / c_fc (Conv1D)
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    lines = [json.dumps({"prompt": f"{i}+1=", "completion": f"{i + 1}"}) for i in range(40)]
    (tmp_path / "sft.jsonl").write_text("\n".join(lines) + "\n")
    args = ["finetune", str(tmp_path / "base"), str(tmp_path / "sft.jsonl"), "--lora", "--lora-rank", "4",
            "--batch_size=4", "--lr=1e-2", f"--out_dir={tmp_path / 'out'}", "--eval_interval=10", "--eval_iters=1",
            "--checkpoint_interval=10", "--progress=false", "--tensorboard=false", "--dtype=float32",
            "--max_iters=10", "--export", str(tmp_path / "merged")]  # fmt: skip
    assert main(args) == 0
    assert main(["export", str(tmp_path / "out"), "--out", str(tmp_path / "adapter"), "--adapter"]) == 0
    settings = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert settings["r"] == 4 and "attn.c_attn" in settings["target_modules"] and settings["fan_in_fan_out"]
    merged = GPT4LMHeadModel.from_pretrained(tmp_path / "merged", dtype="float32")
    with_lora = GPT4LMHeadModel.from_pretrained(tmp_path / "base", dtype="float32", lora=tmp_path / "adapter")
    ids = torch.tensor([tokenizer.encode("3+1=")])
    expected = merged(ids).logits.detach()
    assert (expected - base.eval()(ids).logits).abs().max() > 1e-3  # training changed something
    torch.testing.assert_close(with_lora(ids).logits.detach(), expected, atol=1e-5, rtol=1e-5)
    served = GPT4LMHeadModel.from_pretrained(tmp_path / "base", dtype="float32")
    load_adapter(served, tmp_path / "adapter", name="sum")
    params = SamplingParams(max_tokens=4, temperature=0, logprobs=3)
    got = Engine(served, tokenizer, max_batch_size=2).generate(
        ["3+1=", "3+1="], params, adapters=["sum", None]
    )
    want = Engine(merged, tokenizer, max_batch_size=1).generate(["3+1="], params)[0]
    assert got[0].token_ids == want.token_ids
    assert all(abs(a.logprob - b.logprob) < 1e-4 for a, b in zip(got[0].logprobs, want.logprobs, strict=True))
    capsys.readouterr()
    generate = ["generate", "3+1=", "-n", "4", "--dtype", "float32"]
    assert main([*generate, "--model", str(tmp_path / "merged")]) == 0
    from_merged = capsys.readouterr().out
    assert main([*generate, "--model", str(tmp_path / "base"), "--lora", str(tmp_path / "adapter")]) == 0
    assert capsys.readouterr().out == from_merged
