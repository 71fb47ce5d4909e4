"""patch/unpatch on plain PyTorch MLPs, and the SwiGLUFFN module; on
transformers' models: test_models.py."""

import pytest
import torch
from torch import nn

import fused_acts
from fused_acts import nn as fnn
from fused_acts.testing import saved_bytes


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
