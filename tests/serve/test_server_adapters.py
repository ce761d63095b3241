"""LoRA adapters served per request through the official openai client: listed in /v1/models, chosen by
``model``, batched with the base model; unknown names are 404; ``gptkit serve --lora`` refuses misfits."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from gptkit.cli import main
from gptkit.engine import Engine, SamplingParams
from gptkit.engine import engine as engine_module
from gptkit.model.adapters import BASE
from gptkit.serve import create_app, serve_in_thread
from gptkit.weights.adapters import load_adapter

PROMPTS = [[5, 6, 7, 8], [9, 10, 11], [12, 13]]
TARGETS = ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")


@pytest.fixture(scope="module")
def served(wide_tiny_llama, byte_tokenizer, peft_adapter_writer, tmp_path_factory):
    """The wide tiny Llama (a copy) with PEFT adapters "alpha" and "beta", served as "tiny"."""
    model = copy.deepcopy(wide_tiny_llama)
    root = tmp_path_factory.mktemp("adapters")
    for seed, name in enumerate(["alpha", "beta"]):
        peft_adapter_writer(
            model.config, root / name, TARGETS, rank=2 + 2 * seed, alpha=8, seed=seed, std=0.3
        )
        load_adapter(model, root / name, name=name)
    app = create_app(model, byte_tokenizer, model_name="tiny", max_batch_size=8, max_seq_len=64)
    with serve_in_thread(app) as running:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="none", max_retries=0)
        yield client, model, byte_tokenizer


def test_adapters_are_listed_with_their_base_model(served):
    client, _, _ = served
    cards = {card.id: card for card in client.models.list().data}
    assert list(cards) == ["tiny", "alpha", "beta"]
    assert cards["alpha"].parent == "tiny" and cards["tiny"].parent is None
    assert client.models.retrieve("beta").id == "beta"


def test_requests_for_two_adapters_and_the_base_model_batch_together_and_equal_running_alone(
    served, single_thread, monkeypatch
):
    client, model, tokenizer = served
    names = ["tiny", "alpha", "beta"] * 2
    steps = []
    real = engine_module.use_adapters
    monkeypatch.setattr(
        engine_module, "use_adapters", lambda m, slots: steps.append(set(slots)) or real(m, slots)
    )

    def complete(name: str):
        response = client.completions.create(model=name, prompt=PROMPTS, max_tokens=10, temperature=0)
        return [choice.text for choice in sorted(response.choices, key=lambda c: c.index)]

    with ThreadPoolExecutor(len(names)) as pool:  # concurrent: the engine decodes them in shared steps
        answers = list(pool.map(complete, names))
    alone = Engine(model, tokenizer, max_batch_size=1)
    greedy = SamplingParams(max_tokens=10, temperature=0)
    for name, texts in zip(names, answers, strict=True):
        adapter = None if name == "tiny" else name
        expected = [alone.generate([p], greedy, adapters=[adapter])[0].text for p in PROMPTS]
        assert texts == expected, name
    assert answers[0] != answers[1] and answers[1] != answers[2]  # the adapters change the outputs
    assert any({BASE, 0, 1} <= slots for slots in steps)  # some forward held base, alpha and beta rows


def test_embeddings_take_the_adapter_too(served):
    client, _, _ = served
    base = client.embeddings.create(model="tiny", input=[PROMPTS[0]]).data[0].embedding
    tuned = client.embeddings.create(model="alpha", input=[PROMPTS[0]]).data[0].embedding
    assert base != tuned


def test_an_unknown_adapter_is_404_model_not_found(served):
    client, _, _ = served
    with pytest.raises(openai.NotFoundError) as error:
        client.completions.create(model="gamma", prompt=PROMPTS[0], max_tokens=2)
    assert error.value.body["code"] == "model_not_found" and error.value.body["param"] == "model"
    assert "'alpha'" in error.value.body["message"]


@pytest.mark.slow  # loads the bundled model
def test_serve_refuses_to_start_with_an_adapter_that_does_not_fit(
    wide_tiny_llama, peft_adapter_writer, tmp_path, capsys, bundled_gguf
):
    peft_adapter_writer(wide_tiny_llama.config, tmp_path / "small", TARGETS)  # made for another model
    assert main(["serve", "--port", "0", "--lora", f"small={tmp_path / 'small'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "this model needs" in err[0], err
    assert main(["serve", "--port", "0", "--lora", "nameless"]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
