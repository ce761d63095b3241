"""Cost numbers equal the closed-form formulas for GPT-2 124M."""

from __future__ import annotations

import json

import pytest

from gptkit import preset
from gptkit.cli import main
from gptkit.eval.cost import estimate, format_table, resolve_config

L, D_MODEL, T, V, HEADS = 12, 768, 1024, 50257, 12
GPT2_PARAMS = 124_439_808  # Hugging Face's gpt2, tied embeddings counted once


def test_gpt2_parameters_and_flops():
    report = estimate(preset("gpt2"), tokens=10**9)
    assert report.n_params == GPT2_PARAMS
    assert report.n_params_non_embedding == GPT2_PARAMS - V * D_MODEL - T * D_MODEL
    n_f = GPT2_PARAMS - T * D_MODEL  # the tied token table is the LM head's matmul
    assert report.train_flops_per_token == 6 * n_f + 12 * L * D_MODEL * T
    assert report.inference_flops_per_token == 2 * n_f + 4 * L * D_MODEL * T
    attention_flops = 12 * L * D_MODEL * T * 10**9
    assert (
        abs(report.train_flops - 6 * GPT2_PARAMS * 10**9) <= attention_flops
    )  # 6ND within the attention term
    assert report.train_flops == 6 * n_f * 10**9 + attention_flops


def test_gpt2_memory_by_formula():
    report = estimate(preset("gpt2"), batch_size=4, seq_len=512)
    assert report.weights_bytes == {
        "fp32": 4 * GPT2_PARAMS,
        "bf16": 2 * GPT2_PARAMS,
        "int8": GPT2_PARAMS,
        "int4": GPT2_PARAMS / 2,
    }
    assert report.gradients_bytes == 4 * GPT2_PARAMS
    assert report.training_state_bytes == 16 * GPT2_PARAMS
    s, b = 512, 4
    assert report.activations_bytes == L * (34 * s * b * D_MODEL + 5 * HEADS * s * s * b)
    assert report.kv_cache_bytes == 2 * L * HEADS * 64 * s * 2 * b


def test_time_and_money_follow_from_compute():
    report = estimate(preset("gpt2"), device_flops=1e15, mfu=0.5, price_per_hour=3.0)
    assert report.tokens == 20 * GPT2_PARAMS  # Chinchilla default
    assert report.train_seconds == pytest.approx(report.train_flops / 5e14)
    assert report.train_cost == pytest.approx(report.train_seconds / 3600 * 3.0)
    table = format_table(report)
    assert "6 N_f + 12 L d_attn T" in table and "124.44M" in table


def test_configs_come_from_presets_files_and_models(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("vocab_size: 100\nn_layer: 2\nn_head: 2\nn_embd: 16\ncontext_length: 32\n")
    assert resolve_config(str(path)).n_layer == 2
    hf = tmp_path / "config.json"
    hf.write_text(
        json.dumps(
            {
                "model_type": "gpt2",
                "n_layer": 3,
                "n_head": 2,
                "n_embd": 16,
                "vocab_size": 100,
                "n_positions": 32,
            }
        )
    )
    assert resolve_config(str(hf)).n_layer == 3
    assert resolve_config("smollm2-135m-instruct").n_layer == 30  # header only, no weights


def test_cost_cli_prints_the_table_and_json(capsys):
    assert main(["cost", "gpt2", "--tokens", "1e9", "--mfu", "0.5"]) == 0
    assert "training cost" in capsys.readouterr().out
    assert main(["cost", "gpt2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_params"] == GPT2_PARAMS
    assert main(["cost", "gpt2", "--mfu", "2"]) == 2  # a usage error
    err = capsys.readouterr().err
    assert err.startswith("gptkit cost: error:") and err.count("\n") == 1


def test_labels_say_where_d_and_t_come_from(capsys):
    """--tokens is labelled as given, not as the 20 N default; T defaults to min(context, 2048)."""
    assert main(["cost", "gpt2", "--tokens", "1e9"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("training tokens D"))
    assert "1.00B" in row and "given (--tokens)" in row and "20 N" not in row
    assert main(["cost", "gpt2"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert "20 N (Chinchilla)" in next(line for line in rows if line.startswith("training tokens D"))
    assert "1024 / 1" in next(line for line in rows if line.startswith("sequence length"))


def test_the_default_sequence_length_is_at_most_2048():
    smollm2 = preset("smollm2-135m")  # an 8192-token context
    report = estimate(smollm2)
    assert report.seq_len == 2048 and not report.seq_len_given
    assert report.activations_bytes < 8 * 2**30  # was 88.86 GiB at T = 8192
    assert estimate(smollm2, seq_len=8192).activations_bytes == pytest.approx(88.86 * 2**30, rel=1e-3)
    assert "default min(context 8192, 2048)" in format_table(report)
