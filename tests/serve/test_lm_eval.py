"""lm-evaluation-harness drives the server from outside, as it drives vLLM.

``local-completions`` scores a multiple-choice task by log-likelihood (echo + logprobs, tokens from the
server's /tokenize) and must get gptkit's own log-likelihoods and accuracy; ``local-chat-completions``
runs a generation task and must produce gptkit's own greedy generations. The tasks are tiny local files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from gptkit.eval.multiple_choice import choice_predictions
from gptkit.scoring.loglik import Loglik, score_continuations

pytestmark = pytest.mark.slow

CHOICE_ITEMS = [  # (query, choices, gold)
    ("The capital of France is", ["Paris", "London", "Berlin"], 0),
    ("The opposite of hot is", ["cold", "green", "loud"], 0),
    ("Two plus two equals", ["three", "four", "five"], 1),
    ("The largest planet in the solar system is", ["Mars", "Venus", "Jupiter"], 2),
    ("Water freezes at zero degrees", ["Celsius", "Fahrenheit", "Kelvin"], 0),
    ("The chemical symbol for gold is", ["Ag", "Au", "Gd"], 1),
    ("A baby cat is called a", ["puppy", "kitten", "calf", "foal"], 1),
    ("The author of Hamlet is William", ["Blake", "Wordsworth", "Shakespeare"], 2),
]
GENERATION_ITEMS = [  # (question, answer)
    ("What is the capital of France? Answer with one word.", "Paris"),
    ("What is 2 + 2? Answer with a number.", "4"),
    ("What color is the sky on a clear day? Answer with one word.", "Blue"),
    ("Name the largest planet in our solar system. Answer with one word.", "Jupiter"),
]
STOPS = ["\n", "."]
MAX_GEN_TOKENS = 12
LAST_WORD = r"(\w+)\W*$"
TOLERANCE = 1e-3  # the server batches differently from the reference: float rounding, nothing more

CHOICE_TASK = {
    "output_type": "multiple_choice",
    "doc_to_text": "query",  # lm-eval then scores target_delimiter (" ") + choice after it
    "doc_to_choice": "choices",
    "doc_to_target": "gold",
    "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
}
GENERATION_TASK = {
    "output_type": "generate_until",
    "doc_to_text": "question",
    "doc_to_target": "answer",
    "generation_kwargs": {
        "until": STOPS,
        "max_gen_toks": MAX_GEN_TOKENS,
        "do_sample": False,
        "temperature": 0,
    },
    "filter_list": [
        {
            "name": "last_word",
            "filter": [{"function": "regex", "regex_pattern": LAST_WORD}, {"function": "take_first"}],
        }
    ],
    "metric_list": [{"metric": "exact_match", "ignore_case": True}],
}


@pytest.fixture
def lm_eval(monkeypatch, bundled_server):
    """lm_eval, imported with every hub download switched off and the server's API key in OPENAI_API_KEY."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("OPENAI_API_KEY", bundled_server.api_key)
    return pytest.importorskip("lm_eval")


def write_task(directory: Path, name: str, rows: list[dict], task: dict) -> None:
    """A local lm-eval task: its rows as JSONL and a YAML that loads them with the `json` dataset builder."""
    data = directory / f"{name}.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = {"data_files": {"test": str(data)}, "cache_dir": str(directory / "hf_cache")}
    config = {"task": name, "dataset_path": "json", "dataset_kwargs": dataset, "test_split": "test", **task}
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def run_task(
    lm_eval, directory: Path, task: str, model: str, model_args: dict, **options
) -> tuple[dict, list]:
    """(metrics, per-document samples) of one lm-eval run of a local task."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(directory), include_defaults=False)
    out = lm_eval.simple_evaluate(
        model=model, model_args=model_args, tasks=[task], task_manager=manager, log_samples=True, **options
    )
    samples = sorted(out["samples"][task], key=lambda s: s["doc_id"])
    return out["results"][task], samples


def server_args(server, endpoint: str, **extra) -> dict:
    """lm-eval model_args for one of the server's OpenAI endpoints."""
    return {
        "base_url": f"{server.base_url}/{endpoint}",
        "model": server.model_name,
        "auth_token": server.api_key,  # RemoteTokenizer's /tokenize calls do not read OPENAI_API_KEY
        "max_retries": 1,
        **extra,
    }


def lm_eval_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's causal _encode_pair: encode context and context + continuation, split at the context length."""
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731 (what /tokenize does)
    context_ids = encode(context)
    return context_ids, encode(context + continuation)[len(context_ids) :]


def gptkit_logliks(server) -> list[list[Loglik]]:
    """gptkit's own log-likelihood of every choice (" " + choice after the query), per item."""
    pairs = [lm_eval_pair(server.tokenizer, q, " " + c) for q, choices, _ in CHOICE_ITEMS for c in choices]
    scores = iter(score_continuations(server.model, pairs))
    return [[next(scores) for _ in choices] for _, choices, _ in CHOICE_ITEMS]


@pytest.mark.parametrize(
    "transport",
    [
        {"tokenized_requests": True, "batch_size": 4, "num_concurrent": 2},  # token-id prompts, batched
        {"tokenized_requests": False, "batch_size": 2, "num_concurrent": 1},  # text prompts, list of strings
    ],
    ids=["token-ids", "text"],
)
def test_local_completions_loglikelihood_matches_gptkit(lm_eval, bundled_server, tmp_path, transport):
    rows = [{"query": q, "choices": c, "gold": g} for q, c, g in CHOICE_ITEMS]
    write_task(tmp_path, "gptkit_choice", rows, CHOICE_TASK)
    args = server_args(bundled_server, "completions", tokenizer_backend="remote", **transport)
    metrics, samples = run_task(lm_eval, tmp_path, "gptkit_choice", "local-completions", args)

    expected = gptkit_logliks(bundled_server)
    assert len(samples) == len(CHOICE_ITEMS)
    for sample, reference in zip(samples, expected, strict=True):
        served = [resp[0] for resp in sample["resps"]]  # one (loglik, is_greedy) per choice
        assert [lp for lp, _ in served] == pytest.approx([r.logprob for r in reference], abs=TOLERANCE)
        assert [greedy for _, greedy in served] == [r.is_greedy for r in reference]
    predictions = [
        choice_predictions([r.logprob for r in reference], tuple(choices))
        for reference, (_, choices, _) in zip(expected, CHOICE_ITEMS, strict=True)
    ]
    golds = [gold for *_, gold in CHOICE_ITEMS]
    assert metrics["acc,none"] == sum(p[0] == g for p, g in zip(predictions, golds, strict=True)) / len(golds)
    assert metrics["acc_norm,none"] == sum(p[1] == g for p, g in zip(predictions, golds, strict=True)) / len(
        golds
    )


@torch.inference_mode()
def gptkit_chat_answer(server, question: str) -> str:
    """gptkit's own greedy answer to one user message, cut before the first stop string as the server does."""
    messages = [{"role": "user", "content": question}]
    prompt = server.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    out = server.model.generate(
        torch.tensor([prompt]),
        max_new_tokens=MAX_GEN_TOKENS,
        do_sample=False,
        stop_strings=STOPS,
        tokenizer=server.tokenizer,
    )
    text = server.tokenizer.decode(out[0, len(prompt) :].tolist(), skip_special_tokens=True)
    return re.split("|".join(map(re.escape, STOPS)), text)[0]


def last_word(text: str) -> str:
    """What the task's regex filter keeps: the last word, or lm-eval's fallback."""
    found = re.findall(LAST_WORD, text)
    return found[0].strip() if found else "[invalid]"


def test_local_chat_completions_generation_matches_gptkit(lm_eval, bundled_server, tmp_path):
    rows = [{"question": q, "answer": a} for q, a in GENERATION_ITEMS]
    write_task(tmp_path, "gptkit_answer", rows, GENERATION_TASK)
    args = server_args(bundled_server, "chat/completions", num_concurrent=1)
    metrics, samples = run_task(
        lm_eval, tmp_path, "gptkit_answer", "local-chat-completions", args, apply_chat_template=True
    )

    expected = [gptkit_chat_answer(bundled_server, q) for q, _ in GENERATION_ITEMS]
    assert [s["resps"][0][0] for s in samples] == expected
    assert [s["filtered_resps"][0] for s in samples] == [last_word(e) for e in expected]
    hits = [last_word(e).lower() == a.lower() for e, (_, a) in zip(expected, GENERATION_ITEMS, strict=True)]
    assert metrics["exact_match,last_word"] == pytest.approx(sum(hits) / len(hits))
