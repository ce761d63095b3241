"""TrainConfig: YAML + typed overrides, unknown keys named with the closest valid one, and the CLI."""

from __future__ import annotations

import pytest
import yaml
from conftest import tiny_config

from gptkit.cli import main
from gptkit.errors import ConfigError
from gptkit.train import TrainConfig, load_config
from gptkit.train.config import parse_overrides


def test_overrides_are_typed_from_the_dataclass():
    values = parse_overrides(
        ["--lr=3e-4", "--max-iters", "10", "--compile", "--betas=[0.9, 0.95]", "--block_size=none",
         "--model={preset: gpt-nano, n_layer: 2}", "--init_from=gpt2", "--resume=false"]
    )  # fmt: skip
    assert values == {
        "lr": 3e-4, "max_iters": 10, "compile": True, "betas": (0.9, 0.95), "block_size": None,
        "model": {"preset": "gpt-nano", "n_layer": 2}, "init_from": "gpt2", "resume": False,
    }  # fmt: skip
    assert parse_overrides(["--model=gpt2"]) == {"model": "gpt2"}


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(ConfigError, match="'learning_rat'; did you mean 'lr'"):
        TrainConfig.from_dict({"learning_rat": 1e-3})
    with pytest.raises(ConfigError, match="did you mean 'max_iters'"):
        parse_overrides(["--max_iter=5"])
    with pytest.raises(ConfigError, match="not a valid int"):
        parse_overrides(["--batch_size=big"])


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"lr": 1e-3, "batch_size": 4, "distributed": "none"}))
    config = load_config(path, ["--batch_size=8"])
    assert (config.lr, config.batch_size, config.decay_iters) == (1e-3, 8, config.max_iters)
    assert config.model_config().n_layer == 4  # gpt-nano
    with pytest.raises(ConfigError, match="distributed"):
        load_config(path, {"distributed": "mpi"})


def test_cli_train_and_export(char_data, tmp_path, capsys):
    config = tiny_config(char_data, tmp_path / "out", max_iters=4, progress=True)
    config["model"] = {**config["model"], "bias": True}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--checkpoint_interval=2", "--export", str(tmp_path / "hf")]) == 0
    out = capsys.readouterr().out
    assert "final val loss" in out and "tokens/s" in out and "MFU" in out
    assert (tmp_path / "out" / "ckpt-000004" / "COMPLETE").is_file()
    assert (tmp_path / "hf" / "model.safetensors").is_file()


def test_cli_unknown_key_error(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("max_itres: 5\n")
    assert main(["train", str(path)]) == 1
    assert "unknown training config key 'max_itres'; did you mean 'max_iters'?" in capsys.readouterr().err
