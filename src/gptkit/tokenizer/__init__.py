"""Tokenizers: GPT-4's cl100k (tiktoken), GGUF-embedded vocabularies and HF tokenizer.json, one API."""

from gptkit.tokenizer.batch import BatchEncoding
from gptkit.tokenizer.tokenizer import GPT4Tokenizer

__all__ = ["BatchEncoding", "GPT4Tokenizer"]
