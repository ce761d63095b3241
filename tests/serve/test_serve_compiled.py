"""``create_app(..., compile=True)`` (``gptkit serve --compile``): compiled at startup, answers like eager."""

from __future__ import annotations

import openai
import pytest

from gptkit.engine import Engine, SamplingParams
from gptkit.serve import create_app, serve_in_thread

pytestmark = pytest.mark.slow  # compiles the tiny model's decode step


def test_compiled_server_answers_like_the_eager_engine(wide_tiny_llama, byte_tokenizer, single_thread):
    options = dict(max_batch_size=4, max_seq_len=64)
    app = create_app(wide_tiny_llama, byte_tokenizer, model_name="tiny", compile=True, **options)
    assert app.state.gptkit.driver.engine.decode.is_compiled  # warmed up before serving, no fallback
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
    with serve_in_thread(app) as running:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="none", max_retries=0)
        response = client.completions.create(model="tiny", prompt=prompts, max_tokens=12, temperature=0)
    served = [choice.text for choice in sorted(response.choices, key=lambda c: c.index)]
    eager = Engine(wide_tiny_llama, byte_tokenizer, **options).generate(
        prompts, SamplingParams(max_tokens=12, temperature=0)
    )
    assert served == [c.text for c in eager]
    assert any(text for text in served)
