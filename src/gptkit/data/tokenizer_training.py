"""Train tokenizers on text files: byte-level BPE with GPT-4's split regex, or a character vocabulary.

The BPE trainer is `tokenizers`' BpeTrainer over GPT-4's pre-tokenization (the cl100k regex, in the
Oniguruma spelling Llama 3's tokenizer.json uses, then GPT-2's byte alphabet), starting from all 256
bytes so any text encodes. Files are streamed in the same line-start-cut chunks ``gptkit data prepare``
encodes, so merges are learned on exactly the pieces encoding produces (blank lines included).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from gptkit.data.documents import expand_inputs, read_text_chunks
from gptkit.errors import TokenizerError
from gptkit.tokenizer.char import CharBackend, vocabulary
from gptkit.tokenizer.hf_backend import TokenizersBackend
from gptkit.tokenizer.pretokenize import LLAMA3 as GPT4_SPLIT_PATTERN  # Llama 3 reuses cl100k's regex
from gptkit.tokenizer.settings import TokenizerSettings
from gptkit.tokenizer.tokenizer import GPT4Tokenizer

DEFAULT_SPECIAL_TOKENS = ("<|endoftext|>",)
BYTE_ALPHABET = 256
TRAIN_CHUNK_CHARS = 1 << 16  # small pieces let `tokenizers` count pre-tokens on all cores


def _text_chunks(files: Sequence[str | Path]) -> Iterator[str]:
    """Every input file's text, in chunks cut at line starts."""
    for path in expand_inputs(files):
        yield from read_text_chunks(path, TRAIN_CHUNK_CHARS)


def gpt4_byte_level_bpe() -> Tokenizer:
    """An empty byte-level BPE tokenizer that pre-tokenizes like GPT-4 (cl100k)."""
    tokenizer = Tokenizer(models.BPE())
    split = pre_tokenizers.Split(Regex(GPT4_SPLIT_PATTERN), behavior="isolated")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _save(backend, special_tokens: Sequence[str], out_dir: str | Path) -> GPT4Tokenizer:
    """Save a trained backend with eos = the first special token, and load it back from disk."""
    settings = TokenizerSettings()
    settings.special["eos_token"] = special_tokens[0] if special_tokens else None
    GPT4Tokenizer(backend, settings).save_pretrained(out_dir)
    return GPT4Tokenizer.from_pretrained(out_dir)


def _check_special_tokens(special_tokens: Sequence[str]) -> list[str]:
    tokens = list(special_tokens)
    if any(not isinstance(t, str) or not t for t in tokens) or len(set(tokens)) != len(tokens):
        raise TokenizerError(f"special tokens must be distinct non-empty strings, got {tokens}")
    return tokens


def train_bpe(
    files: Sequence[str | Path],
    vocab_size: int,
    out_dir: str | Path,
    special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
    *,
    show_progress: bool = True,
) -> GPT4Tokenizer:
    """Train byte-level BPE (GPT-4 split regex) to vocab_size tokens, specials included; save it to out_dir."""
    special = _check_special_tokens(special_tokens)
    smallest = BYTE_ALPHABET + len(special)
    if not isinstance(vocab_size, int) or vocab_size < smallest:
        raise TokenizerError(
            f"vocab_size must be at least {smallest} (256 bytes + special tokens), got {vocab_size}"
        )
    tokenizer = gpt4_byte_level_bpe()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tokenizer.train_from_iterator(_text_chunks(files), trainer)
    return _save(TokenizersBackend(tokenizer), special, out_dir)


def train_char(
    files: Sequence[str | Path], out_dir: str | Path, special_tokens: Sequence[str] = ()
) -> GPT4Tokenizer:
    """Build a character-level tokenizer (vocab = sorted characters of files, then specials); save it."""
    special = _check_special_tokens(special_tokens)
    return _save(CharBackend(vocabulary(_text_chunks(files)), special), special, out_dir)
