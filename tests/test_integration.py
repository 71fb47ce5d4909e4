"""patch/unpatch on plain PyTorch MLPs and tiny, randomly initialised
transformers models (built from configs; nothing is downloaded), plus the
SwiGLUFFN module."""

import copy

import pytest
import torch
from torch import nn

import fused_acts
from benchmarks.ffn import saved_bytes
from fused_acts import nn as fnn


def test_plain_mlp_same_outputs_and_idempotent():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 32),
        nn.GELU(),
        nn.Linear(32, 32),
        nn.SiLU(),
        nn.Linear(32, 32),
        nn.GELU("tanh"),
        nn.Mish(),
        nn.ReLU(),
    )
    x = torch.randn(4, 16)
    ref = model(x)
    assert fused_acts.patch(model) == {"GELU": 2, "SiLU": 1, "Mish": 1}
    assert fused_acts.patch(model) == {}
    assert isinstance(model[1], fnn.GELU) and model[5].approximate == "tanh" and isinstance(model[7], nn.ReLU)
    torch.testing.assert_close(model(x), ref)
    assert fused_acts.unpatch(model) == {"GELU": 2, "SiLU": 1, "Mish": 1}
    assert type(model[1]) is nn.GELU and torch.equal(model(x), ref)


class GatedMLP(nn.Module):
    def __init__(self, act=None):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = nn.Linear(4, 8), nn.Linear(4, 8), nn.Linear(8, 4)
        self.act_fn = nn.SiLU() if act is None else act

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


def test_gated_mlp_recognised_by_its_forward():
    """Any class whose forward computes Llama's MLP, whatever its names,
    annotations, docstring, decorators or statements around it; a call the
    original would refuse fails with the original's own error."""

    class Renamed(GatedMLP):
        def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
            """Llama's MLP, under another name."""
            down_proj = self.down_proj(self.act_fn(self.gate_proj(hidden_states)) * self.up_proj(hidden_states))
            return down_proj

    class WithDropout(GatedMLP):
        def forward(self, x):
            down_proj = self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))
            return nn.functional.dropout(down_proj, 0.5, self.training)

    def traced(forward):
        return forward

    class Decorated(GatedMLP):
        @traced
        def forward(self, x):
            return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))

    torch.manual_seed(0)
    x = torch.randn(2, 4)
    model = Renamed(nn.GELU("tanh"))
    ref = model(x)
    assert fused_acts.patch(model) == {"GeGLU": 1, "GELU": 1}
    assert isinstance(model, Renamed) and type(model) is not Renamed
    torch.testing.assert_close(model(x), ref)
    torch.testing.assert_close(model(hidden_states=x), ref)
    with pytest.raises(TypeError, match=r"Renamed.forward\(\) got an unexpected keyword argument 'mask'"):
        model(x, mask=None)
    with pytest.raises(TypeError, match=r"Renamed.forward\(\) takes 2 positional arguments but 3 were given"):
        model(x, x)
    with pytest.raises(TypeError, match=r"Renamed.forward\(\) missing 1 required positional argument"):
        model()
    for cls in (WithDropout, Decorated):
        model = cls().eval()
        ref = model(x)
        assert fused_acts.patch(model) == {"SwiGLU": 1, "SiLU": 1}
        assert type(model) is not cls
        torch.testing.assert_close(model(x), ref)


def test_transformers_activations_are_replaced():
    """Each transformers activation that computes exactly one of ours, by its ACT2FN name."""
    transformers = pytest.importorskip("transformers")
    expected = {"gelu": "GELU", "gelu_new": "GELU", "gelu_pytorch_tanh": "GELU", "gelu_fast": "GELU",
                "silu": "SiLU", "mish": "Mish", "quick_gelu": "QuickGELU", "relu2": "ReLUSquared"}  # fmt: skip
    x = torch.randn(4, 33) * 4
    for name, label in expected.items():
        model = nn.Sequential(transformers.activations.ACT2FN[name])
        ref = model(x)
        assert fused_acts.patch(model) == {label: 1}, name
        torch.testing.assert_close(model(x), ref, msg=name)
        assert fused_acts.unpatch(model) == {label: 1} and torch.equal(model(x), ref)


def test_activations_with_hooks_are_left_alone():
    """A hook on an activation module still fires after patch(): that module
    is neither replaced nor fused into its MLP."""
    seen = []
    model = nn.Sequential(GatedMLP(), nn.GELU(), GatedMLP())
    model[0].act_fn.register_forward_hook(lambda module, args, out: seen.append("act_fn"))
    model[1].register_forward_pre_hook(lambda module, args: seen.append("gelu"))
    assert fused_acts.patch(model) == {"SwiGLU": 1, "SiLU": 1}  # model[2] only
    model(torch.randn(2, 4))
    assert seen == ["act_fn", "gelu"]


def test_unknown_modules_are_left_alone():
    class MyMLP(nn.Module):  # gate_proj/up_proj/down_proj, but it adds where Llama multiplies
        def __init__(self):
            super().__init__()
            self.gate_proj, self.up_proj, self.down_proj = nn.Linear(4, 8), nn.Linear(4, 8), nn.Linear(8, 4)
            self.act_fn = nn.SiLU()

        def forward(self, x):
            return self.down_proj(self.act_fn(self.gate_proj(x)) + self.up_proj(x))

    model = MyMLP()
    x = torch.randn(2, 4)
    ref = model(x)
    assert fused_acts.patch(model) == {"SiLU": 1}
    assert type(model) is MyMLP
    torch.testing.assert_close(model(x), ref)


@pytest.mark.parametrize("bias", [False, True])
def test_swiglu_ffn_recompute(bias):
    """recompute=True: the same outputs and gradients, and only the input and gate‖up kept for backward."""
    torch.manual_seed(0)
    ffn = fnn.SwiGLUFFN(16, 40, bias=bias)
    lean = fnn.SwiGLUFFN(16, 40, bias=bias, recompute=True)
    lean.load_state_dict(ffn.state_dict())
    assert "recompute=True" in repr(lean)
    x = torch.randn(3, 5, 16, requires_grad=True)
    grad_out = torch.randn(3, 5, 16)
    results = []
    for module in (ffn, lean):
        module.zero_grad()
        xi = x.detach().clone().requires_grad_()
        out = module(xi)
        out.backward(grad_out)
        results.append([out, xi.grad, *(p.grad for p in module.parameters())])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)
    kept = saved_bytes(lean, x)
    assert kept <= (x.numel() + 3 * 5 * 80) * 4 * 1.05 < saved_bytes(ffn, x)


def test_swiglu_ffn_loads_separate_checkpoint():
    torch.manual_seed(0)

    class SeparateMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate_proj, self.up_proj = nn.Linear(16, 40, bias=True), nn.Linear(16, 40, bias=True)
            self.down_proj = nn.Linear(40, 16, bias=True)

        def forward(self, x):
            return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))

    separate = SeparateMLP()
    ffn = fnn.SwiGLUFFN(16, 40, bias=True)
    ffn.load_separate_state_dict({f"mlp.{k}": v for k, v in separate.state_dict().items()}, prefix="mlp.")
    x = torch.randn(3, 5, 16, requires_grad=True)
    torch.testing.assert_close(ffn(x), separate(x))
    assert "dim=16, hidden_dim=40" in repr(ffn)
    with pytest.raises(KeyError, match="gate_proj.weight and up_proj.weight"):
        ffn.load_separate_state_dict({"gate_proj.weight": torch.zeros(40, 16)})


transformers = pytest.importorskip("transformers")

TINY = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)

# name -> (config, model class, counts patch() must report)
MODELS = {
    "llama": (lambda: transformers.LlamaConfig(**TINY), "LlamaForCausalLM", {"SwiGLU": 2, "SiLU": 2}),
    "mistral": (lambda: transformers.MistralConfig(**TINY), "MistralForCausalLM", {"SwiGLU": 2, "SiLU": 2}),
    "qwen2": (lambda: transformers.Qwen2Config(**TINY), "Qwen2ForCausalLM", {"SwiGLU": 2, "SiLU": 2}),
    "gemma": (lambda: transformers.GemmaConfig(**TINY, head_dim=8), "GemmaForCausalLM", {"GeGLU": 2, "GELU": 2}),
    "phi3": (lambda: transformers.Phi3Config(**TINY, pad_token_id=0), "Phi3ForCausalLM", {"SwiGLU": 2, "SiLU": 2}),
    # Recognised by their forward's computation, as the ones above are.
    "olmo2": (lambda: transformers.Olmo2Config(**TINY, eos_token_id=1), "Olmo2ForCausalLM", {"SwiGLU": 2, "SiLU": 2}),
    "gemma2": (lambda: transformers.Gemma2Config(**TINY, head_dim=8), "Gemma2ForCausalLM", {"GeGLU": 2, "GELU": 2}),
    "glm": (
        lambda: transformers.GlmConfig(**TINY, head_dim=8, pad_token_id=0),
        "GlmForCausalLM",
        {"SwiGLU": 2, "SiLU": 2},
    ),
    # MoE: the shared expert, the dense layers and the routed experts' gate
    # (their _apply_gate) are fused; the experts' activation module is swapped.
    "qwen2_moe": (
        lambda: transformers.Qwen2MoeConfig(
            **TINY, moe_intermediate_size=16, shared_expert_intermediate_size=32, num_experts=4, num_experts_per_tok=2
        ),
        "Qwen2MoeForCausalLM",
        {"SwiGLU": 2, "SiLU": 4, "SwiGLUExperts": 2},
    ),
    "qwen3_moe": (
        lambda: transformers.Qwen3MoeConfig(
            **TINY, moe_intermediate_size=16, num_experts=4, num_experts_per_tok=2, head_dim=8
        ),
        "Qwen3MoeForCausalLM",
        {"SiLU": 2, "SwiGLUExperts": 2},
    ),
    "mixtral": (
        lambda: transformers.MixtralConfig(**TINY, num_local_experts=4, num_experts_per_tok=2),
        "MixtralForCausalLM",
        {"SiLU": 2, "SwiGLUExperts": 2},
    ),
    # GPT-OSS's experts: the clamped SwiGLU, gate and up interleaved.
    "gpt_oss": (
        lambda: transformers.GptOssConfig(
            **TINY,
            num_local_experts=4,
            num_experts_per_tok=2,
            head_dim=8,
            sliding_window=8,
            layer_types=["sliding_attention", "full_attention"],
        ),
        "GptOssForCausalLM",
        {"ClampedSwiGLUExperts": 2},
    ),
    "deepseek_v3": (
        lambda: transformers.DeepseekV3Config(
            **TINY,
            moe_intermediate_size=16,
            n_routed_experts=4,
            num_experts_per_tok=2,
            n_group=1,
            topk_group=1,
            first_k_dense_replace=1,
            q_lora_rank=16,
            kv_lora_rank=16,
            qk_rope_head_dim=4,
            qk_nope_head_dim=4,
            v_head_dim=8,
        ),
        "DeepseekV3ForCausalLM",
        {"SwiGLU": 2, "SiLU": 3, "SwiGLUExperts": 1},
    ),
    "llama4": (
        lambda: transformers.Llama4TextConfig(
            **TINY, intermediate_size_mlp=64, num_local_experts=2, head_dim=8, interleave_moe_layer_step=2
        ),
        "Llama4ForCausalLM",
        {"SwiGLU": 3, "SiLU": 3},  # the routed experts' bmm forward traces, and is fused too
    ),
    # ReLU² (relu2): only the activation module; its MLP has no gate.
    "nemotron": (lambda: transformers.NemotronConfig(**TINY), "NemotronForCausalLM", {"ReLUSquared": 2}),
    "gpt2": (
        lambda: transformers.GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64),
        "GPT2LMHeadModel",
        {"GELU": 2},
    ),
    "bert": (
        lambda: transformers.BertConfig(
            vocab_size=128,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=64,
        ),
        "BertForMaskedLM",
        {"GELU": 3},
    ),
}


def build(name, dtype=torch.float32):
    torch.manual_seed(0)
    config_fn, cls_name, _ = MODELS[name]
    model = getattr(transformers, cls_name)(config_fn()).to(dtype)
    ids = torch.randint(1, 128, (2, 12), generator=torch.Generator().manual_seed(1))
    return model, ids


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
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
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


def ffn_grads(ffn, x, grad_out, case):
    """ffn's output and gradients (x's, then its parameters'), as `case` runs
    the backward, and whether the backward wrote gate‖up's gradient in place."""
    ffn.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    params = list(ffn.parameters())
    with torch.profiler.profile() as prof:
        if case == "saved_tensors_hooks":
            with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
                out = ffn(x)
        else:
            out = (torch.compile(ffn, fullgraph=True, backend="aot_eager") if case == "compiled" else ffn)(x)
        if case == "create_graph":
            grads = torch.autograd.grad(out, [x, *params], grad_out, create_graph=True)
        else:
            out.backward(grad_out, retain_graph=case == "retain_graph")
            if case == "retain_graph":
                out.backward(grad_out)
            grads = [x.grad, *(p.grad for p in params)]
    overwrote = any(e.name == "fused_acts::swiglu_packed_backward_" for e in prof.events())
    return [out.detach(), *(g.detach() for g in grads)], overwrote


@pytest.mark.parametrize(
    "case", ["plain", "retain_graph", "create_graph", "saved_tensors_hooks", "hooked_gate_up_proj", "compiled"]
)
def test_recompute_overwrites_gate_up_only_when_nothing_else_reads_it(case):
    """SwiGLUFFN(recompute=True) writes gate‖up's gradient over gate‖up only
    where nothing can read the buffer again: a plain backward, and the last
    of several (retain_graph=True before it). Where it could be read (a
    recorded graph, saved-tensor hooks, a forward hook, a compiled graph) it
    allocates. Every case gives eager's gradients."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    ffn = fnn.SwiGLUFFN(16, 40, bias=True, recompute=True)
    reference = fnn.SwiGLUFFN(16, 40, bias=True)
    reference.load_state_dict(ffn.state_dict())
    if case == "hooked_gate_up_proj":
        ffn.gate_up_proj.register_forward_hook(lambda module, args, out: None)
    x, grad_out = torch.randn(3, 5, 16), torch.randn(3, 5, 16)
    actual, overwrote = ffn_grads(ffn, x, grad_out, case)
    expected, _ = ffn_grads(reference, x, grad_out, case if case in ("retain_graph", "create_graph") else "plain")
    assert overwrote == (case in ("plain", "retain_graph"))
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)


def test_recompute_trains_and_compiles():
    model, ids = build("llama")
    fused_acts.patch(model, recompute=True)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(4):
        optimizer.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
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
