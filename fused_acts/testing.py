"""What the tests and the benchmark share: the bytes a forward keeps for
backward, and tiny transformers models built from configs with random
weights (nothing is downloaded). transformers is imported only when a model
is asked for."""

import dataclasses

import torch


def saved_bytes(block, *inputs, **kwargs):
    """Bytes autograd keeps for backward over one forward of block(*inputs,
    **kwargs) (each storage once), parameters excluded: the activations a
    training step holds."""
    params = {p.untyped_storage().data_ptr() for p in block.parameters()}
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(*inputs, **kwargs)
    return sum(seen.values())


@dataclasses.dataclass(frozen=True)
class Sizes:
    """A model's sizes, named the same for every model type."""

    vocab: int = 128
    hidden: int = 32
    intermediate: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    experts: int = 4
    experts_per_token: int = 2
    expert_intermediate: int = 16
    positions: int | None = 64  # None: the config's own default

    @property
    def head_dim(self):
        return self.hidden // self.heads


def _decoder(s):
    arguments = dict(
        vocab_size=s.vocab,
        hidden_size=s.hidden,
        intermediate_size=s.intermediate,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.kv_heads,
    )
    return arguments if s.positions is None else {**arguments, "max_position_embeddings": s.positions}


def _moe(s, experts="num_experts", width="moe_intermediate_size"):
    return {**_decoder(s), experts: s.experts, "num_experts_per_tok": s.experts_per_token, width: s.expert_intermediate}


# model type -> (transformers config class, its arguments from Sizes)
_CONFIGS = {
    "llama": ("LlamaConfig", _decoder),
    "mistral": ("MistralConfig", _decoder),
    "qwen2": ("Qwen2Config", _decoder),
    "gemma": ("GemmaConfig", lambda s: {**_decoder(s), "head_dim": s.head_dim}),
    "gemma2": ("Gemma2Config", lambda s: {**_decoder(s), "head_dim": s.head_dim}),
    "phi3": ("Phi3Config", lambda s: {**_decoder(s), "pad_token_id": 0}),
    "olmo2": ("Olmo2Config", lambda s: {**_decoder(s), "eos_token_id": 1}),
    "glm": ("GlmConfig", lambda s: {**_decoder(s), "head_dim": s.head_dim, "pad_token_id": 0}),
    "qwen2_moe": (
        "Qwen2MoeConfig",
        lambda s: {**_moe(s), "shared_expert_intermediate_size": 2 * s.expert_intermediate},
    ),
    "qwen3_moe": ("Qwen3MoeConfig", lambda s: {**_moe(s), "head_dim": s.head_dim}),
    "mixtral": ("MixtralConfig", lambda s: _moe(s, "num_local_experts", "intermediate_size")),
    "gpt_oss": (
        "GptOssConfig",
        lambda s: {
            **_moe(s, "num_local_experts", "intermediate_size"),
            "head_dim": s.head_dim,
            "sliding_window": 8,
            "layer_types": ["sliding_attention", "full_attention"] * (s.layers // 2)
            + ["full_attention"] * (s.layers % 2),
        },
    ),
    "deepseek_v3": (
        "DeepseekV3Config",
        lambda s: {
            **_moe(s, "n_routed_experts"),
            "n_group": 1,
            "topk_group": 1,
            "first_k_dense_replace": 1,
            "q_lora_rank": 16,
            "kv_lora_rank": 16,
            "qk_rope_head_dim": 4,
            "qk_nope_head_dim": 4,
            "v_head_dim": s.head_dim,
        },
    ),
    "llama4_text": (
        "Llama4TextConfig",
        lambda s: {
            **_decoder(s),
            "intermediate_size_mlp": s.intermediate,
            "num_local_experts": 2,
            "head_dim": s.head_dim,
            "interleave_moe_layer_step": 2,
        },
    ),
    "nemotron": ("NemotronConfig", _decoder),
    "apertus": ("ApertusConfig", _decoder),
    "roberta": ("RobertaConfig", lambda s: {**_decoder(s), "pad_token_id": 1}),
    "bloom": (
        "BloomConfig",
        lambda s: dict(vocab_size=s.vocab, hidden_size=s.hidden, n_layer=s.layers, n_head=s.heads),
    ),
    "minimax_m3_vl_text": (
        "MiniMaxM3VLTextConfig",
        lambda s: {**_moe(s, "num_local_experts"), "head_dim": s.head_dim, "bos_token_id": 1, "eos_token_id": 2},
    ),
    "beam": (
        "BeamConfig",
        lambda s: {
            **_moe(s),
            "head_dim": s.head_dim,
            "mlp_layer_types": ["dense", "sparse"] * (s.layers // 2),
            "n_group": 1,
            "topk_group": 1,
        },
    ),
    "hy_v4": (
        "HYV4Config",
        lambda s: {
            **_moe(s),
            "pad_token_id": 0,
            "qk_nope_head_dim": 4,
            "qk_rope_head_dim": 4,
            "v_head_dim": s.head_dim,
            "index_head_dim": s.head_dim,
        },
    ),
    "deepseek_v4": ("DeepseekV4Config", lambda s: {**_moe(s, "n_routed_experts"), "head_dim": s.head_dim}),
    "qwen3_next": (
        "Qwen3NextConfig",
        lambda s: {
            **_moe(s),
            "head_dim": s.head_dim,
            "layer_types": ["linear_attention", "full_attention"] * (s.layers // 2),
        },
    ),
    "gemma3n_text": (
        "Gemma3nTextConfig",
        lambda s: {
            **_decoder(s),
            "vocab_size_per_layer_input": s.vocab,
            "head_dim": s.head_dim,
            "num_kv_shared_layers": 0,
            "layer_types": ["sliding_attention", "full_attention"] * (s.layers // 2),
            "hidden_size_per_layer_input": 8,
            "laurel_rank": 4,
            "activation_sparsity_pattern": [0.95] + [0.0] * (s.layers - 1),
            "altup_num_inputs": 2,
        },
    ),
    "mamba": ("MambaConfig", lambda s: dict(vocab_size=s.vocab, hidden_size=s.hidden, num_hidden_layers=s.layers)),
    "gpt2": (
        "GPT2Config",
        lambda s: dict(
            vocab_size=s.vocab, n_embd=s.hidden, n_layer=s.layers, n_head=s.heads, n_positions=s.positions or 1024
        ),
    ),
    "bert": (
        "BertConfig",
        lambda s: {k: v for k, v in _decoder(s).items() if k != "num_key_value_heads"},
    ),
}

TINY_MODEL_TYPES = tuple(_CONFIGS)


def tiny_config(model_type, sizes=Sizes(), **overrides):
    """A transformers config of model_type at sizes, with overrides given as
    the config's own arguments."""
    import transformers

    if model_type not in _CONFIGS:
        raise ValueError(f"tiny_config: unknown model type {model_type!r}; choose from {TINY_MODEL_TYPES}")
    class_name, arguments = _CONFIGS[model_type]
    return getattr(transformers, class_name)(**{**arguments(sizes), **overrides})
