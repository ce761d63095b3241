"""Key maps of the Llama-shaped Hugging Face families beyond llama/qwen2/mistral, and :func:`keymap_for`.

Each family is the Llama table with its own block norms (Gemma's four, OLMo 2's two post-norms), fused
projections (Phi-3's ``qkv_proj`` and ``gate_up_proj``), QK-norm weights and expert tensors (stacked from
``experts.{e}.*`` per layer).
"""

from __future__ import annotations

from gptkit.config import GPT4Config
from gptkit.weights.hf_config import family_for
from gptkit.weights.keymaps import KEYMAPS, LLAMA, LLAMA_LAYER, KeyMap, Rule, _with_bias

LLAMA_NORMS = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm"}
SANDWICH_NORMS = {
    "attn_norm": "input_layernorm",
    "attn_post_norm": "post_attention_layernorm",
    "mlp_norm": "pre_feedforward_layernorm",
    "mlp_post_norm": "post_feedforward_layernorm",
}
POST_NORMS = {"attn_post_norm": "post_attention_layernorm", "mlp_post_norm": "post_feedforward_layernorm"}
QWEN_EXPERTS = ("mlp", "gate", ("gate_proj", "up_proj", "down_proj"))  # (block, router, expert linears)
MIXTRAL_EXPERTS = ("block_sparse_moe", "gate", ("w1", "w3", "w2"))


def llama_like(
    family: str,
    norms: dict[str, str] = LLAMA_NORMS,
    *,
    fused: bool = False,
    experts: tuple | None = None,
) -> KeyMap:
    """The Llama table with these block norms, Phi-3's fused projections, and expert tensors."""
    layer = LLAMA_LAYER
    rules = [rule for rule in LLAMA.rules if "_norm" not in rule.ours or rule.ours.startswith("norm")]
    rules = [
        rule for rule in rules if not (fused and (".attn.qkv" in rule.ours or ".mlp.gate_up" in rule.ours))
    ]
    for ours, hf in norms.items():
        rules += _with_bias(f"blocks.{{i}}.{ours}", f"{layer}.{hf}")
    for ours in ("q_norm", "k_norm"):
        rules.append(Rule(f"blocks.{{i}}.attn.{ours}.weight", (f"{layer}.self_attn.{ours}.weight",)))
    if fused:
        rules += _with_bias("blocks.{i}.attn.qkv", f"{layer}.self_attn.qkv_proj")
        rules += _with_bias("blocks.{i}.mlp.gate_up", f"{layer}.mlp.gate_up_proj")
    if experts is not None:
        rules += _expert_rules(*experts)
    return KeyMap(family=family, base_prefix="model.", rules=tuple(rules), ignored=LLAMA.ignored)


def _expert_rules(block: str, router: str, linears: tuple[str, str, str]) -> list[Rule]:
    """Router and stacked expert weights of a sparse MLP under ``model.layers.{i}.{block}``."""
    prefix = f"{LLAMA_LAYER}.{block}"
    gate, up, down = (f"{prefix}.experts.{{e}}.{name}.weight" for name in linears)
    return [
        Rule("blocks.{i}.mlp.router.weight", (f"{prefix}.{router}.weight",)),
        Rule(
            "blocks.{i}.mlp.gate_up_exps.weight", (gate, up), split=("expert_dim", "expert_dim"), experts=True
        ),
        Rule("blocks.{i}.mlp.down_exps.weight", (down,), experts=True),
    ]


FAMILY_KEYMAPS: dict[str, KeyMap] = {
    "qwen3": llama_like("qwen3"),
    "smollm3": llama_like("smollm3"),
    "gemma2": llama_like("gemma2", SANDWICH_NORMS),
    "gemma3_text": llama_like("gemma3_text", SANDWICH_NORMS),
    "olmo2": llama_like("olmo2", POST_NORMS),
    "phi3": llama_like("phi3", fused=True),
    "qwen3_moe": llama_like("qwen3_moe", experts=QWEN_EXPERTS),
    "olmoe": llama_like("olmoe", experts=QWEN_EXPERTS),
    "mixtral": llama_like("mixtral", experts=MIXTRAL_EXPERTS),
}


def keymap_for(config: GPT4Config) -> KeyMap:
    """The key map of the checkpoint's own family (config.json's model_type) or, for a config built
    elsewhere, of the Hugging Face family that expresses it."""
    model_type = config.extra.get("hf_model_type")
    if model_type in FAMILY_KEYMAPS:
        return FAMILY_KEYMAPS[model_type]
    if model_type in KEYMAPS and config.is_plain:
        return KEYMAPS[model_type]
    return KEYMAPS[family_for(config)]
