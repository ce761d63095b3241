"""gptkit.checks: the shared int and number checks, and that the validators use them (bools are refused)."""

from __future__ import annotations

import pytest

from gptkit import GenerationError
from gptkit.checks import is_int, is_number
from gptkit.engine.params import SamplingParams
from gptkit.generation import GenerationConfig


def test_bools_are_neither_ints_nor_numbers():
    assert [is_int(v) for v in (3, -1, True, 2.0, "3", None)] == [True, True, False, False, False, False]
    assert [is_number(v) for v in (3, 2.5, float("nan"), False, "1", None)] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


@pytest.mark.parametrize(
    "options", [{"max_new_tokens": True}, {"eos_token_id": [1, False]}, {"temperature": True}]
)
def test_generation_config_refuses_bools(options):
    with pytest.raises(GenerationError):
        GenerationConfig(**options)


def test_sampling_params_refuse_bool_token_ids_and_biases():
    with pytest.raises(GenerationError, match="logit_bias"):
        SamplingParams(logit_bias={True: 1.0})
    with pytest.raises(GenerationError, match="logit_bias"):
        SamplingParams(logit_bias={3: True})
