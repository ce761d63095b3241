"""Bad Hugging Face directories raise typed errors that name the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gptkit import ConfigError, GPT4Config, GPT4LMHeadModel, ModelNotFoundError, WeightsError
from gptkit.weights.safetensors_io import INDEX_FILE, WEIGHTS_FILE, load_hf_state, save_pretrained

TINY_LLAMA = GPT4Config(
    vocab_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, intermediate_size=48, context_length=32,
    positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, tie_word_embeddings=False,
)  # fmt: skip
K_PROJ = "model.layers.0.self_attn.k_proj.weight"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-llama")
    save_pretrained(GPT4LMHeadModel(TINY_LLAMA), directory)
    return directory


@pytest.fixture
def checkpoint(saved, tmp_path) -> Path:
    """A fresh copy of a valid single-file checkpoint for each test to damage."""
    return Path(shutil.copytree(saved, tmp_path / "model"))


@pytest.fixture
def sharded(tmp_path) -> Path:
    torch.manual_seed(0)
    save_pretrained(GPT4LMHeadModel(TINY_LLAMA), tmp_path, max_shard_size="8KB")
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) >= 3
    return tmp_path


def rewrite_weights(path: Path, change) -> None:
    """Load a safetensors file, let ``change`` edit the dict, write it back."""
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def edit_config(directory: Path, **changes) -> None:
    path = directory / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_valid_checkpoint_loads(checkpoint, sharded):
    assert load_hf_state(checkpoint)[0] == TINY_LLAMA
    assert load_hf_state(sharded)[0] == TINY_LLAMA


def test_truncated_file(checkpoint):
    weights = checkpoint / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(WeightsError, match=r"model\.safetensors.*(corrupt or truncated)"):
        load_hf_state(checkpoint)


def test_corrupt_header(checkpoint):
    weights = checkpoint / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[8:24] = b"\xff" * 16  # the JSON header now starts with garbage
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"model\.safetensors is not a valid safetensors file"):
        load_hf_state(checkpoint)


def test_header_length_beyond_file(checkpoint):
    weights = checkpoint / WEIGHTS_FILE
    weights.write_bytes((10**9).to_bytes(8, "little") + weights.read_bytes()[8:])
    with pytest.raises(WeightsError, match=r"model\.safetensors"):
        load_hf_state(checkpoint)


def test_wrong_shape(checkpoint):
    rewrite_weights(checkpoint / WEIGHTS_FILE, lambda t: t.update({K_PROJ: torch.zeros(8, 32)}))
    with pytest.raises(WeightsError, match=rf"'{K_PROJ}' has shape \(8, 32\).*implies \(16, 32\)"):
        load_hf_state(checkpoint)


def test_config_disagreeing_with_weights(checkpoint):
    edit_config(checkpoint, intermediate_size=40)
    with pytest.raises(WeightsError, match=r"gate_proj\.weight' has shape \(48, 32\).*implies \(40, 32\)"):
        load_hf_state(checkpoint)


def test_missing_tensor(checkpoint):
    rewrite_weights(checkpoint / WEIGHTS_FILE, lambda t: t.pop(K_PROJ))
    with pytest.raises(WeightsError, match=rf"lacks 1 tensor.*'{K_PROJ}'"):
        load_hf_state(checkpoint)


def test_unexpected_tensor(checkpoint):
    rewrite_weights(
        checkpoint / WEIGHTS_FILE, lambda t: t.update({"model.layers.0.extra.weight": torch.zeros(2)})
    )
    with pytest.raises(WeightsError, match=r"unexpected tensor.*'model\.layers\.0\.extra\.weight'"):
        load_hf_state(checkpoint)


def test_bias_the_config_does_not_declare(checkpoint):
    bias = "model.layers.1.self_attn.q_proj.bias"
    rewrite_weights(checkpoint / WEIGHTS_FILE, lambda t: t.update({bias: torch.zeros(32)}))
    with pytest.raises(WeightsError, match=rf"unexpected tensor.*'{bias}'.*config\.json"):
        load_hf_state(checkpoint)


def test_unsupported_dtype(checkpoint):
    rewrite_weights(checkpoint / WEIGHTS_FILE, lambda t: t.update({K_PROJ: t[K_PROJ].double()}))
    with pytest.raises(WeightsError, match=rf"'{K_PROJ}'.*dtype F64"):
        load_hf_state(checkpoint)


def test_duplicate_tensor_across_shards(sharded):
    first, second = sorted(sharded.glob("model-*-of-*.safetensors"))[:2]
    name, tensor = next(iter(load_file(first).items()))
    rewrite_weights(second, lambda t: t.update({name: tensor}))
    with pytest.raises(WeightsError, match=rf"'{name}' appears in both {first.name} and {second.name}"):
        load_hf_state(sharded)


def test_index_disagreeing_with_shards(sharded):
    index = json.loads((sharded / INDEX_FILE).read_text())
    shards = sorted(set(index["weight_map"].values()))
    crowded = next(s for s in shards if list(index["weight_map"].values()).count(s) > 1)
    name = next(n for n, s in index["weight_map"].items() if s == crowded)  # its shard stays listed
    index["weight_map"][name] = next(s for s in shards if s != index["weight_map"][name])
    (sharded / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(WeightsError, match=rf"'{name}' is stored in .* but {INDEX_FILE} lists it in"):
        load_hf_state(sharded)


def test_missing_shard(sharded):
    shard = sorted(sharded.glob("model-*-of-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(ModelNotFoundError, match=rf"missing .*{shard.name}"):
        load_hf_state(sharded)


def test_pickle_checkpoint_is_refused(checkpoint):
    (checkpoint / WEIGHTS_FILE).unlink()
    torch.save({"model.embed_tokens.weight": torch.zeros(2)}, checkpoint / "pytorch_model.bin")
    with pytest.raises(WeightsError, match=r"pytorch_model\.bin.*pickle.*safetensors"):
        GPT4LMHeadModel.from_pretrained(checkpoint)


def test_no_weights_at_all(checkpoint):
    (checkpoint / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelNotFoundError, match=r"neither model\.safetensors nor"):
        load_hf_state(checkpoint)


def test_no_config(checkpoint):
    (checkpoint / "config.json").unlink()
    with pytest.raises(ModelNotFoundError, match=r"has no config\.json"):
        load_hf_state(checkpoint)


def test_unsupported_model_type(checkpoint):
    edit_config(checkpoint, model_type="gpt_neox")
    with pytest.raises(ConfigError, match=r"model_type 'gpt_neox' is not supported"):
        load_hf_state(checkpoint)


def test_unsupported_rope_scaling(checkpoint):
    edit_config(checkpoint, rope_parameters={"rope_type": "dynamic", "factor": 4.0, "rope_theta": 1e4})
    with pytest.raises(ConfigError, match=r"rope scaling type 'dynamic' is not supported"):
        load_hf_state(checkpoint)


def test_invalid_config_json(checkpoint):
    (checkpoint / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config\.json is not valid JSON"):
        load_hf_state(checkpoint)
