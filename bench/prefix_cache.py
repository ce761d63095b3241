"""Time to first token of a chat's 5th turn (~1,500 tokens of history) with the engine's prefix cache on and off.

Turns 1-4 each ask about a passage of Tiny Shakespeare and get a greedy answer from the engine, as
`gptkit chat` would; turn 5 is a short question over the whole history. For each mode a fresh engine plays
turns 1-4, then answers several different 5th-turn questions; the time to each one's first token is
measured (prefill, plus the cache lookup and copy when on) and the median is reported. Goal: >= 5x.
Run: `.venv/bin/python bench/prefix_cache.py [--threads N]` (the bundled model on its default path).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from gptkit import GPT4LMHeadModel, GPT4Tokenizer
from gptkit.engine import Engine, SamplingParams
from gptkit.registry import DEFAULT_MODEL

TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
HISTORY_TOKENS = 1500  # the 5th turn's prompt, about
PASSAGE_TOKENS = 320  # per earlier user message
ANSWER = SamplingParams(max_tokens=48, temperature=0)
FIRST_TOKENS = SamplingParams(max_tokens=8, temperature=0)
QUESTIONS = [
    "Which of these passages is the most dramatic, in one sentence?",
    "Name every character you saw.",
    "What is the mood of the second passage?",
    "Which passage would you cut first?",
    "Give the four passages a title each.",
]
GOAL = 5.0


def passages(tokenizer: GPT4Tokenizer, text: str, count: int) -> list[str]:
    """``count`` consecutive passages of about PASSAGE_TOKENS tokens each, cut at line ends."""
    out, lines = [], iter(text.splitlines())
    for _ in range(count):
        chunk: list[str] = []
        while len(tokenizer.encode("\n".join(chunk))) < PASSAGE_TOKENS:
            chunk.append(next(lines))
        out.append("\n".join(chunk))
    return out


def play_history(engine: Engine, texts: list[str]) -> list[dict[str, str]]:
    """Turns 1-4: ask about each passage, keep the engine's answers (the chat template renders each turn)."""
    messages: list[dict[str, str]] = []
    for text in texts:
        messages.append({"role": "user", "content": f"Read this passage and summarise it briefly:\n\n{text}"})
        ids = engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        messages.append({"role": "assistant", "content": engine.generate([ids], ANSWER)[0].text})
    return messages


def time_to_first_token(engine: Engine, ids: list[int]) -> tuple[float, int, list[int]]:
    """(seconds from submission to the first token, cached prompt tokens, the first tokens)."""
    start = time.perf_counter()
    request_id = engine.add_request(ids, FIRST_TOKENS)
    while not any(e.request_id == request_id for e in engine.step()):
        pass
    elapsed = time.perf_counter() - start
    completion = None
    while completion is None:
        completion = next((e.completion for e in engine.step() if e.request_id == request_id), None)
    return elapsed, completion.cached_tokens, completion.token_ids


def run_mode(model, tokenizer, texts: list[str], prefix_cache_mb: float | None) -> dict:
    """A fresh engine plays turns 1-4, then each 5th-turn question is timed."""
    engine = Engine(model, tokenizer, max_batch_size=4, prefix_cache_mb=prefix_cache_mb)
    history = play_history(engine, texts)
    times, cached, tokens, lengths = [], [], [], []
    for question in QUESTIONS:
        ids = tokenizer.apply_chat_template([*history, {"role": "user", "content": question}], True)
        seconds, n_cached, first = time_to_first_token(engine, ids)
        times.append(seconds)
        cached.append(n_cached)
        tokens.append(first)
        lengths.append(len(ids))
    return {"ttft": statistics.median(times), "cached": cached, "tokens": tokens, "lengths": lengths}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--text", type=Path, default=TEXT, help="the passages' source text")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = GPT4Tokenizer.from_pretrained(DEFAULT_MODEL)
    model = GPT4LMHeadModel.from_pretrained(DEFAULT_MODEL).eval()
    texts = passages(tokenizer, args.text.read_text(), 4)
    off = run_mode(model, tokenizer, texts, prefix_cache_mb=0)
    on = run_mode(model, tokenizer, texts, prefix_cache_mb=None)  # the default budget
    print(f"model: {DEFAULT_MODEL} (default path), torch threads: {torch.get_num_threads()}")
    print(f"5th-turn prompts: {min(on['lengths'])}-{max(on['lengths'])} tokens; {len(QUESTIONS)} questions")
    print(f"cached prompt tokens with the cache on: {on['cached']}")
    print(
        f"time to first token, median: cache off {off['ttft'] * 1000:.0f} ms, on {on['ttft'] * 1000:.0f} ms"
    )
    speedup = off["ttft"] / on["ttft"]
    print(f"speedup: {speedup:.1f}x (goal >= {GOAL:g}x: {'met' if speedup >= GOAL else 'NOT met'})")
    same = off["tokens"] == on["tokens"] and off["lengths"] == on["lengths"]
    print(f"greedy first tokens identical with and without the cache: {same}")


if __name__ == "__main__":
    main()
