"""Shared tokenizers (loaded once per session) and the varied text corpus the parity tests use."""

from __future__ import annotations

import pytest

from gptkit.registry import resolve
from gptkit.tokenizer import GPT4Tokenizer

CORPUS = [
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say it's fine, don't you think? We've, you'd, I'D, THEY'RE",
    "你好，世界！今天天气很好。",
    "日本語のテキスト：こんにちは、カタカナ、ﾊﾝｶｸ。",
    "한국어 문장입니다.",
    "Ελληνικά και русский язык, العربية, עברית, हिन्दी",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    'for (int i = 0; i < 10; ++i) { printf("%d\\n", i); }',
    "emoji 😀😃😄 👍🏽 family 👨‍👩‍👧‍👦 flag 🇺🇸 heart ❤️",
    "   leading spaces, trailing spaces   ",
    "tabs\tand\t\ttabs",
    "line one\nline two\r\nline three\n\n\n",
    "    \n\n   \t  \r\n",
    "Numbers: 0 1 12 123 1234 12345 3.14159 -42 1e10 1,000,000",
    "Date 2024-01-15, price $19.99, 50% off!!!",
    "x² + y³ = z½, Ⅻ, ١٢٣, ０１２",
    "mixed 中文 and English 123 together",
    "<|endoftext|> in the middle <|endoftext|>",
    "<|im_start|>user\nhello<|im_end|>",
    "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>",
    "<|im_start",
    "URL: https://example.com/path?q=1&r=2#frag",
    "email@example.com, @handle, #hashtag",
    "¿Qué tal? Ça va. Übermäßig. naïve café",
    "zero\u200bwidth\u200d joiner, combining e\u0301, nbsp\u00a0here",
    "\x00\x01\x7f control chars",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "!!!!!!!!!!!!????????.........------------",
    "1. first\n  2. second\n    3. third",
    "a  1 b   22 c\t3",
]


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return list(CORPUS)


@pytest.fixture(scope="session")
def gguf_path():
    return resolve("smollm2-135m-instruct", tokenizer_only=True).path


@pytest.fixture(scope="session")
def smol(gguf_path) -> GPT4Tokenizer:
    return GPT4Tokenizer.from_pretrained(gguf_path)


@pytest.fixture(scope="session")
def gpt4() -> GPT4Tokenizer:
    return GPT4Tokenizer.from_pretrained("gpt-4")


@pytest.fixture(scope="session")
def hf_gguf(gguf_path):
    """transformers' own tokenizer converted from the same GGUF file."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
