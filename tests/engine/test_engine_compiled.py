"""The torch.compile'd decode step: same completions as the eager engine, two graphs, an eager fallback.

Each compiled model is compiled once per module (fixtures below); its compilations are counted with
torch._dynamo's ``unique_graphs`` counter, which counts every graph dynamo hands to inductor.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from gptkit import GPT4LMHeadModel
from gptkit.engine import Completion, Engine, SamplingParams
from gptkit.quant import quantize_model

pytestmark = pytest.mark.slow  # every test compiles (or waits for) a decode graph: seconds each

MAX_BATCH = 10  # past Int8Linear.KERNEL_MAX_ROWS = 8, where the eager int8 layers switch to a dense matmul
MAX_SEQ = 96
BF16_ULPS = 8  # tolerated bf16 rounding steps of the largest logit (see within_bf16_rounding)
Schedule = list[tuple[int, list[int], int]]  # (step the request joins before, prompt ids, max_tokens)


def prompt(seed: int, length: int) -> list[int]:
    """A deterministic prompt of ``length`` ids inside the tiny vocabulary."""
    return [(31 * seed + 7 * j) % 250 + 1 for j in range(length)]


def together(prompts: list[list[int]], max_tokens: list[int], at: int = 0) -> Schedule:
    """Requests that all join before step ``at``."""
    return [(at, p, n) for p, n in zip(prompts, max_tokens, strict=True)]


# 13 requests for 10 slots: 8 start together, 5 join mid-stream (3 of them wait for a free slot)
JOIN_AND_LEAVE: Schedule = together(
    [prompt(i, 1 + (5 * i) % 12) for i in range(8)], [3, 12, 5, 9, 2, 14, 7, 4]
) + together([prompt(20 + i, 2 + 3 * i) for i in range(5)], [6, 11, 3, 8, 5], at=3)
# the warm-up: one request alone (the one-row graph), then three together (the many-row graph)
ALONE = together([prompt(40, 4)], [3])
ALONE_THEN_THREE = [
    ALONE,
    together([prompt(41 + i, 6 - 2 * i) for i in range(3)], [3] * 3),
]
# then other widths (up to MAX_BATCH, past 8 rows) and caches up to 90 of the 96 columns
WIDER_AND_LONGER = [
    together([prompt(50, 9), prompt(51, 2)], [20, 6]),
    together([prompt(52 + i, 3 + 4 * i) for i in range(5)], [4, 18, 9, 2, 13]),
    together([prompt(60 + i, 1 + i) for i in range(9)], [5 + 3 * i for i in range(9)]),
    together([prompt(70 + i, 30 - i) for i in range(MAX_BATCH)], [60 - 5 * i for i in range(MAX_BATCH)]),
]


@pytest.fixture(scope="module", autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    """Compile from scratch in this module (graph counts are exact) and leave no graphs behind.

    Each model compiles its own copy of GPT4LMHeadModel.transformer (gptkit.engine.compiled), so the
    default recompile limit (8) applies per model, and the engine's budget of two graphs is what is tested.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures compile before the per-test single_thread fixture runs
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
    torch.set_num_threads(threads)


def graphs_compiled(action: Callable[[], object]) -> int:
    """How many graphs torch.compile built while ``action`` ran."""
    before = counters["stats"]["unique_graphs"]
    action()
    return counters["stats"]["unique_graphs"] - before


def run_schedule(engine: Engine, schedule: Schedule) -> tuple[list[tuple[int, Completion]], list[list[int]]]:
    """Add each request before its step, step until idle: (request id, completion) in schedule order, and
    the occupied slots of every step."""
    request_ids: dict[int, int] = {}  # schedule index -> request id
    done: dict[int, Completion] = {}
    slots_per_step: list[list[int]] = []
    step = 0
    while step <= max(at for at, _, _ in schedule) or engine.has_unfinished():
        for i, (at, prompt_ids, n) in enumerate(schedule):
            if at == step:
                request_ids[i] = engine.add_request(prompt_ids, SamplingParams(max_tokens=n, temperature=0))
        slots_per_step.append(sorted(engine.running))
        done.update({e.request_id: e.completion for e in engine.step() if e.finished})
        step += 1
    return [(request_ids[i], done[request_ids[i]]) for i in range(len(schedule))], slots_per_step


def tokens_of(results: list[tuple[int, Completion]]) -> list[list[int]]:
    return [completion.token_ids for _, completion in results]


@contextmanager
def recorded_decode_logits(engine: Engine) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Record the logits (V,) that every decode step gives each request's row: request id -> list."""
    step, logits = engine.decode, {}

    def record(tokens: torch.Tensor, token_mask: torch.Tensor, cache) -> torch.Tensor:
        out = step(tokens, token_mask, cache)  # (width, V)
        for slot, request in engine.running.items():
            logits.setdefault(request.id, []).append(out[slot].float().clone())
        return out

    engine.decode = record
    try:
        yield logits
    finally:
        engine.decode = step


def eager_decode_logits(model, prompt_ids: list[int], tokens: list[int]) -> torch.Tensor:
    """The logits that chose tokens[1:] (tokens[0] comes from the prefill), from the model's own eager
    cached forward on this row alone, fed the given tokens: (len(tokens) - 1, V)."""
    cache = model.new_cache(1, len(prompt_ids) + len(tokens))
    with torch.inference_mode():
        model(torch.tensor([prompt_ids]), cache=cache, logits_to_keep=1)
        steps = [model(torch.tensor([[t]]), cache=cache, logits_to_keep=1).logits[0, -1] for t in tokens[:-1]]
    return torch.stack(steps).float()


def reference(model, prompt_ids: list[int], n: int) -> list[int]:
    """model.generate's greedy new tokens for one prompt alone."""
    out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n)
    return out[0, len(prompt_ids) :].tolist()


@contextmanager
def no_new_graphs() -> Iterator[None]:
    """Fail when anything compiles inside: the engine's graphs must already cover what runs."""
    before = counters["stats"]["unique_graphs"]
    yield
    assert counters["stats"]["unique_graphs"] == before, "the compiled decode step recompiled"


@dataclasses.dataclass
class CompiledEngine:
    """A compile=True engine, the graphs it compiled while warming up and while running on, and the
    tokens of every request it ran (per schedule)."""

    engine: Engine
    warmup_graphs: int
    later_graphs: int
    tokens: list[list[list[int]]]


def compile_and_run(engine: Engine, warmup: list[Schedule], later: list[Schedule]) -> CompiledEngine:
    """Run the warm-up schedules, then the later ones, counting the graphs each phase compiles."""
    tokens: list[list[list[int]]] = []

    def run_all(schedules: list[Schedule]) -> None:
        tokens.extend(tokens_of(run_schedule(engine, s)[0]) for s in schedules)

    warm, later_graphs = graphs_compiled(lambda: run_all(warmup)), graphs_compiled(lambda: run_all(later))
    return CompiledEngine(engine, warm, later_graphs, tokens)


def compiled_run(model: GPT4LMHeadModel, tokenizer) -> CompiledEngine:
    """A compiled engine on ``model`` through the warm-up schedules, then the wider and longer ones."""
    engine = Engine(model, tokenizer, MAX_BATCH, MAX_SEQ, compile=True)
    return compile_and_run(engine, ALONE_THEN_THREE, WIDER_AND_LONGER)


@pytest.fixture(scope="module")
def fp32_compiled(model, tokenizer) -> CompiledEngine:
    return compiled_run(model, tokenizer)


@pytest.fixture(scope="module")
def int4_model(model):
    """The tiny model with int4 block linears and an int8 lm_head, bf16 activations."""
    return quantize_model(copy.deepcopy(model), "int4", torch.bfloat16)


@pytest.fixture(scope="module")
def int8_model(model):
    """The tiny model with every linear int8, bf16 activations."""
    return quantize_model(copy.deepcopy(model), "int8", torch.bfloat16)


@pytest.fixture(scope="module")
def int4_compiled(int4_model, tokenizer) -> CompiledEngine:
    return compiled_run(int4_model, tokenizer)


@pytest.fixture(scope="module")
def int8_compiled(int8_model, tokenizer) -> CompiledEngine:
    return compiled_run(int8_model, tokenizer)


@pytest.fixture(scope="module")
def other_model(model):
    """The tiny model's shapes and weights with another norm epsilon: other logits, an identical graph
    structure (only a constant inside the graph differs)."""
    other = GPT4LMHeadModel(dataclasses.replace(model.config, norm_eps=0.5)).eval()
    other.load_state_dict(model.state_dict())
    return other


# for 3 slots: a first decode step over every slot, then one row, two rows, and more requests than slots
FILL_EVERY_SLOT = [together([prompt(80, 1), prompt(81, 2), prompt(82, 2)], [6, 6, 6])]  # 3 rows, 3 columns
ONE_TWO_MANY = [
    ALONE,
    together([prompt(84, 7), prompt(85, 2)], [5, 9]),
    JOIN_AND_LEAVE,
]


@pytest.fixture(scope="module")
def other_compiled(other_model, tokenizer) -> CompiledEngine:
    """A 3-slot engine whose first decode step fills every slot (a burst of requests at start-up)."""
    engine = Engine(other_model, tokenizer, 3, MAX_SEQ, compile=True)
    return compile_and_run(engine, FILL_EVERY_SLOT, ONE_TWO_MANY)


# ---- 1. fp32: the same tokens as the eager engine and model.generate --------------------------------
def test_fp32_compiled_completions_equal_eager_and_generate(fp32_compiled, model, tokenizer):
    compiled = fp32_compiled.engine
    with no_new_graphs(), recorded_decode_logits(compiled) as logits:
        results, slots_per_step = run_schedule(compiled, JOIN_AND_LEAVE)
    eager, _ = run_schedule(Engine(model, tokenizer, MAX_BATCH, MAX_SEQ), JOIN_AND_LEAVE)
    assert compiled.decode.is_compiled
    assert max(len(s) for s in slots_per_step) == MAX_BATCH and len({len(s) for s in slots_per_step}) > 3
    assert tokens_of(results) == tokens_of(eager)
    for (request_id, completion), (_, prompt_ids, n) in zip(results, JOIN_AND_LEAVE, strict=True):
        assert completion.token_ids == reference(model, prompt_ids, n)
        expected = eager_decode_logits(model, prompt_ids, completion.token_ids)
        torch.testing.assert_close(torch.stack(logits[request_id]), expected, rtol=0, atol=1e-4)


# ---- 2. quantized (the int4 / int8 kernels inside the graph): bf16 rounding only ------------------
def within_bf16_rounding(got: torch.Tensor, expected: torch.Tensor, chosen: torch.Tensor) -> float:
    """Check compiled logits (N, V) against eager ones on the same inputs; returns the share of greedy
    choices that agree.

    Inductor fuses pointwise ops and rounds their fp32 result to bf16 once where eager rounds after every
    op, so the two differ by a few bf16 steps of the logits: measured 4.5 steps compiled, and up to 5.2
    between the eager engine and this eager reference (past 8 rows eager int8 takes a dense matmul);
    ``BF16_ULPS`` steps are tolerated. A greedy choice may then differ from eager's only where eager's
    logits are that close to a tie. Wrong kernels, scales or cache rows are off by whole units (1% off in
    every int4 linear: 15 steps).
    """
    step = 2.0 ** (math.floor(math.log2(expected.abs().max().item())) - 7)  # bf16 keeps 8 significant bits
    tolerance = BF16_ULPS * step
    torch.testing.assert_close(got, expected, rtol=0, atol=tolerance)
    chosen_logit = expected.gather(1, chosen[:, None])[:, 0]
    assert (expected.max(-1).values - chosen_logit).max() <= tolerance, "a greedy choice that is not a tie"
    return (expected.argmax(-1) == chosen).float().mean().item()


@pytest.mark.parametrize("scheme", ["int4", "int8"])
def test_quantized_compiled_logits_match_eager(scheme, request):
    run: CompiledEngine = request.getfixturevalue(f"{scheme}_compiled")
    model = request.getfixturevalue(f"{scheme}_model")
    with no_new_graphs(), recorded_decode_logits(run.engine) as logits:
        results, _ = run_schedule(run.engine, JOIN_AND_LEAVE)
    assert run.engine.decode.is_compiled and run.warmup_graphs >= 1  # compiled, not an eager fallback
    got, expected, chosen = [], [], []
    for (request_id, completion), (_, prompt_ids, _) in zip(results, JOIN_AND_LEAVE, strict=True):
        got += logits[request_id]
        expected.append(eager_decode_logits(model, prompt_ids, completion.token_ids))
        chosen += completion.token_ids[1:]
    agreement = within_bf16_rounding(torch.stack(got), torch.cat(expected), torch.tensor(chosen))
    assert agreement >= 0.95


# ---- 3. two graphs, then no recompiles whatever the width and cache length --------------------------
@pytest.mark.parametrize("compiled", ["fp32_compiled", "int4_compiled", "int8_compiled"])
def test_no_recompiles_after_one_row_and_many_rows(compiled, request):
    run: CompiledEngine = request.getfixturevalue(compiled)
    assert run.engine.decode.is_compiled
    assert run.warmup_graphs == 2  # one row; several rows
    assert run.later_graphs == 0  # widths 1..MAX_BATCH, caches up to 90 columns


def test_first_step_filling_every_slot_still_compiles_twice(other_compiled):
    """Its first many-row graph must not be specialised to rows == slots == cache columns (3); it must
    compile graphs of its own at all (not run the first model's)."""
    assert other_compiled.engine.decode.is_compiled
    assert (other_compiled.warmup_graphs, other_compiled.later_graphs) == (1, 1)  # many rows; then one


# ---- 4. no C++ compiler: one warning, then the eager step with the same results ---------------------
FALLBACK_SCRIPT = """
import json, logging, sys
from tokenizers import Tokenizer
from gptkit import GPT4LMHeadModel
from gptkit.engine import Engine, SamplingParams

warnings = []
handler = logging.Handler()
handler.emit = lambda record: warnings.append(record.getMessage())
logging.getLogger("gptkit.engine.compiled").addHandler(handler)
model = GPT4LMHeadModel.from_pretrained(sys.argv[1], dtype="float32")
engine = Engine(model, Tokenizer.from_file(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), compile=True)
prompts, max_tokens = json.loads(sys.argv[5])
completions = engine.generate(prompts, [SamplingParams(max_tokens=n, temperature=0) for n in max_tokens])
print(json.dumps({"is_compiled": engine.decode.is_compiled, "warnings": warnings,
                  "tokens": [c.token_ids for c in completions]}))
"""


def test_missing_compiler_falls_back_to_eager_with_one_warning(model, tokenizer, tmp_path):
    model.save_pretrained(tmp_path / "model")
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    compiler = tmp_path / "no-such-dir" / "g++"
    env = dict(os.environ, CXX=str(compiler), TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))
    env["OMP_NUM_THREADS"] = "1"  # CXX is read when torch._inductor loads; a fresh cache holds no kernels
    prompts, max_tokens = [p for _, p, _ in JOIN_AND_LEAVE], [n for _, _, n in JOIN_AND_LEAVE]
    args = [str(tmp_path / "model"), str(tmp_path / "tokenizer.json"), "4", str(MAX_SEQ)]
    run = subprocess.run(
        [sys.executable, "-c", FALLBACK_SCRIPT, *args, json.dumps([prompts, max_tokens])],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert not result["is_compiled"]
    assert len(result["warnings"]) == 1 and str(compiler) in result["warnings"][0], result["warnings"]
    params = [SamplingParams(max_tokens=n, temperature=0) for n in max_tokens]
    eager = Engine(model, tokenizer, 4, MAX_SEQ).generate(prompts, params)
    assert result["tokens"] == [c.token_ids for c in eager]


# ---- 5. idle rows inside the batch and reused slots -------------------------------------------------
IDLE_AND_REUSE: Schedule = [
    (0, prompt(90, 3), 2),  # slot 0 ends early: rows 1 and 2 go on around an idle row 0
    (0, prompt(91, 7), 14),
    (0, prompt(92, 1), 16),
    (0, prompt(93, 5), 3),  # slot 3 ends early too: the width shrinks to 3
    (6, prompt(94, 5), 6),  # reuses slot 0 mid-stream
]


def test_idle_rows_and_reused_slots_match_eager(fp32_compiled, model, tokenizer):
    compiled, eager = fp32_compiled.engine, Engine(model, tokenizer, MAX_BATCH, MAX_SEQ)
    assert not compiled.has_unfinished()
    for keys_or_values in compiled.cache.k + compiled.cache.v:
        keys_or_values.zero_()  # as fresh as the eager engine's, to compare them afterwards
    with no_new_graphs():
        results, slots_per_step = run_schedule(compiled, IDLE_AND_REUSE)
    eager_results, eager_slots = run_schedule(eager, IDLE_AND_REUSE)
    assert slots_per_step == eager_slots
    assert [1, 2] in slots_per_step and [0, 1, 2] in slots_per_step[slots_per_step.index([1, 2]) :]
    assert tokens_of(results) == tokens_of(eager_results)
    for (_, completion), (_, prompt_ids, n) in zip(results, IDLE_AND_REUSE, strict=True):
        assert completion.token_ids == reference(model, prompt_ids, n)
    for layer in range(model.config.n_layer):  # the graph wrote the same keys and values, in place
        torch.testing.assert_close(compiled.cache.k[layer], eager.cache.k[layer], rtol=0, atol=1e-5)
        torch.testing.assert_close(compiled.cache.v[layer], eager.cache.v[layer], rtol=0, atol=1e-5)


# ---- 6. models in one process keep their own graphs ------------------------------------------------
def test_a_second_model_gets_its_own_graphs(fp32_compiled, other_compiled, model, other_model, tokenizer):
    """Two models with the same graph structure, compiled in one process (in either order): each compiled
    engine gives its own model's eager tokens."""
    runs = [
        (fp32_compiled, model, MAX_BATCH, ALONE_THEN_THREE + WIDER_AND_LONGER),
        (other_compiled, other_model, 3, FILL_EVERY_SLOT + ONE_TWO_MANY),
    ]
    for run, eager_model, slots, schedules in runs:
        eager = Engine(eager_model, tokenizer, slots, MAX_SEQ)
        assert run.engine.decode.is_compiled
        assert run.tokens == [tokens_of(run_schedule(eager, s)[0]) for s in schedules]
    assert fp32_compiled.tokens[0] != other_compiled.tokens[1]  # ALONE on each: the models differ
