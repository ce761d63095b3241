"""Load a Hugging Face model directory's tokenizer: tokenizer.json plus the config files around it.

BOS/EOS insertion comes from tokenizer.json's post-processor alone; transformers 5 ignores the
`add_bos_token` flag of a generic tokenizer_config.json too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer

from gptkit.errors import TokenizerError
from gptkit.tokenizer.backend import Backend
from gptkit.tokenizer.char import CharBackend, is_char_level
from gptkit.tokenizer.hf_backend import TokenizersBackend, load_tokenizer_json
from gptkit.tokenizer.settings import SPECIAL_ROLES, TokenizerSettings

HUGE_MAX_LENGTH = 10**12  # transformers' placeholder for "no limit"


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from path, or {} when the file is absent."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"{path}: cannot read JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise TokenizerError(f"{path}: expected a JSON object")
    return data


def _token_text(value: Any) -> str | None:
    """A special token as written in tokenizer_config.json: a string or {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _chat_template(directory: Path, config: dict[str, Any]) -> str | None:
    """The default chat template: chat_template.jinja, chat_template.json or tokenizer_config.json."""
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = _read_json(directory / "chat_template.json").get("chat_template", config.get("chat_template"))
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def _special_from_ids(directory: Path, backend: Backend) -> dict[str, str]:
    """Special tokens named only by id in generation_config.json / config.json (first id of a list)."""
    found: dict[str, str] = {}
    for name in ("generation_config.json", "config.json"):
        config = _read_json(directory / name)
        for role in ("bos_token", "eos_token", "pad_token"):
            token_id = config.get(f"{role}_id")
            token_id = token_id[0] if isinstance(token_id, list) and token_id else token_id
            token = backend.id_to_token(token_id) if isinstance(token_id, int) else None
            if token is not None:
                found.setdefault(role, token)
    return found


def _add_missing_special_tokens(tokenizer: Tokenizer, special: dict[str, str | None]) -> None:
    """Named special tokens absent from tokenizer.json get added as special tokens, as transformers does."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    missing = [t for t in special.values() if t is not None and t not in vocab]
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in dict.fromkeys(missing)]
    )


def load_hf_dir(directory: Path) -> tuple[Backend, TokenizerSettings]:
    """The backend and settings of an HF directory holding tokenizer.json (+ tokenizer_config.json)."""
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise TokenizerError(
            f"{directory} has no tokenizer.json; gptkit reads only the fast-tokenizer format"
        )
    tokenizer = load_tokenizer_json(path)
    config = _read_json(directory / "tokenizer_config.json")
    special_map = _read_json(directory / "special_tokens_map.json")
    special = {role: _token_text(config.get(role, special_map.get(role))) for role in SPECIAL_ROLES}
    _add_missing_special_tokens(tokenizer, special)
    backend = (
        CharBackend.from_tokenizer(tokenizer) if is_char_level(tokenizer) else TokenizersBackend(tokenizer)
    )
    for role, token in _special_from_ids(directory, backend).items():
        special[role] = special[role] or token
    max_length = config.get("model_max_length")
    settings = TokenizerSettings(
        special=special,
        chat_template=_chat_template(directory, config),
        model_max_length=max_length if isinstance(max_length, int) and max_length < HUGE_MAX_LENGTH else None,
    )
    if config.get("padding_side") in ("left", "right"):
        settings.padding_side = config["padding_side"]
    if config.get("truncation_side") in ("left", "right"):
        settings.truncation_side = config["truncation_side"]
    return backend, settings
