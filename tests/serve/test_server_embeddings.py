"""/v1/embeddings through the official openai client: shapes, normalisation, base64, batching, errors."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest

import gptkit

TEXTS = ["The cat sat on the mat.", "A completely different sentence about rockets and fuel.", "hi"]


def _floats(client, **options):
    response = client.embeddings.create(model=options.pop("model", gptkit.registry.DEFAULT_MODEL), **options)
    return response, np.array([item.embedding for item in sorted(response.data, key=lambda d: d.index)])


def test_shapes_normalisation_usage_and_identical_inputs(openai_client, bundled_server):
    response, vectors = _floats(openai_client, input=[*TEXTS, TEXTS[0]], encoding_format="float")
    width = bundled_server.model.config.n_embd
    assert vectors.shape == (4, width) and [d.index for d in response.data] == [0, 1, 2, 3]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[3])  # identical inputs, identical vectors
    tokens = sum(len(bundled_server.tokenizer.encode(t)) for t in [*TEXTS, TEXTS[0]])
    assert response.usage.prompt_tokens == tokens == response.usage.total_tokens
    assert response.model == bundled_server.model_name


def test_base64_decodes_to_the_same_floats(openai_client, bundled_server):
    _, floats = _floats(openai_client, input=TEXTS, encoding_format="float")
    raw = httpx.post(
        bundled_server.base_url + "/embeddings",
        json={"input": TEXTS, "encoding_format": "base64"},
        headers={"Authorization": f"Bearer {bundled_server.api_key}"},
        timeout=60,
    ).json()
    decoded = np.array([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in raw["data"]])
    np.testing.assert_array_equal(decoded, floats.astype(np.float32))
    default = openai_client.embeddings.create(
        model=bundled_server.model_name, input=TEXTS
    )  # client asks base64
    np.testing.assert_array_equal(np.array([d.embedding for d in default.data], dtype=np.float32), decoded)


def test_a_batch_equals_single_calls_and_token_ids_equal_text(openai_client, bundled_server):
    _, batch = _floats(openai_client, input=TEXTS, encoding_format="float")
    singles = np.concatenate([_floats(openai_client, input=t, encoding_format="float")[1] for t in TEXTS])
    np.testing.assert_allclose(batch, singles, atol=1e-4)
    ids = [bundled_server.tokenizer.encode(t) for t in TEXTS]
    _, from_ids = _floats(openai_client, input=ids, encoding_format="float")
    np.testing.assert_allclose(from_ids, batch, atol=1e-6)
    _, one_list = _floats(openai_client, input=ids[0], encoding_format="float")
    np.testing.assert_allclose(one_list[0], batch[0], atol=1e-4)  # alone vs padded batch: kernel rounding
    library = gptkit.embed(TEXTS, bundled_server.model, bundled_server.tokenizer).numpy()
    np.testing.assert_allclose(library, batch, atol=1e-6)


def test_dimensions_truncate_and_renormalise(openai_client, bundled_server):
    _, full = _floats(openai_client, input=TEXTS, encoding_format="float")
    _, short = _floats(openai_client, input=TEXTS, encoding_format="float", dimensions=64)
    assert short.shape == (3, 64)
    expected = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(short, expected, atol=1e-5)


def test_last_token_pooling_is_available_and_different(bundled_server):
    headers = {"Authorization": f"Bearer {bundled_server.api_key}"}
    body = {"input": TEXTS[0], "pooling": "last"}
    last = httpx.post(bundled_server.base_url + "/embeddings", json=body, headers=headers, timeout=60).json()
    mean = httpx.post(
        bundled_server.base_url + "/embeddings", json={"input": TEXTS[0]}, headers=headers
    ).json()
    assert last["pooling"] == "last" and mean["pooling"] == "mean"
    assert not np.allclose(last["data"][0]["embedding"], mean["data"][0]["embedding"])
    card = httpx.get(bundled_server.base_url + "/models", headers=headers).json()["data"][0]
    assert card["embedding"] == {
        "pooling": "mean",
        "poolings": ["mean", "last"],
        "dimensions": 576,
        "normalized": True,
    }


@pytest.mark.parametrize(
    "options, param, code",
    [
        ({"input": "x", "dimensions": 577}, "dimensions", None),
        ({"input": "x", "dimensions": 0}, "dimensions", None),
        ({"input": ""}, "input", None),
        ({"input": []}, "input", None),
        ({"input": [[1, 2], []]}, "input", None),
        ({"input": [[1, 10**9]]}, "input", None),
        ({"input": [[1] * 5000]}, "input", "context_length_exceeded"),
        ({"input": "x " * 3000}, "input", "context_length_exceeded"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(openai_client, options, param, code):
    with pytest.raises(openai.BadRequestError) as error:
        openai_client.embeddings.create(
            model=gptkit.registry.DEFAULT_MODEL, encoding_format="float", **options
        )
    assert error.value.body["param"] == param
    assert error.value.body["code"] == code


def test_an_unknown_model_is_404(openai_client):
    with pytest.raises(openai.NotFoundError) as error:
        openai_client.embeddings.create(model="no-such-model", input="x")
    assert error.value.body["code"] == "model_not_found"
