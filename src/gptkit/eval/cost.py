"""How costly is training (and running) a GPT: parameters, FLOPs, memory, time and money, by formula.

Conventions (N = parameters that take part in a matmul per token, L = layers, d_attn = n_head * head_dim,
T = sequence length, D = training tokens):

* training FLOPs per token  = 6N + 12 L d_attn T   (Kaplan et al. 2020; PaLM app. B; nanoGPT's MFU):
  2 FLOPs per multiply-add, backward = 2 x forward; the attention term counts Q.K^T and A.V over all
  T keys for every query (no causal halving).
* inference FLOPs per token = 2N + 4 L d_attn T    (the forward third of the above; averaging over a
  causal sequence halves the attention term, to Kaplan's 2 L n_ctx d_attn).
* training compute C = (6N + 12 L d_attn T) D, time = C / (device FLOP/s x MFU), money = hours x price.
* memory: weights N x bytes per dtype; gradients N x bytes; AdamW m and v in fp32 (8N), plus an fp32
  master copy (4N) with mixed precision, giving the usual 16N bytes (ZeRO, Rajbhandari et al. 2020);
  activations per layer 34 s b h + 5 a s^2 b bytes (Korthikanti et al. 2022, 16-bit, no recomputation,
  s = T, b = batch, h = n_embd, a = n_head); KV cache 2 L n_kv_head head_dim T bytes b.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from gptkit.config import PRESETS, GPT4Config, Positions, preset

DEFAULT_DEVICE_FLOPS = 989e12  # NVIDIA H100 SXM, dense BF16 tensor-core peak
DEFAULT_PRICE_PER_HOUR = 2.5  # USD per GPU-hour, a typical cloud on-demand price for one H100
DEFAULT_MFU = 0.4
CHINCHILLA_TOKENS_PER_PARAMETER = 20
# T when none is given: the context, at most 2048 (GPT-2 trains at 1024, most newer models pretrain at 2048
# to 4096 before extending the context): a full 8192-token window would quote ~89 GiB of activations per
# sequence for SmolLM2 (no recomputation), which says more about the window than about training it.
DEFAULT_SEQ_LEN = 2048
DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "int8": 1.0, "int4": 0.5}


@dataclass(frozen=True)
class CostReport:
    """Closed-form training and inference costs of one architecture."""

    n_params: int  # all parameters, tied embeddings once
    n_params_non_embedding: int  # without token and position embedding tables (Kaplan's N)
    n_params_matmul: int  # parameters used in a matmul per token: total minus lookup-only tables
    n_layer: int
    d_attn: int
    seq_len: int
    batch_size: int
    tokens: int
    context_length: int  # the model's trained window (seq_len defaults to min(it, DEFAULT_SEQ_LEN))
    seq_len_given: bool  # T came from the caller (else the default)
    tokens_given: bool  # D came from the caller (else 20 N)
    train_flops_per_token: float
    inference_flops_per_token: float
    train_flops: float
    weights_bytes: dict[str, float]
    gradients_bytes: float  # fp32 gradients
    optimizer_bytes: float  # AdamW m, v (fp32) + fp32 master weights (mixed precision)
    training_state_bytes: float  # 16N: weights + gradients + optimizer, mixed precision
    activations_bytes: float
    kv_cache_bytes: float
    device_flops: float
    mfu: float
    price_per_hour: float

    @property
    def train_seconds(self) -> float:
        return self.train_flops / (self.device_flops * self.mfu)

    @property
    def train_cost(self) -> float:
        return self.train_seconds / 3600 * self.price_per_hour


def embedding_parameters(config: GPT4Config) -> tuple[int, int]:
    """(all embedding-table parameters, those only looked up, never multiplied) of a config."""
    token_tables = config.vocab_size * config.n_embd * (1 if config.tie_word_embeddings else 2)
    positions = config.context_length * config.n_embd if config.positions is Positions.LEARNED else 0
    lookup_only = positions + (0 if config.tie_word_embeddings else config.vocab_size * config.n_embd)
    return token_tables + positions, lookup_only


def activation_bytes(config: GPT4Config, seq_len: int, batch_size: int) -> float:
    """Korthikanti et al. (2022): L (34 s b h + 5 a s^2 b) bytes of 16-bit activations, no recomputation."""
    s, b, h, a = seq_len, batch_size, config.n_embd, config.n_head
    return config.n_layer * (34 * s * b * h + 5 * a * s * s * b)


def kv_cache_bytes(config: GPT4Config, seq_len: int, batch_size: int, bytes_per_value: float = 2.0) -> float:
    """2 (K and V) x L x n_kv_head x head_dim x T x bytes x batch."""
    return 2 * config.n_layer * config.kv_heads * config.dim_per_head * seq_len * bytes_per_value * batch_size


def estimate(
    config: GPT4Config,
    *,
    tokens: int | None = None,
    seq_len: int | None = None,
    batch_size: int = 1,
    device_flops: float = DEFAULT_DEVICE_FLOPS,
    mfu: float = DEFAULT_MFU,
    price_per_hour: float = DEFAULT_PRICE_PER_HOUR,
) -> CostReport:
    """All the closed-form numbers for ``config`` (T defaults to min(context, DEFAULT_SEQ_LEN), D to 20 N)."""
    if not 0 < mfu <= 1 or device_flops <= 0 or price_per_hour < 0 or batch_size < 1:
        raise ValueError("need 0 < mfu <= 1, device_flops > 0, price_per_hour >= 0 and batch_size >= 1")
    n = config.num_parameters()
    embeddings, lookup_only = embedding_parameters(config)
    n_matmul = n - lookup_only
    seq = seq_len or min(config.context_length, DEFAULT_SEQ_LEN)
    d_attn = config.n_head * config.dim_per_head
    train_per_token = 6 * n_matmul + 12 * config.n_layer * d_attn * seq
    tokens_given = tokens is not None
    tokens = tokens if tokens is not None else CHINCHILLA_TOKENS_PER_PARAMETER * n
    return CostReport(
        n_params=n,
        n_params_non_embedding=n - embeddings,
        n_params_matmul=n_matmul,
        n_layer=config.n_layer,
        d_attn=d_attn,
        seq_len=seq,
        batch_size=batch_size,
        tokens=tokens,
        context_length=config.context_length,
        seq_len_given=seq_len is not None,
        tokens_given=tokens_given,
        train_flops_per_token=train_per_token,
        inference_flops_per_token=2 * n_matmul + 4 * config.n_layer * d_attn * seq,
        train_flops=train_per_token * tokens,
        weights_bytes={dtype: n * size for dtype, size in DTYPE_BYTES.items()},
        gradients_bytes=4 * n,
        optimizer_bytes=12 * n,
        training_state_bytes=16 * n,
        activations_bytes=activation_bytes(config, seq, batch_size),
        kv_cache_bytes=kv_cache_bytes(config, seq, batch_size),
        device_flops=device_flops,
        mfu=mfu,
        price_per_hour=price_per_hour,
    )


def resolve_config(spec: str) -> GPT4Config:
    """A config from a preset name, a JSON/YAML config file (gptkit or Hugging Face keys) or a model."""
    if spec in PRESETS:
        return preset(spec)
    path = Path(spec)
    if path.is_file() and path.suffix.lower() in (".json", ".yaml", ".yml"):
        return _config_from_file(path)
    from gptkit.weights.loading import load_config

    return load_config(spec)[0]


def _config_from_file(path: Path) -> GPT4Config:
    """A JSON or YAML file holding GPT4Config fields or a Hugging Face config.json."""
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
    else:
        import yaml

        data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping")
    if "model_type" in data or "hidden_size" in data:
        from gptkit.weights.hf_config import config_from_hf

        return config_from_hf(data)
    return GPT4Config.from_dict(data)


def format_table(report: CostReport) -> str:
    """The report as a three-column table: quantity, value, formula."""
    r = report
    rows = [
        ("parameters N (total)", _count(r.n_params), "tied embeddings counted once"),
        ("  non-embedding", _count(r.n_params_non_embedding), "N minus token/position tables (Kaplan)"),
        ("  in matmuls (N_f)", _count(r.n_params_matmul), "N minus lookup-only tables"),
        ("sequence length T / batch b", f"{r.seq_len} / {r.batch_size}", _seq_len_note(r)),
        (
            "train FLOPs / token",
            _sci(r.train_flops_per_token),
            f"6 N_f + 12 L d_attn T, L={r.n_layer} d_attn={r.d_attn}",
        ),
        ("inference FLOPs / token", _sci(r.inference_flops_per_token), "2 N_f + 4 L d_attn T (forward only)"),
        *[
            (f"weights {dtype}", _bytes(size), f"N x {DTYPE_BYTES[dtype]:g} B")
            for dtype, size in r.weights_bytes.items()
        ],
        ("gradients (fp32)", _bytes(r.gradients_bytes), "4 N"),
        ("AdamW state + master", _bytes(r.optimizer_bytes), "m, v, fp32 master weights: 12 N"),
        ("training state (mixed)", _bytes(r.training_state_bytes), "2N bf16 w + 2N bf16 g + 12N = 16 N"),
        ("activations", _bytes(r.activations_bytes), "L (34 s b h + 5 a s^2 b), 16-bit, no recompute"),
        ("KV cache (bf16)", _bytes(r.kv_cache_bytes), "2 L n_kv head_dim T x 2 B x b"),
        (
            "training tokens D",
            _count(r.tokens),
            "given (--tokens)" if r.tokens_given else "20 N (Chinchilla)",
        ),
        ("training compute C", _sci(r.train_flops), "(6 N_f + 12 L d_attn T) D"),
        ("device FLOP/s x MFU", f"{_sci(r.device_flops)} x {r.mfu:g}", ""),
        ("training time", _duration(r.train_seconds), "C / (FLOP/s x MFU), one device"),
        ("training cost", f"${r.train_cost:,.2f}", f"hours x ${r.price_per_hour:g}/h"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c}".rstrip() for a, b, c in rows)


def _seq_len_note(r: CostReport) -> str:
    """Where T came from."""
    if r.seq_len_given:
        return f"given (--seq-len); the model's context is {r.context_length}"
    if r.seq_len < r.context_length:
        return f"default min(context {r.context_length}, {DEFAULT_SEQ_LEN}); --seq-len to change"
    return f"default: the model's context ({r.context_length})"


def _count(value: float) -> str:
    """1.2M / 3.4B style."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return str(value)


def _sci(value: float) -> str:
    return f"{value:.3e}"


def _bytes(value: float) -> str:
    """Binary units: KiB, MiB, GiB, TiB."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.2f} {unit}"
    return f"{value:.0f} B"


def _duration(seconds: float) -> str:
    """Seconds, hours or days, whichever reads best."""
    if seconds < 3600:
        return f"{seconds:.0f} s"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
