"""GGUF `tokenizer.ggml.pre` names -> the split regexes llama.cpp applies (src/llama-vocab.cpp).

llama.cpp applies each regex of a list in turn, keeping both matches and the text between them as
pieces; `tokenizers`' Split(behavior="isolated") does exactly that, so a list becomes a Sequence.
Where llama.cpp rewrote a regex for its own engine (case-insensitive contractions, letter classes),
we use the original Hugging Face tokenizer.json form, which Oniguruma runs directly.
"""

from __future__ import annotations

from tokenizers import Regex, pre_tokenizers

from gptkit.errors import TokenizerError

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TEKKEN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
GPT4O = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CJK = "[一-龥ࠀ-一가-퟿]+"
DEEPSEEK_CODER = ["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK, r"\p{N}"]
DEEPSEEK_LLM = ["[\r\n]", r"\s?\p{L}+", r"\s?[!-/:-~！-／：-～‘-‟　-。]+", r"\s+$", CJK, r"\p{N}+"]
DEEPSEEK3 = [
    r"\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
    r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
]
FALCON = [r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"]
DEFAULT = [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"]
BLOOM = [" ?[^(\\s|.,!?…。，、।۔،)]+"]

_GROUPS: list[tuple[tuple[str, ...], list[str]]] = [
    (
        ("gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling", "mellum", "a.x-4.0"),
        [GPT2],
    ),
    (("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"), [r"\p{N}", GPT2]),
    (
        ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "dbrx"),
        [LLAMA3],
    ),
    (("smaug-bpe", "chatglm-bpe", "glm4"), [LLAMA3]),
    (("qwen2", "stablelm2", "hunyuan", "deepseek-r1-qwen", "megrez"), [QWEN2]),
    (("tekken",), [TEKKEN]),
    (("gpt-4o", "llama4", "minimax-m2"), [GPT4O]),
    (("deepseek-coder",), DEEPSEEK_CODER),
    (("deepseek-llm",), DEEPSEEK_LLM),
    (("deepseek-v3", "hunyuan-dense"), DEEPSEEK3),
    (("falcon",), FALCON),
    (("default",), DEFAULT),
    (("poro-chat", "bloom", "gpt3-finnish"), BLOOM),
    (("viking",), [*BLOOM, r"\p{N}"]),
]
SPLIT_REGEXES: dict[str, list[str]] = {name: regexes for names, regexes in _GROUPS for name in names}
#: pre-tokenizer types whose whole-word vocabulary hits skip the merges (llama.cpp `ignore_merges`)
IGNORE_MERGES = frozenset(
    ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2")
)


def split_regexes(pre: str | None) -> list[str]:
    """The llama.cpp regex list for a `tokenizer.ggml.pre` value (missing means 'default')."""
    name = (pre or "default").lower()
    if name not in SPLIT_REGEXES:
        raise TokenizerError(
            f"unsupported GGUF pre-tokenizer {pre!r} (tokenizer.ggml.pre); supported: {', '.join(sorted(SPLIT_REGEXES))}"
        )
    return SPLIT_REGEXES[name]


def byte_level_pre_tokenizer(pre: str | None) -> pre_tokenizers.PreTokenizer:
    """Split with the llama.cpp regexes for `pre`, then map bytes to GPT-2's byte alphabet."""
    splits = [pre_tokenizers.Split(Regex(r), behavior="isolated", invert=False) for r in split_regexes(pre)]
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)
    return pre_tokenizers.Sequence([*splits, byte_level])
