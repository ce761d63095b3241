"""Translation between languages named in the prompt ("English", "French", ...)."""

from __future__ import annotations

import re
from typing import Any

from gptkit.tasks.base import Pipeline, TaskError, example_dicts
from gptkit.tasks.prompts import PARALLEL_SENTENCES

LANGUAGES = {
    "en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian", "pt": "Portuguese",
    "nl": "Dutch", "ro": "Romanian", "ru": "Russian", "zh": "Chinese", "ja": "Japanese", "ko": "Korean",
}  # fmt: skip
TASK_ALIAS = re.compile(r"translation_(\w+)_to_(\w+)")
DEFAULT_NEW_TOKENS = 128


class TranslationPipeline(Pipeline):
    """``{"translation_text": ...}``; options src_lang (default English) and tgt_lang (required)."""

    task = "translation"
    template_key = "translation"
    options = frozenset({"src_lang", "tgt_lang"})
    passes_generation_options = True

    def _run(self, items: list[str], opts: dict[str, Any]) -> list[dict[str, str]]:
        chat, template = self.uses_chat(opts), self.template(opts)
        prompts = [self._prompt(text, opts) for text in items]
        gen = self.generation_options(opts, max_new_tokens=DEFAULT_NEW_TOKENS)
        texts = self.generate(prompts, chat, () if chat else template.stop, **gen)
        return [{"translation_text": t.strip()} for t in texts]

    def _prompt(self, text: str, opts: dict[str, Any]) -> str:
        """Translate-this prompt naming both languages (base models: parallel example sentences)."""
        src, tgt = language_name(opts.get("src_lang") or "English"), opts.get("tgt_lang")
        if not tgt:
            raise TaskError(
                'translation needs tgt_lang, e.g. tgt_lang="French" (or task "translation_en_to_fr")'
            )
        tgt = language_name(tgt)
        chat = self.uses_chat(opts)
        fields = {"text": text, "src_lang": src, "tgt_lang": tgt}
        return self.render(self.template(opts), fields, self._examples(opts, src, tgt, chat), chat)

    def _examples(self, opts: dict[str, Any], src: str, tgt: str, chat: bool) -> list[dict[str, str]]:
        """User examples, else (base models) parallel sentences in both languages."""
        if opts.get("examples") is not None:
            return example_dicts(opts["examples"], "text")
        if chat:
            return []
        return [{"text": s[src], "answer": s[tgt]} for s in PARALLEL_SENTENCES if src in s and tgt in s]


def language_name(value: str) -> str:
    """A language name from a name or an ISO code ("fr" -> "French")."""
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"a language must be a name like 'French' or a code like 'fr', got {value!r}")
    return LANGUAGES.get(value.strip().lower(), value.strip().title() if value.islower() else value.strip())


def languages_of_task(task: str) -> dict[str, str]:
    """src_lang/tgt_lang from a "translation_en_to_fr" task name ({} for plain "translation")."""
    match = TASK_ALIAS.fullmatch(task)
    return {"src_lang": language_name(match[1]), "tgt_lang": language_name(match[2])} if match else {}
