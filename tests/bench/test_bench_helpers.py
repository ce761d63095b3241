"""The benchmark's helpers: llama.cpp build flags from /proc/cpuinfo, weight bytes per token, the goals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gptkit import GPT4Config, GPT4LMHeadModel

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import decode  # noqa: E402
import decode_report  # noqa: E402
import llama_cmake_args  # noqa: E402
from peak_rss import peak_rss_mib  # noqa: E402

ZEN4 = "fpu sse2 avx f16c fma avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512vbmi avx512_vnni"
ALDER_LAKE = "fpu sse2 avx f16c fma avx2 avx_vnni"
SAPPHIRE_RAPIDS = ZEN4 + " avx_vnni amx_tile amx_bf16"


def cpuinfo(flags: str) -> str:
    return f"processor\t: 0\nvendor_id\t: X\nflags\t\t: {flags}\nbugs\t\t: none\n\nprocessor\t: 1\n"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (ZEN4, "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON "
               "-DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON"),
        (ALDER_LAKE, "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX_VNNI=ON"),
        (SAPPHIRE_RAPIDS, "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON "
                          "-DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON"),
        ("fpu sse2 avx512_vnni", "-DGGML_NATIVE=OFF"),  # no avx512f: the AVX-512 extensions are not enabled
        ("fpu sse2 sse4_2", "-DGGML_NATIVE=OFF"),
    ],
    ids=["zen4", "alder-lake", "sapphire-rapids", "vnni-without-avx512f", "no-avx2"],
)  # fmt: skip
def test_cmake_args_follow_the_cpu_flags(flags, expected):
    assert " ".join(llama_cmake_args.cmake_args(llama_cmake_args.cpu_flags(cpuinfo(flags)))) == expected


def test_avx_vnni_only_with_its_own_flag():
    # avx512_vnni contains "vnni" but is not the VEX-encoded AVX-VNNI: that build dies with SIGILL on Zen 4
    assert "-DGGML_AVX_VNNI=ON" not in llama_cmake_args.cmake_args(llama_cmake_args.cpu_flags(cpuinfo(ZEN4)))


def test_the_script_prints_one_line_for_a_cpuinfo_file(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo(ALDER_LAKE))
    out = subprocess.run([sys.executable, str(BENCH / "llama_cmake_args.py"), str(path)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert out == "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX_VNNI=ON\n"
    assert llama_cmake_args.cpu_flags("") == set()  # no /proc/cpuinfo (not Linux): only -DGGML_NATIVE=OFF
    assert llama_cmake_args.cpu_flags("Features\t: fp asimd sve\n") == {"fp", "asimd", "sve"}  # ARM


@pytest.mark.parametrize("tied", [True, False])
def test_streamed_weight_bytes_skip_the_gathered_embedding_but_not_the_head(tied):
    config = GPT4Config(vocab_size=100, n_layer=2, n_head=2, n_embd=16, context_length=32,
                        positions="rope", tie_word_embeddings=tied)  # fmt: skip
    model = GPT4LMHeadModel(config)
    blocks = sum(p.nbytes for p in model.blocks.parameters()) + sum(p.nbytes for p in model.norm.parameters())
    head = 100 * 16 * 4  # fp32 lm_head, read in full every token (the embedding table itself when tied)
    assert decode.streamed_weight_bytes(model) == blocks + head
    assert decode.streamed_weight_bytes(model.to(torch.bfloat16)) == (blocks + head) // 2


def test_gguf_streamed_bytes_of_the_bundled_model(bundled_gguf):
    from gptkit.weights.gguf_file import read_header

    tensors = read_header(bundled_gguf).tensors
    assert "output.weight" not in {t.name for t in tensors}  # SmolLM2 ties its head: token_embd is read too
    data = bundled_gguf.stat().st_size - min(t.offset for t in tensors)  # the tensor data, with alignment
    assert data - 32 * len(tensors) <= decode.gguf_streamed_bytes(bundled_gguf) <= data


def test_goals_are_ratios_of_the_default_row_to_llama_cpp(capsys):
    llama = {"decode tok/s": 80.0, "prefill tok/s": 1000.0, "load s": 0.1, "peak RSS MiB": 200.0}
    gptkit = {"decode tok/s": 120.0, "prefill tok/s": 2000.0, "b16 agg tok/s": 400.0, "load s": 0.5,
              "peak RSS MiB": 300.0}  # fmt: skip
    decode_report.print_goals({decode_report.DEFAULT: gptkit, decode_report.LLAMA: llama})
    lines = capsys.readouterr().out.splitlines()
    expected = {"decode": "1.50x  >= 1.5x   met", "prefill": "2.00x  >= 3.0x   MISSED",
                "16 streams": "5.00x  >= 4.0x   met", "load": "5.00x  <= 3.0x   MISSED",
                "peak RSS": "1.50x  <= 1.8x   met"}  # fmt: skip
    for start, tail in expected.items():
        words = tail.split()
        assert any(line.strip().startswith(start) and line.split()[-len(words) :] == words for line in lines)


def test_peak_rss_is_this_process_high_water_mark():
    before = peak_rss_mib()
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    assert peak_rss_mib() >= before and peak_rss_mib() > 64
    del block
