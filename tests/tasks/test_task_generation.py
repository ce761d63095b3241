"""Generation tasks: text-generation equals model.generate; translation and summarization use the chat
template and return text; batching equals one by one; bad input raises."""

from __future__ import annotations

import pytest

from gptkit import ContextLengthError, pipeline
from gptkit.tasks import TaskError
from gptkit.tasks.summarization import limit_words

ARTICLE = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
    "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889."
)


def test_text_generation_equals_greedy_generate(smollm2):
    model, tokenizer = smollm2
    prompt = "The quick brown fox"
    ids = tokenizer.encode(prompt, return_tensors="pt")
    expected = tokenizer.decode(model.generate(ids, max_new_tokens=12)[0], skip_special_tokens=True)
    generator = pipeline("text-generation", model, tokenizer)
    assert generator(prompt, max_new_tokens=12) == [{"generated_text": expected}]
    continuation = generator(prompt, max_new_tokens=12, return_full_text=False)[0]["generated_text"]
    assert prompt + continuation == expected


@pytest.mark.slow
def test_text_generation_batch_equals_one_by_one(smollm2):
    generator = pipeline("text-generation", *smollm2, max_new_tokens=8)
    prompts = ["Once upon a time", "The capital of France is", "def add(a, b):"]
    assert generator(prompts) == [generator(p)[0] for p in prompts]


def test_text_generation_answers_a_chat(smollm2):
    generator = pipeline("text-generation", *smollm2)
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    result = generator(chat, max_new_tokens=16)[0]["generated_text"]
    assert result[:1] == chat and result[1]["role"] == "assistant" and "Paris" in result[1]["content"]


def test_translation_uses_the_chat_template_and_returns_text(smollm2):
    translator = pipeline("translation_en_to_fr", *smollm2)
    prompt = translator.render_for("I like cheese.")
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
    assert "English text to French" in prompt
    result = translator(["I like cheese.", "Good morning!"], max_new_tokens=24)
    assert len(result) == 2 and all(
        r["translation_text"] and r["translation_text"] == r["translation_text"].strip() for r in result
    )
    named = pipeline("translation", *smollm2, src_lang="English", tgt_lang="French")
    assert named.render_for("I like cheese.") == prompt


def test_summarization_respects_max_words(smollm2):
    summarizer = pipeline("summarization", *smollm2)
    prompt = summarizer.render_for(ARTICLE, max_words=15)
    assert "<|im_start|>user\nSummarize the following text in at most 15 words." in prompt
    summary = summarizer(ARTICLE, max_words=15)[0]["summary_text"]
    assert summary and len(summary.split()) <= 15 and summary.endswith((".", "!", "?", "…"))


@pytest.mark.parametrize(
    ("text", "max_words", "expected"),
    [
        ("The cat sat. The dog ran far away today.", 5, "The cat sat."),  # was cut to "The cat sat. The dog"
        ("The cat sat. The dog ran far away today.", 9, "The cat sat. The dog ran far away today."),
        ("The cat sat. The dog ran", 20, "The cat sat."),  # an unfinished last sentence goes
        ('He said "hi." Then he left.', 4, 'He said "hi."'),
        ("One two three four five six seven, eight nine.", 6, "One two three four five six…"),
        ("No sentence end here", 10, "No sentence end here"),
    ],
)
def test_summaries_end_at_a_sentence_boundary_within_max_words(text, max_words, expected):
    assert limit_words(text, max_words) == expected


def test_a_base_model_gets_few_shot_translation_prompts(smollm2, base_tokenizer):
    translator = pipeline("translation", smollm2[0], base_tokenizer, tgt_lang="fr")
    prompt = translator.render_for("I like cheese.")
    assert "<|im_start|>" not in prompt
    assert "English: Where is the train station?\nFrench: Où est la gare ?" in prompt
    assert prompt.endswith("English: I like cheese.\nFrench:")
    assert translator("I like cheese.", max_new_tokens=16)[0]["translation_text"]


def test_prompt_override_and_templates(smollm2):
    summarizer = pipeline("summarization", *smollm2, prompt="TL;DR of: {text}", system="Be terse.")
    prompt = summarizer.render_for(ARTICLE)
    assert "<|im_start|>system\nBe terse.<|im_end|>" in prompt and f"TL;DR of: {ARTICLE}" in prompt
    with pytest.raises(TaskError, match="field it is not given"):
        summarizer.render_for(ARTICLE, prompt="{nonsense}")
    with pytest.raises(TaskError, match="unknown template field"):
        summarizer.render_for(ARTICLE, templates={"colour": "x"})


def test_bad_generation_input_raises(smollm2):
    translator = pipeline("translation", *smollm2)
    with pytest.raises(TaskError, match="tgt_lang"):
        translator("Hello")
    with pytest.raises(TaskError, match="empty"):
        pipeline("summarization", *smollm2)("")
    with pytest.raises(TaskError, match="max_words"):
        pipeline("summarization", *smollm2)(ARTICLE, max_words=0)


def test_an_input_longer_than_the_window_raises_context_length_error(smollm2):
    long_text = "word " * (smollm2[0].config.context_length + 10)
    with pytest.raises(ContextLengthError, match="context window"):
        pipeline("summarization", *smollm2)(long_text)
    with pytest.raises(ContextLengthError, match="does not truncate"):
        pipeline("sentiment-analysis", *smollm2)(long_text)
