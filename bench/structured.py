"""Structured-output benchmark: decode time per token of constrained vs free decoding at one stream, on the
bundled SmolLM2-135M GGUF (no flags: the default path), in one run.

For each JSON Schema / regex below, one greedy request runs constrained (grammar mask and fast-forward of
forced tokens, the default), constrained without fast-forward (the mask's own cost), and free with exactly
as many new tokens (``ignore_eos``). Decode time counts every step after the one that prefills the prompt;
per token = that time / (new tokens - 1). Each is the median of ``--repeats`` runs, the three variants interleaved. The goal: constrained
adds <= 10% per token.
Run: `.venv/bin/python bench/structured.py [--threads 2] [--repeats 5]`
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import gptkit  # noqa: F401  (before torch work, as `from gptkit import ...` is: it sets GOMP_SPINCOUNT)
from gptkit import GPT4LMHeadModel, GPT4Tokenizer
from gptkit.engine import Engine, SamplingParams
from gptkit.registry import DEFAULT_MODEL

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "email": {"type": "string", "pattern": "^[a-z]+@[a-z]+\\.com$"},
        "hobbies": {
            "type": "array",
            "items": {"type": "string", "maxLength": 20},
            "minItems": 1,
            "maxItems": 3,
        },
    },
    "required": ["name", "age", "email", "hobbies"],
    "additionalProperties": False,
}
ORDER = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "product": {"enum": ["apple", "bread", "milk"]},
                    "quantity": {"type": "integer"},
                },
                "required": ["product", "quantity"],
                "additionalProperties": False,
            },
            "minItems": 2,
            "maxItems": 4,
        },
        "express": {"type": "boolean"},
    },
    "required": ["items", "express"],
    "additionalProperties": False,
}
CASES = [
    ("json: person", "Describe a person as JSON.", {"json_schema": PERSON}),
    ("json: order", "Write a shopping order as JSON.", {"json_schema": ORDER}),
    ("regex: date list", "List three dates.", {"regex": "(20[0-9]{2}-[01][0-9]-[0-3][0-9], ){2}20[0-9]{2}-[01][0-9]"}),
]  # fmt: skip
MAX_TOKENS = 120


def decode_seconds(engine: Engine, prompt: list[int], params: SamplingParams) -> tuple[float, int]:
    """(seconds of the steps after the prefilling one, new tokens) for one request alone."""
    request_id = engine.add_request(prompt, params)
    engine.step()  # admits: prefill + first token
    start, tokens, finished = time.perf_counter(), 1, False
    while not finished:
        for event in engine.step():
            if event.request_id == request_id:
                tokens += event.token_id is not None
                finished = finished or event.finished
    return time.perf_counter() - start, tokens


def per_token(engine: Engine, prompt: list[int], variants: list[SamplingParams], repeats: int) -> list[float]:
    """Median decode seconds per token of each variant; the variants' runs interleave (machine noise hits
    them alike)."""
    runs: list[list[float]] = [[] for _ in variants]
    for _ in range(repeats):
        for times, params in zip(runs, variants, strict=True):
            seconds, n = decode_seconds(engine, prompt, params)
            times.append(seconds / max(n - 1, 1))
    return [statistics.median(times) for times in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = GPT4LMHeadModel.from_pretrained(DEFAULT_MODEL).eval()
    tokenizer = GPT4Tokenizer.from_pretrained(DEFAULT_MODEL)
    engine = Engine(model, tokenizer, max_batch_size=1)
    engine.warm_up()
    print(f"{'case':18} {'tokens':>6} {'free ms/tok':>11} {'mask only':>15} {'mask + fast-forward':>21}")
    overheads = []
    for name, question, constraint in CASES:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True
        )
        greedy = {"temperature": 0, "max_tokens": MAX_TOKENS}
        n = engine.generate([prompt], SamplingParams(**greedy, **constraint))[0].completion_tokens
        variants = [
            SamplingParams(temperature=0, max_tokens=n, ignore_eos=True),  # free, as many tokens
            SamplingParams(**greedy, **constraint, fast_forward=False),
            SamplingParams(**greedy, **constraint),
        ]
        free, mask, fast = per_token(engine, prompt, variants, args.repeats)
        overheads.append(fast / free - 1)
        print(
            f"{name:18} {n:6d} {1000 * free:11.2f} {1000 * mask:8.2f} ({mask / free - 1:+5.1%})"
            f" {1000 * fast:12.2f} ({fast / free - 1:+5.1%})"
        )
    worst = max(overheads)
    print(f"goal: constrained decoding adds <= 10% per token at one stream: worst {worst:+.1%} "
          f"({'met' if worst <= 0.10 else 'NOT met'})")  # fmt: skip


if __name__ == "__main__":
    main()
