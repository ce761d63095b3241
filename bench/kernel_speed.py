"""Native kernels side by side with torch's dense matmuls on SmolLM2-135M's layer shapes.

    .venv/bin/python bench/kernel_speed.py [--threads 2]

Prints µs per call for M activation rows (1: decode; 4-16: the Engine's batched decode; 64-512: prefill):
the path GGMLWeight takes (packed x16 kernel up to 64 rows, bf16 dense above), the packed kernel alone,
and torch's F.linear on a dense fp32 or bf16 weight (what a dequantized model does); then the decode
attention kernel against SDPA. Weights are random blocks made by the `gguf` package's quantizer.
"""

from __future__ import annotations

import argparse
import math
import time
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from gguf import GGMLQuantizationType as Q
from gguf import quants

import gptkit  # noqa: F401  (before torch: GOMP_SPINCOUNT)
from gptkit import kernels
from gptkit.quant.ggml import GGMLWeight, pack
from gptkit.weights.gguf_io import StoredRows

LAYERS = [("qkv 576->960", 960, 576, Q.Q4_1), ("proj 576->576", 576, 576, Q.Q4_1),
          ("gate_up 576->3072", 3072, 576, Q.Q4_1), ("down 1536->576", 576, 1536, Q.Q4_1),
          ("lm_head 576->49152", 49152, 576, Q.Q8_0)]  # fmt: skip
ROWS = (1, 4, 16, 64, 512)


def best_seconds(fn, budget: float = 0.3) -> float:
    """The fastest of repeated calls within about ``budget`` seconds."""
    fn()
    best, spent = math.inf, 0.0
    while spent < budget:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
    return best


def layer_rows(name: str, n: int, k: int, qtype: Q) -> list[str]:
    values = np.random.default_rng(0).normal(0, 0.05, (n, k)).astype(np.float32)
    blocks = torch.from_numpy(quants.quantize(values, qtype).copy()).view(torch.uint8).reshape(n, -1)
    data, packed = pack(StoredRows(name, int(qtype), [blocks], None))
    weight = GGMLWeight(data, int(qtype), (n, k), packed)
    dense = torch.from_numpy(quants.dequantize(blocks.numpy(), qtype)).reshape(n, k)
    dense_bf16, native = dense.bfloat16(), kernels.ops()
    rows = []
    for m in ROWS:
        x = torch.randn(m, k)
        times = (
            best_seconds(partial(weight.matmul, x)),
            best_seconds(partial(native.ggml_packed_matmul, x, data, int(qtype), n)),
            best_seconds(partial(F.linear, x, dense)),
            best_seconds(partial(F.linear, x.bfloat16(), dense_bf16)),
        )
        cells = " | ".join(f"{t * 1e6:.0f}" for t in times)
        rows.append(f"| {name if m == ROWS[0] else ''} | {m} | {cells} | {times[2] / times[0]:.1f}x |")
    return rows


def attention_rows() -> list[str]:
    rows, native = [], kernels.ops()
    for length in (128, 512, 2048):
        q, k, v = torch.randn(1, 9, 64), torch.randn(1, 3, length, 64), torch.randn(1, 3, length, 64)
        visible = torch.ones(1, length, dtype=torch.bool)
        ours = best_seconds(partial(native.decode_attention, q, k, v, visible, 0.125))
        sdpa = best_seconds(
            partial(
                F.scaled_dot_product_attention,
                q[:, :, None],
                k,
                v,
                attn_mask=visible[:, None, None],
                enable_gqa=True,
            )
        )
        rows.append(f"| {length} | {ours * 1e6:.0f} | {sdpa * 1e6:.0f} | {sdpa / ours:.1f}x |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"native kernels: {kernels.isa_name()}, {args.threads} threads, µs per call")
    print("| layer (K->N) | M | GGMLWeight | packed kernel | fp32 F.linear | bf16 F.linear | vs fp32 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for layer in LAYERS:
        print("\n".join(layer_rows(*layer)))
    print(
        "\n| decode attention, 9 query / 3 kv heads, head_dim 64: cached tokens | native | SDPA | speed-up |"
    )
    print("|---:|---:|---:|---:|")
    print("\n".join(attention_rows()))


if __name__ == "__main__":
    main()
