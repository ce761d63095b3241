"""Where a tokenizer comes from: a registered name or path -> (backend, settings) for GPT4Tokenizer."""

from __future__ import annotations

from pathlib import Path

from gptkit.tokenizer.backend import Backend
from gptkit.tokenizer.settings import TokenizerSettings


def load_backend(name_or_path: str | Path, pre_tokenizer: str | None) -> tuple[Backend, TokenizerSettings]:
    """Resolve a name or path with the registry and build its backend and settings."""
    from gptkit.registry import SourceKind, resolve

    source = resolve(name_or_path, tokenizer_only=True)
    if source.kind is SourceKind.TIKTOKEN:
        return _load_cl100k()
    if source.kind is SourceKind.GGUF:
        return _load_gguf(source.path, pre_tokenizer)
    from gptkit.tokenizer.hf_dir import load_hf_dir

    return load_hf_dir(source.path)


def _load_cl100k() -> tuple[Backend, TokenizerSettings]:
    """GPT-4's tokenizer: <|endoftext|> ends text; there is no BOS, pad token or chat template."""
    from gptkit.tokenizer.cl100k import EOS_TOKEN, TiktokenBackend

    settings = TokenizerSettings(model_max_length=8192)
    settings.special["eos_token"] = EOS_TOKEN
    return TiktokenBackend(), settings


def _load_gguf(path: Path, pre_tokenizer: str | None) -> tuple[Backend, TokenizerSettings]:
    """The vocabulary embedded in a GGUF file."""
    from gptkit.tokenizer.gguf_vocab import build_tokenizer, read_tokenizer_metadata, tokenizer_info
    from gptkit.tokenizer.hf_backend import TokenizersBackend

    meta = read_tokenizer_metadata(path)
    backend = TokenizersBackend(build_tokenizer(meta, pre_tokenizer))
    info = tokenizer_info(meta)
    return backend, TokenizerSettings(special=dict(info.special_tokens), chat_template=info.chat_template)
