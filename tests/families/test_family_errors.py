"""Bad family inputs give typed errors: unknown architectures, missing or miscounted expert tensors."""

from __future__ import annotations

import json

import pytest
from family_models import save_hf, tiny_hf, write_family_gguf

from gptkit import GPT4LMHeadModel
from gptkit.errors import ConfigError, WeightsError
from gptkit.weights.gguf_config import config_from_gguf
from gptkit.weights.hf_config import config_from_hf


def _edit_config(directory, **changes):
    path = directory / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_unknown_architecture_strings():
    with pytest.raises(ConfigError, match="GGUF architecture 'gemma9' is not supported"):
        config_from_gguf({"general.architecture": "gemma9"})
    with pytest.raises(ConfigError, match="model_type 'qwen9_moe' is not supported"):
        config_from_hf({"model_type": "qwen9_moe"})


def test_missing_expert_tensor_in_hf_checkpoint(tmp_path):
    from safetensors.torch import load_file, save_file

    directory = save_hf(tiny_hf("mixtral"), tmp_path)
    tensors = load_file(directory / "model.safetensors")
    del tensors["model.layers.1.block_sparse_moe.experts.3.w2.weight"]
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WeightsError, match=r"lacks 1 tensor.*experts\.3\.w2"):
        GPT4LMHeadModel.from_pretrained(directory)


@pytest.mark.parametrize(("experts", "message"), [(8, "lacks 24 tensor"), (2, "unexpected tensor")])
def test_expert_count_disagreeing_with_hf_tensors(tmp_path, experts, message):
    directory = save_hf(tiny_hf("qwen3moe"), tmp_path)
    _edit_config(directory, num_experts=experts, num_local_experts=experts)
    with pytest.raises(WeightsError, match=message):
        GPT4LMHeadModel.from_pretrained(directory)


def test_gguf_expert_problems(tmp_path):
    import gguf

    path = write_family_gguf(tiny_hf("qwen3moe"), "qwen3moe", tmp_path / "moe.gguf")
    reader = gguf.GGUFReader(path)
    metadata = {field.name: field.contents() for field in reader.fields.values()}
    names = {t.name for t in reader.tensors}
    with pytest.raises(ConfigError, match="n_experts_per_token=9"):
        config_from_gguf({**metadata, "qwen3moe.expert_used_count": 9}, names)
    with pytest.raises(ConfigError, match="no block has a router"):
        config_from_gguf(metadata, {n for n in names if "gate_inp" not in n})

    _rewrite_gguf(reader, tmp_path / "count.gguf", {"qwen3moe.expert_count": 8})
    with pytest.raises(WeightsError, match=r"ffn_gate_inp.weight' has shape \(4, 64\).*implies \(8, 64\)"):
        GPT4LMHeadModel.from_pretrained(tmp_path / "count.gguf")
    _rewrite_gguf(reader, tmp_path / "missing.gguf", {}, drop="blk.1.ffn_up_exps.weight")
    with pytest.raises(WeightsError, match=r"lacks tensors.*blk\.1\.ffn_up_exps"):
        GPT4LMHeadModel.from_pretrained(tmp_path / "missing.gguf")


def _rewrite_gguf(reader, path, changes: dict, drop: str | None = None):
    """A copy of a GGUF file with some uint32 keys changed and one tensor left out."""
    import gguf

    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(str(path), arch)
    for field in reader.fields.values():
        if field.name.startswith(f"{arch}."):
            value = changes.get(field.name, field.contents())
            writer.add_uint32(field.name, value) if isinstance(value, int) else writer.add_float32(
                field.name, value
            )
    for tensor in reader.tensors:
        if tensor.name != drop:
            writer.add_tensor(tensor.name, tensor.data.copy().reshape(tuple(reversed(tensor.shape.tolist()))))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
