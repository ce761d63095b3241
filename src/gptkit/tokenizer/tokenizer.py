"""GPT4Tokenizer: one Hugging Face-style tokenizer API over cl100k (tiktoken), GGUF vocabularies and tokenizer.json."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from gptkit.checks import is_int
from gptkit.errors import TokenizerError
from gptkit.tokenizer import batch
from gptkit.tokenizer.backend import Backend, replace_lone_surrogates
from gptkit.tokenizer.batch import BatchEncoding
from gptkit.tokenizer.chat_template import render as render_chat
from gptkit.tokenizer.content_guard import ChatText, ContentGuard, encode_guarded
from gptkit.tokenizer.settings import SPECIAL_ROLES, TokenizerSettings
from gptkit.tokenizer.sources import load_backend

AllowedSpecial = str | Iterable[str]


def _ids_list(ids: Any) -> list[int]:
    """One sequence of ids from a list, tuple, int, 1-D tensor/array or a (1, T) tensor/array."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, int):
        return [ids]
    if not isinstance(ids, Sequence) or isinstance(ids, (str, bytes)):
        raise TokenizerError(f"token ids must be a list of ints or a tensor, got {type(ids).__name__}")
    if len(ids) == 1 and isinstance(ids[0], (list, tuple)):
        ids = ids[0]
    if not all(is_int(i) for i in ids):
        raise TokenizerError("decode takes one sequence of ints; use batch_decode for several sequences")
    return list(ids)


class GPT4Tokenizer:
    """Text <-> token ids for GPT-4 (cl100k), GGUF models and HF tokenizer.json, with transformers' API.

    padding_side defaults to "left" (what batched generation needs); pass padding_side="right" per call
    or set the attribute for training batches. Special-token text in input is ordinary text unless
    allowed with ``allowed_special`` (tiktoken's semantics). ``apply_chat_template`` keeps the template's
    own control tokens, while special-token text inside message content stays ordinary text (unless
    ``allow_special_in_content=True``). Lone surrogates (e.g. U+D800) are encoded as U+FFFD by every backend.
    """

    def __init__(
        self, backend: Backend, settings: TokenizerSettings | None = None, name_or_path: str = ""
    ) -> None:
        self.backend = backend
        self.settings = settings or TokenizerSettings()
        self.name_or_path = name_or_path
        for role in SPECIAL_ROLES:
            token = self.settings.special.get(role)
            if token is not None and backend.token_to_id(token) is None:
                raise TokenizerError(f"{role} {token!r} is not in the vocabulary")

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, pre_tokenizer: str | None = None) -> GPT4Tokenizer:
        """Load 'gpt-4' / 'cl100k_base', a registered model name, a .gguf file or an HF directory.

        ``pre_tokenizer`` overrides a GGUF file's ``tokenizer.ggml.pre`` (e.g. "gpt2").
        """
        backend, settings = load_backend(name_or_path, pre_tokenizer)
        return cls(backend, settings, str(name_or_path))

    # ----- special tokens -------------------------------------------------------------------------
    def _token(self, role: str) -> str | None:
        return self.settings.special.get(role)

    def _set_token(self, role: str, token: str | None) -> None:
        if token is not None and self.backend.token_to_id(token) is None:
            raise TokenizerError(f"{role} {token!r} is not in the vocabulary")
        self.settings.special[role] = token

    def _token_id(self, role: str) -> int | None:
        token = self._token(role)
        return None if token is None else self.backend.token_to_id(token)

    bos_token = property(
        lambda self: self._token("bos_token"), lambda self, t: self._set_token("bos_token", t)
    )
    eos_token = property(
        lambda self: self._token("eos_token"), lambda self, t: self._set_token("eos_token", t)
    )
    unk_token = property(
        lambda self: self._token("unk_token"), lambda self, t: self._set_token("unk_token", t)
    )
    pad_token = property(
        lambda self: self._token("pad_token"), lambda self, t: self._set_token("pad_token", t)
    )
    bos_token_id = property(lambda self: self._token_id("bos_token"))
    eos_token_id = property(lambda self: self._token_id("eos_token"))
    unk_token_id = property(lambda self: self._token_id("unk_token"))
    pad_token_id = property(lambda self: self._token_id("pad_token"))

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """The named special tokens that are set (bos/eos/unk/pad), as the chat template sees them."""
        return {role: token for role, token in self.settings.special.items() if token is not None}

    @property
    def all_special_tokens(self) -> list[str]:
        """Every special token: the named ones and all control tokens of the vocabulary, by id."""
        return [self.backend.id_to_token(i) for i in self.all_special_ids]

    @property
    def all_special_ids(self) -> list[int]:
        """Ids of every special token (named and control tokens), sorted."""
        named = {self.backend.token_to_id(t) for t in self.special_tokens_map.values()}
        return sorted(named | set(self.backend.special_tokens.values()))

    # ----- vocabulary -----------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens (transformers' meaning)."""
        return self.backend.vocab_size

    def __len__(self) -> int:
        return len(self.backend)

    @property
    def chat_template(self) -> str | None:
        return self.settings.chat_template

    @chat_template.setter
    def chat_template(self, template: str | None) -> None:
        self.settings.chat_template = template

    padding_side = property(
        lambda self: self.settings.padding_side,
        lambda self, side: setattr(self.settings, "padding_side", batch.check_side(side, "padding_side")),
    )
    truncation_side = property(
        lambda self: self.settings.truncation_side,
        lambda self, side: setattr(
            self.settings, "truncation_side", batch.check_side(side, "truncation_side")
        ),
    )

    @property
    def model_max_length(self) -> int | None:
        return self.settings.model_max_length

    def convert_ids_to_tokens(
        self, ids: int | Iterable[int], skip_special_tokens: bool = False
    ) -> str | list[str]:
        """Vocabulary spellings of ids (byte-level, e.g. 'Ġworld'); one id gives one string."""
        if isinstance(ids, int):
            self.backend.check_ids([ids])
            return self.backend.id_to_token(ids)
        ids = _ids_list(ids)
        self.backend.check_ids(ids)
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.backend.id_to_token(i) for i in ids if i not in special]

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int]:
        """Ids of vocabulary spellings; unknown ones map to unk_token_id (TokenizerError when there is none)."""
        if isinstance(tokens, str):
            return self._token_to_id_or_unk(tokens)
        return [self._token_to_id_or_unk(t) for t in tokens]

    def _token_to_id_or_unk(self, token: str) -> int:
        token_id = self.backend.token_to_id(token)
        if token_id is None:
            token_id = self.unk_token_id
        if token_id is None:
            raise TokenizerError(f"token {token!r} is not in the vocabulary and there is no unk_token")
        return token_id

    def get_vocab(self) -> dict[str, int]:
        """Every token spelling -> id."""
        return {
            self.backend.id_to_token(i): i
            for i in range(len(self))
            if self.backend.id_to_token(i) is not None
        }

    # ----- encoding -------------------------------------------------------------------------------
    def _allowed(self, allowed_special: AllowedSpecial) -> frozenset[str]:
        """The allowed special-token texts: 'all', a collection of token texts, or none."""
        specials = self.backend.special_tokens
        if allowed_special == "all":
            return frozenset(specials)
        if isinstance(allowed_special, str):
            allowed_special = {allowed_special}
        allowed = frozenset(allowed_special or ())
        unknown = allowed - specials.keys()
        if unknown:
            raise TokenizerError(
                f"allowed_special names tokens that are not special tokens: {sorted(unknown)}"
            )
        return allowed

    def _encode_one(
        self, text: Any, add_special_tokens: bool, allowed: frozenset[str], limit: int | None
    ) -> list[int]:
        """Ids for one text, with BOS/EOS when asked and truncated to limit (specials included)."""
        if not isinstance(text, str):
            raise TokenizerError(f"text must be a str, got {type(text).__name__}")
        ids = self._encode_text(text, allowed)
        prefix, suffix = (
            (self.backend.prefix_ids, self.backend.suffix_ids) if add_special_tokens else ([], [])
        )
        if limit is not None:
            budget = limit - len(prefix) - len(suffix)
            if budget < 0:
                raise TokenizerError(
                    f"max_length={limit} leaves no room for the {len(prefix) + len(suffix)} special tokens"
                )
            ids = batch.truncate(ids, budget, self.truncation_side)
        return prefix + ids + suffix

    def _encode_text(self, text: str, allowed: frozenset[str]) -> list[int]:
        """Backend ids of text: lone surrogates as U+FFFD, a ChatText's protected spans as plain text."""
        clean = replace_lone_surrogates(text)
        if isinstance(text, ChatText) and text.protected and allowed:
            return encode_guarded(self.backend, ChatText(clean, text.protected), allowed)
        return self.backend.encode(clean, allowed)

    def _truncation_limit(self, truncation: bool | str, max_length: int | None) -> int | None:
        """The length to truncate to, or None when not truncating."""
        if truncation in (False, None, "do_not_truncate"):
            return None
        if truncation not in (True, "longest_first", "only_first"):
            raise TokenizerError(f"unknown truncation strategy {truncation!r}; use True or False")
        limit = max_length if max_length is not None else self.model_max_length
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise TokenizerError(f"max_length must be a non-negative int, got {limit!r}")
        return limit

    def encode(
        self,
        text: str,
        add_special_tokens: bool = True,
        allowed_special: AllowedSpecial = (),
        truncation: bool | str = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
    ) -> list[int] | Any:
        """Token ids for text: a list, or a (1, T) LongTensor with return_tensors='pt'."""
        limit = self._truncation_limit(truncation, max_length)
        ids = self._encode_one(text, add_special_tokens, self._allowed(allowed_special), limit)
        return self._tensors([ids], return_tensors) if return_tensors else ids

    def _tensors(self, rows: list[list[int]], return_tensors: str | None):
        if return_tensors != "pt":
            raise TokenizerError(f"return_tensors must be None or 'pt', got {return_tensors!r}")
        return batch.as_tensor(rows)

    def __call__(
        self,
        text: str | list[str],
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool = True,
        pad_to_multiple_of: int | None = None,
        allowed_special: AllowedSpecial = (),
    ) -> BatchEncoding:
        """Encode one text or a batch into a BatchEncoding with input_ids and attention_mask."""
        single = isinstance(text, str)
        texts = [text] if single else text
        if not isinstance(texts, (list, tuple)):
            raise TokenizerError(f"text must be a str or a list of str, got {type(text).__name__}")
        strategy = batch.padding_strategy(padding)
        side = batch.check_side(padding_side or self.padding_side, "padding_side")
        limit = self._truncation_limit(truncation, max_length)
        allowed = self._allowed(allowed_special)
        rows = [self._encode_one(t, add_special_tokens, allowed, limit) for t in texts]
        target = batch.padded_length(
            [len(r) for r in rows], strategy, max_length or self.model_max_length, pad_to_multiple_of
        )
        masks = [[1] * len(r) for r in rows]
        if target is not None:
            rows, masks = batch.pad(rows, target, self._require_pad_id(), side)
        return self._batch_encoding(
            rows, masks, single and not return_tensors, return_tensors, return_attention_mask
        )

    def _require_pad_id(self) -> int:
        if self.pad_token_id is None:
            raise TokenizerError(
                "padding needs a pad token; set one, e.g. tokenizer.pad_token = tokenizer.eos_token"
            )
        return self.pad_token_id

    def _batch_encoding(
        self, rows, masks, unwrap: bool, return_tensors: str | None, with_mask: bool
    ) -> BatchEncoding:
        """Pack ids and masks: plain lists (one list when unwrap) or (B, T) tensors."""
        data = {"input_ids": rows, "attention_mask": masks} if with_mask else {"input_ids": rows}
        if return_tensors:
            data = {key: self._tensors(value, return_tensors) for key, value in data.items()}
        elif unwrap:
            data = {key: value[0] for key, value in data.items()}
        return BatchEncoding(data)

    # ----- decoding -------------------------------------------------------------------------------
    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        """Text for one sequence of ids (list, tensor, or a (1, T) tensor); bad UTF-8 becomes U+FFFD."""
        ids = _ids_list(ids)
        self.backend.check_ids(ids)
        return self.backend.decode(ids, skip_special_tokens)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False) -> list[str]:
        """Text for each sequence of a batch (list of lists or a (B, T) tensor)."""
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        if not isinstance(sequences, Sequence) or isinstance(sequences, (str, bytes)):
            raise TokenizerError(f"batch_decode takes a list of sequences, got {type(sequences).__name__}")
        return [self.decode([s] if isinstance(s, int) else s, skip_special_tokens) for s in sequences]

    # ----- chat -----------------------------------------------------------------------------------
    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = False,
        tokenize: bool = True,
        return_tensors: str | None = None,
        chat_template: str | None = None,
        tools: list[dict] | None = None,
        documents: list[dict] | None = None,
        return_dict: bool = False,
        allow_special_in_content: bool = False,
        **kwargs: Any,
    ) -> str | list[int] | Any:
        """Render messages with the model's chat template; tokenized, the template's control tokens are kept.

        Special-token text inside messages, tools and documents stays ordinary text (no forged turns);
        ``allow_special_in_content=True`` lets trusted callers spell control tokens in content. With
        ``tokenize=False`` the result is a :class:`ChatText` (a ``str``) that remembers the content's
        special-token spans, so ``encode(text, allowed_special="all")`` keeps them ordinary text too;
        a string built from it (``text + more``) loses that mark.
        """
        template = chat_template or self.chat_template
        if template is None:
            raise TokenizerError(
                f"{self.name_or_path or 'this tokenizer'} has no chat template; pass chat_template=..."
            )
        guard = ContentGuard(() if allow_special_in_content else self.backend.special_tokens)
        variables = {**self.special_tokens_map, **kwargs}
        rendered = render_chat(
            template,
            guard.escape(messages),
            add_generation_prompt,
            tools=guard.escape(tools),
            documents=guard.escape(documents),
            **variables,
        )
        text = guard.restore(rendered)
        if not tokenize:
            return text
        if return_dict:
            return self(text, add_special_tokens=False, return_tensors=return_tensors, allowed_special="all")
        return self.encode(
            text, add_special_tokens=False, allowed_special="all", return_tensors=return_tensors
        )

    # ----- saving ---------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> list[Path]:
        """Write tokenizer.json + tokenizer_config.json that gptkit and transformers both load."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = self.backend.save(directory)
        config = {
            "tokenizer_class": self.backend.hf_tokenizer_class,
            **self.special_tokens_map,
            "chat_template": self.chat_template,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "clean_up_tokenization_spaces": False,
        }
        if self.model_max_length is not None:
            config["model_max_length"] = self.model_max_length
        path = directory / "tokenizer_config.json"
        path.write_text(
            json.dumps({k: v for k, v in config.items() if v is not None}, indent=2, ensure_ascii=False)
        )
        return [*written, path]

    def __repr__(self) -> str:
        return (
            f"GPT4Tokenizer(name_or_path={self.name_or_path!r}, backend={type(self.backend).__name__}, "
            f"vocab_size={self.vocab_size}, len={len(self)}, special={self.special_tokens_map})"
        )
