"""patch/unpatch on tiny, randomly initialised transformers models (built
from configs; nothing is downloaded): outputs, gradients, training,
recompute and unpatch. Skipped without transformers (the hf extra)."""

import copy

import pytest
import torch

import fused_acts
from fused_acts.testing import saved_bytes, tiny_config

transformers = pytest.importorskip("transformers")

# name -> (model type, model class, counts patch() must report)
MODELS = {
    "llama": ("llama", "LlamaForCausalLM", {"SwiGLU": 2, "SiLU": 2}),
    "mistral": ("mistral", "MistralForCausalLM", {"SwiGLU": 2, "SiLU": 2}),
    "qwen2": ("qwen2", "Qwen2ForCausalLM", {"SwiGLU": 2, "SiLU": 2}),
    "gemma": ("gemma", "GemmaForCausalLM", {"GeGLU": 2, "GELU": 2}),
    "phi3": ("phi3", "Phi3ForCausalLM", {"SwiGLU": 2, "SiLU": 2}),
    # Recognised by their forward's computation, as the ones above are.
    "olmo2": ("olmo2", "Olmo2ForCausalLM", {"SwiGLU": 2, "SiLU": 2}),
    "gemma2": ("gemma2", "Gemma2ForCausalLM", {"GeGLU": 2, "GELU": 2}),
    "glm": ("glm", "GlmForCausalLM", {"SwiGLU": 2, "SiLU": 2}),
    # MoE: the shared expert, the dense layers and the routed experts' gate
    # (their _apply_gate) are fused; the experts' activation module is swapped.
    "qwen2_moe": ("qwen2_moe", "Qwen2MoeForCausalLM", {"SwiGLU": 2, "SiLU": 4, "SwiGLUExperts": 2}),
    "qwen3_moe": ("qwen3_moe", "Qwen3MoeForCausalLM", {"SiLU": 2, "SwiGLUExperts": 2}),
    "mixtral": ("mixtral", "MixtralForCausalLM", {"SiLU": 2, "SwiGLUExperts": 2}),
    # GPT-OSS's experts: the clamped SwiGLU, gate and up interleaved.
    "gpt_oss": ("gpt_oss", "GptOssForCausalLM", {"ClampedSwiGLUExperts": 2}),
    "deepseek_v3": ("deepseek_v3", "DeepseekV3ForCausalLM", {"SwiGLU": 2, "SiLU": 3, "SwiGLUExperts": 1}),
    # The routed experts' bmm forward traces, and is fused too.
    "llama4": ("llama4_text", "Llama4ForCausalLM", {"SwiGLU": 3, "SiLU": 3}),
    # ReLU² (relu2): only the activation module; its MLP has no gate.
    "nemotron": ("nemotron", "NemotronForCausalLM", {"ReLUSquared": 2}),
    "gpt2": ("gpt2", "GPT2LMHeadModel", {"GELU": 2}),
    "bert": ("bert", "BertForMaskedLM", {"GELU": 3}),
    # The LM head's forward(features, **kwargs) calls transformers' global gelu.
    "roberta": ("roberta", "RobertaForMaskedLM", {"GELU": 3}),
    # A tanh-GELU written out, constants rounded, in a custom autograd.Function.
    "bloom": ("bloom", "BloomForCausalLM", {"GELU": 2}),
    # GPT-OSS's clamped SwiGLU under MiniMax's names, in the MLP and the experts.
    "minimax_m3": ("minimax_m3_vl_text", "MiniMaxM3VLForCausalLM", {"ClampedSwiGLU": 2, "ClampedSwiGLUExperts": 2}),
    # A SwiGLU in float32, in the MLP and the experts.
    "beam": ("beam", "BeamForCausalLM", {"SwiGLU": 1, "SwiGLUExperts": 1, "SiLU": 2}),
    # silu(clamp(gate)) * clamp(up), clamps and all: the clamped SwiGLU without alpha or offset.
    "hy_v4": ("hy_v4", "HYV4ForCausalLM", {"SwiGLU": 2, "ClampedSwiGLUExperts": 1, "SiLU": 2}),
    "deepseek_v4": ("deepseek_v4", "DeepseekV4ForCausalLM", {"ClampedSwiGLU": 2, "ClampedSwiGLUExperts": 2, "SiLU": 4}),
    # xIELU: its module swapped for the fused one, holding the same parameters.
    "apertus": ("apertus", "ApertusForCausalLM", {"XIELU": 2}),
    # Its gated RMSNorm, and the MoE's experts and shared expert.
    "qwen3_next": ("qwen3_next", "Qwen3NextForCausalLM", {"SwiGLU": 3, "SwiGLUExperts": 2, "SiLU": 4}),
    # The MLP's gaussian top-k stays eager; its GeGLU is fused. The decoder
    # layers' own act_fn runs from a forward that does not trace.
    "gemma3n": ("gemma3n_text", "Gemma3nForCausalLM", {"GeGLU": 2, "GELU": 2, "GELU (unverified)": 2}),
}


def build(name, dtype=torch.float32):
    torch.manual_seed(0)
    model_type, cls_name, _ = MODELS[name]
    model = getattr(transformers, cls_name)(tiny_config(model_type)).to(dtype)
    ids = torch.randint(1, 128, (2, 12), generator=torch.Generator().manual_seed(1))
    return model, ids


def train_losses(model, ids, steps):
    """The loss at each of steps AdamW steps on ids, in training mode."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def loss_and_grads(model, ids):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), out.loss.detach(), grads


# The op that MoE models' experts run once patched.
EXPERTS_OP = {
    "qwen2_moe": "swiglu_packed",
    "qwen3_moe": "swiglu_packed",
    "mixtral": "swiglu_packed",
    "deepseek_v3": "swiglu_packed",
    "gpt_oss": "clamped_swiglu_packed",
    "minimax_m3": "clamped_swiglu_packed",
    "beam": "swiglu",
    "hy_v4": "clamped_swiglu_packed",
    "deepseek_v4": "clamped_swiglu_packed",
    "qwen3_next": "swiglu_packed",
}

# The models patched with recompute=True too: separate gate and up, and packed (Phi-3).
RECOMPUTE_MODELS = ["llama", "qwen2", "phi3"]


@pytest.mark.parametrize(
    "name, recompute",
    [pytest.param(name, False, id=name) for name in MODELS]
    + [pytest.param(name, True, id=f"{name}-recompute") for name in RECOMPUTE_MODELS],
)
def test_patched_model_matches_and_unpatch_restores(name, recompute):
    model, ids = build(name)
    model.eval()  # no dropout: runs must be comparable
    ref_logits, ref_loss, ref_grads = loss_and_grads(model, ids)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert fused_acts.patch(model, recompute=recompute) == MODELS[name][2]
    assert fused_acts.patch(model, recompute=recompute) == {}
    with torch.profiler.profile() as prof:
        logits, loss, grads = loss_and_grads(model, ids)
    fused_events = {e.name for e in prof.events() if e.name.startswith("fused_acts::")}
    assert fused_events, "no fused op ran"
    if name in EXPERTS_OP:
        assert f"fused_acts::{EXPERTS_OP[name]}" in fused_events, fused_events
    # Recompute's packed FFN (Phi-3) writes gate‖up's gradient over gate‖up.
    overwrote = "fused_acts::swiglu_packed_backward_" in fused_events
    assert overwrote == (recompute and name == "phi3"), fused_events
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    for n in ref_grads:
        torch.testing.assert_close(grads[n], ref_grads[n], rtol=1e-4, atol=1e-5, msg=n)
    fused_acts.unpatch(model)
    assert state.keys() == model.state_dict().keys()
    restored_logits, _, restored_grads = loss_and_grads(model, ids)
    assert torch.equal(restored_logits, ref_logits)
    assert all(torch.equal(restored_grads[n], ref_grads[n]) for n in ref_grads)


@pytest.mark.parametrize("name", MODELS)
def test_patched_model_close_in_bfloat16(name):
    model, ids = build(name, torch.bfloat16)
    model.eval()
    ref = model(input_ids=ids).logits.float()
    fused_acts.patch(model)
    out = model(input_ids=ids).logits.float()
    assert (out - ref).abs().max() <= 0.05 * ref.abs().max()


@pytest.mark.parametrize("name", MODELS)
def test_patched_model_trains(name):
    model, ids = build(name)
    fused_acts.patch(model)
    losses = train_losses(model, ids, steps=8)
    assert losses[-1] < losses[0] * 0.9, losses


def test_patched_clip_text_model_matches_and_unpatch_restores():
    """CLIP's text tower uses QuickGELU: fused, its outputs and gradients are eager's."""
    config = transformers.CLIPTextConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=64, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.CLIPTextModel(config).eval()
    ids = torch.randint(3, 128, (2, 12), generator=torch.Generator().manual_seed(1))

    def run():
        model.zero_grad(set_to_none=True)
        out = model(input_ids=ids).last_hidden_state
        out.pow(2).mean().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    ref_out, ref_grads = run()
    assert fused_acts.patch(model) == {"QuickGELU": 2}
    with torch.profiler.profile() as prof:
        out, grads = run()
    assert any(e.name.startswith("fused_acts::swish") for e in prof.events())
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    for n in ref_grads:
        torch.testing.assert_close(grads[n], ref_grads[n], rtol=1e-4, atol=1e-5, msg=n)
    fused_acts.unpatch(model)
    assert torch.equal(run()[0], ref_out)


def test_patched_model_survives_deepcopy_and_compile():
    model, ids = build("llama")
    model.eval()
    fused_acts.patch(model)
    copied = copy.deepcopy(model)
    torch.testing.assert_close(copied(input_ids=ids).logits, model(input_ids=ids).logits)
    mlp = copied.model.layers[0].mlp
    x = torch.randn(2, 3, 32)
    compiled = torch.compile(mlp, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), mlp(x))


@pytest.mark.parametrize("name", RECOMPUTE_MODELS)
def test_recompute_keeps_only_input_gate_and_up(name):
    """Saved for backward per FFN: its input and gate and up (gate‖up), not h."""
    model, _ = build(name)
    mlp = model.model.layers[0].mlp
    x = torch.randn(2, 12, 32, requires_grad=True)
    hidden = 64
    inputs_gate_up = (x.numel() + 2 * 2 * 12 * hidden) * 4
    fused_acts.patch(mlp)
    fused = saved_bytes(mlp, x)
    fused_acts.patch(mlp, recompute=True)
    recompute = saved_bytes(mlp, x)
    assert recompute <= inputs_gate_up * 1.05 < fused, (recompute, inputs_gate_up, fused)


def test_recompute_trains_and_compiles():
    model, ids = build("llama")
    fused_acts.patch(model, recompute=True)
    losses = train_losses(model, ids, steps=4)
    assert losses[-1] < losses[0] * 0.95, losses
    mlp = model.model.layers[0].mlp
    torch._dynamo.reset()
    compiled = torch.compile(mlp, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 32)

    def output_and_grad(fn):
        xi = x.clone().requires_grad_()
        out = fn(xi)
        (grad,) = torch.autograd.grad(out.sum(), xi)
        return out, grad

    for actual, expected in zip(output_and_grad(compiled), output_and_grad(mlp)):
        torch.testing.assert_close(actual, expected)


def test_mamba_activation_is_counted_apart():
    """Mamba's mixer holds an activation module but calls ACT2FN["silu"] by
    name, from a forward that does not trace: the swapped module never runs,
    and patch says it cannot tell."""
    torch.manual_seed(0)
    model = transformers.MambaForCausalLM(tiny_config("mamba")).eval()
    ids = torch.randint(1, 128, (2, 12), generator=torch.Generator().manual_seed(1))
    expected = model(input_ids=ids).logits
    assert fused_acts.patch(model) == {"SiLU (unverified)": 2}
    with torch.profiler.profile() as prof:
        logits = model(input_ids=ids).logits
    assert not [e.name for e in prof.events() if e.name.startswith("fused_acts::")]
    assert torch.equal(logits, expected)
