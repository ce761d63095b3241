"""SentencePiece GGUF vocabularies (tokenizer.ggml.model = "llama"): ids equal two references on a varied
corpus: transformers' GGUF tokenizer converter and a port of llama.cpp's SPM algorithm (llama-vocab.cpp)."""

from __future__ import annotations

import heapq

import gguf
import pytest
from tokenizers import SentencePieceBPETokenizer

from gptkit import GPT4Tokenizer

SPACE = "\u2581"
TRAIN = ["the quick brown fox jumps over the lazy dog", "hello world, hello there", "naïve café déjà vu",
         "numbers 12345 and 678", "tabs\tand\nnewlines", "the theory of the thing"] * 10  # fmt: skip
CORPUS = [
    "hello world", "the quick brown fox", "  leading spaces", "trailing  ", "naïve café", "🙂 emoji",
    "日本語のテキスト", "mixed 123 tabs\tnew\nlines", "thethe theory", "Ω unknown ✓ chars ℵ", "",
    "<|im_end|> stays text", "a<start_of_turn>b",
]  # fmt: skip
CONTROL, USER = "<|im_end|>", "<start_of_turn>"


def _vocabulary(drop_bytes: tuple[int, ...] = ()) -> tuple[list[str], list[float], list[int]]:
    """A Llama-2-style vocabulary: <unk> <s> </s>, the byte tokens, then pieces best-first (score -rank)."""
    trainer = SentencePieceBPETokenizer()
    trainer.train_from_iterator(TRAIN, vocab_size=180, min_frequency=1, show_progress=False)
    pieces = [t for t, _ in sorted(trainer.get_vocab().items(), key=lambda kv: kv[1]) if t != "<unk>"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256) if b not in drop_bytes]
    types = [2, 3, 3] + [6] * (len(tokens) - 3)
    tokens += pieces + [CONTROL, USER]
    types += [1] * len(pieces) + [3, 4]
    scores = [0.0] * (len(tokens) - len(pieces) - 2) + [-float(i) for i in range(len(pieces))] + [0.0, 0.0]
    return tokens, scores, types


def _write(path, arch: str, add_space_prefix: bool | None = None, template: str | None = None, **vocab):
    tokens, scores, types = _vocabulary(**vocab)
    writer = gguf.GGUFWriter(str(path), arch)
    if template is not None:
        writer.add_chat_template(template)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(False)
    if add_space_prefix is not None:
        writer.add_add_space_prefix(add_space_prefix)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path, tokens, scores, types


def llama_cpp_spm(text: str, tokens, scores, types, add_space_prefix: bool) -> list[int]:
    """llama.cpp's llm_tokenizer_spm: merge the best-scoring adjacent pair (ties: leftmost) until none is a
    token, then spell leftovers as byte tokens (unknown when a byte token is missing)."""
    if not text:
        return []
    ids = {t: i for i, t in enumerate(tokens) if types[i] not in (3, 6)}
    text = (" " + text if add_space_prefix else text).replace(" ", SPACE)
    symbols = list(text)
    alive = [True] * len(symbols)
    nxt = list(range(1, len(symbols))) + [-1]
    heap = []

    def push(left: int) -> None:
        right = nxt[left]
        if right != -1 and symbols[left] + symbols[right] in ids:
            heapq.heappush(
                heap, (-scores[ids[symbols[left] + symbols[right]]], left, symbols[left], symbols[right])
            )

    for i in range(len(symbols) - 1):
        push(i)
    while heap:
        _, left, a, b = heapq.heappop(heap)
        right = nxt[left]
        if not alive[left] or right == -1 or symbols[left] != a or symbols[right] != b:
            continue
        symbols[left], alive[right], nxt[left] = a + b, False, nxt[right]
        prev = max((j for j in range(left) if alive[j]), default=None)
        if prev is not None:
            push(prev)
        push(left)
    byte_ids = {t: i for i, t in enumerate(tokens) if types[i] == 6}
    out = []
    for symbol in (s for s, keep in zip(symbols, alive, strict=True) if keep):
        if symbol in ids:
            out.append(ids[symbol])
        else:
            out += [byte_ids.get(f"<0x{b:02X}>", 0) for b in symbol.encode()]
    return out


@pytest.mark.transformers_gguf
@pytest.mark.parametrize(("arch", "prefix"), [("phi3", None), ("gemma2", False)])
def test_ids_equal_transformers_and_llama_cpp(tmp_path, arch, prefix):
    transformers = pytest.importorskip("transformers")
    path, tokens, scores, types = _write(tmp_path / "spm.gguf", arch, prefix)
    ours = GPT4Tokenizer.from_pretrained(path)
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    for text in CORPUS:
        ids = ours.encode(text)
        if CONTROL not in text and USER not in text:  # the port knows no added tokens
            assert ids == llama_cpp_spm(text, tokens, scores, types, prefix is not False), text
        if not text.startswith(" ") and CONTROL not in text:  # transformers always matches control text
            assert ids == reference.encode(text, add_special_tokens=False), text
        if USER not in text:  # after an added token llama.cpp (and gptkit) prefix a space again
            assert ours.decode(ids) == text
    assert tokens.index("<0xF0>") in ours.encode("🙂")  # byte fallback for a character outside the vocabulary
    assert tokens.index(CONTROL) not in ours.encode(CONTROL)  # special text in input stays plain text
    assert ours.encode(CONTROL, allowed_special="all") == [tokens.index(CONTROL)]
    assert ours.encode(USER) == [tokens.index(USER)]  # user-defined tokens always match


def test_missing_byte_tokens_give_unknown(tmp_path):
    """A character whose bytes lack a token is <unk> (llama.cpp would throw; every real vocabulary has
    all 256 byte tokens)."""
    path, tokens, scores, types = _write(tmp_path / "spm.gguf", "llama", drop_bytes=(0x9F,))
    ours = GPT4Tokenizer.from_pretrained(path)
    ids = ours.encode("a 🙂 b")  # F0 9F 99 82: one byte has no token
    assert ids.count(0) == 1 and ours.decode(ids) == "a <unk> b"
    assert ours.encode("a é b") == llama_cpp_spm("a é b", tokens, scores, types, True)


GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}"
    "\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def test_chat_template_from_the_file(tmp_path):
    path, tokens, *_ = _write(tmp_path / "spm.gguf", "gemma3", False, template=GEMMA_TEMPLATE)
    ours = GPT4Tokenizer.from_pretrained(path)
    text = ours.apply_chat_template(
        [{"role": "user", "content": " hello "}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<s><start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n"
    ids = ours.apply_chat_template([{"role": "user", "content": "hello"}], add_generation_prompt=True)
    assert ids[:2] == [1, tokens.index(USER)]  # the template's <s> and the user-defined turn marker
