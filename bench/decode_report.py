"""The printed report of bench/decode.py: the table, the issue's goals vs llama.cpp, and the roofline."""

from __future__ import annotations

DEFAULT = "gptkit default (no flags)"
LLAMA = "llama.cpp Q4_1"
NAN = float("nan")

KEYS = ["load s", "prefill tok/s", "decode tok/s", "weights MiB", "peak RSS MiB", "engine peak MiB"]
AGGREGATE = ["b1 tok/s", "b4 agg tok/s", "b16 agg tok/s", "compile s"]
RATIOS = {  # column -> (row key, peer row, peer key)
    "decode/HF": ("decode tok/s", "transformers fp32", "decode tok/s"),
    "decode/llama": ("decode tok/s", LLAMA, "decode tok/s"),
    "prefill/llama": ("prefill tok/s", LLAMA, "prefill tok/s"),
    "b16/llama b1": ("b16 agg tok/s", LLAMA, "decode tok/s"),
    "load/llama": ("load s", LLAMA, "load s"),
    "RSS/llama": ("peak RSS MiB", LLAMA, "peak RSS MiB"),
}
GOALS = [  # (what, gptkit key, llama.cpp key, target ratio, higher is better): issue 13's goals
    ("decode, 1 stream (tok/s)", "decode tok/s", "decode tok/s", 1.5, True),
    ("prefill, 512 tokens (tok/s)", "prefill tok/s", "prefill tok/s", 3.0, True),
    ("16 streams vs llama.cpp's 1 (tok/s)", "b16 agg tok/s", "decode tok/s", 4.0, True),
    ("load time (s)", "load s", "load s", 3.0, False),
    ("peak RSS (MiB)", "peak RSS MiB", "peak RSS MiB", 1.8, False),
]


def ratio(results: dict[str, dict], row: str, key: str, peer: str, peer_key: str) -> float:
    """results[row][key] / results[peer][peer_key], NaN when either is missing."""
    if row not in results or peer not in results:
        return NAN
    return results[row].get(key, NAN) / results[peer].get(peer_key, NAN)


def print_table(results: dict[str, dict]) -> None:
    """Rows = configurations; ratio columns vs transformers fp32 and llama.cpp."""
    print(f"{'config':<28}" + "".join(f"{k:>16}" for k in KEYS + AGGREGATE + list(RATIOS)))
    for name, r in results.items():
        cells = "".join(_cell(r.get(k, NAN)) for k in KEYS + AGGREGATE)
        cells += "".join(_cell(ratio(results, name, *spec), "x") for spec in RATIOS.values())
        print(f"{name:<28}{cells}")
    print(f"{DEFAULT}: GPT4LMHeadModel.from_pretrained(name) and Engine(model, tokenizer) with no options")
    print("decode: model.generate after the prompt; 'compiled': the Engine's compiled step (b1, one request)")
    print("b1: gptkit.engine.Engine, one request after the prompt; b4/b16 agg: 4 or 16 concurrent greedy")
    print("requests, 16-token prompts, including prefill; compile s: Engine.warm_up with compile=True")
    print("peak RSS: VmHWM after load, prefill and the single-stream decode, each row in its own process")
    print("(llama.cpp's never imports torch); engine peak: after the Engine runs too")


def _cell(value: float, unit: str = "") -> str:
    """A 16-wide right-aligned number, or "-" when it was not measured."""
    return f"{'-' if value != value else f'{value:.2f}{unit}':>16}"  # NaN != NaN


def print_goals(results: dict[str, dict]) -> None:
    """The issue's goals: gptkit with no flags against llama.cpp, side by side, with the ratio and target."""
    print(f"\ngoals: {DEFAULT} vs {LLAMA}")
    if DEFAULT not in results or LLAMA not in results:
        print(f"  (needs both rows; measured: {', '.join(results)})")
        return
    print(f"  {'':<38}{'gptkit':>10}{'llama.cpp':>11}{'ratio':>9}  goal")
    for what, key, peer_key, target, higher in GOALS:
        value, peer = results[DEFAULT].get(key, NAN), results[LLAMA].get(peer_key, NAN)
        r = value / peer
        met = r >= target if higher else r <= target
        goal = f"{'>=' if higher else '<='} {target}x"
        print(f"  {what:<38}{value:>10.2f}{peer:>11.2f}{r:>8.2f}x  {goal:<9}{'met' if met else 'MISSED'}")


def print_roofline(results: dict[str, dict], bandwidth_gbs: float, buffer_mib: int, threads: int) -> None:
    """Weight bytes read per decode token x tok/s, against the measured memory bandwidth."""
    print(f"\nroofline: memory read bandwidth {bandwidth_gbs:.1f} GB/s (torch sum over {buffer_mib} MiB, "
          f"{threads} threads, this run)")  # fmt: skip
    print(f"  {'config':<28}{'MiB/token':>10}{'tok/s':>9}{'GB/s':>8}{'of bw':>7}{'ceiling tok/s':>15}")
    for name, r in results.items():
        if "read/token MiB" not in r:
            continue
        per_token = r["read/token MiB"] * 2**20
        achieved = per_token * r["decode tok/s"] / 1e9
        ceiling = bandwidth_gbs * 1e9 / per_token
        print(
            f"  {name:<28}{r['read/token MiB']:>10.1f}{r['decode tok/s']:>9.1f}{achieved:>8.2f}"
            f"{achieved / bandwidth_gbs:>7.0%}{ceiling:>15.0f}"
        )
    print(
        "  MiB/token: weights one decode token streams (blocks, norms, lm_head; not the gathered embedding)"
    )
