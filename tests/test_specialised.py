"""patch() reaches forwards that fx traces only once specialised to the call
as callers make it (*args and **kwargs empty, a branch on the input's
device type, a helper method, a global activation module), activations
written out as their formula, and custom autograd.Functions that compute
one; and leaves alone what would change a result, or counts apart what it
cannot tell runs."""

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fused_acts

DIM, HIDDEN = 16, 24


def fused_ops_run(fn):
    with torch.profiler.profile() as prof:
        fn()
    return {e.name.removeprefix("fused_acts::") for e in prof.events() if e.name.startswith("fused_acts::")}


def assert_patched_matches(model, counts, ops, *inputs):
    """patch(model) reports counts, runs ops, and matches the unpatched model
    in output and every gradient; unpatch restores it."""
    torch.manual_seed(0)
    reference = copy.deepcopy(model)
    assert fused_acts.patch(model) == counts
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    ref_leaves = [x.detach().clone().requires_grad_() for x in inputs]
    assert fused_ops_run(lambda: model(*[x.detach().requires_grad_() for x in inputs]).sum().backward()) == ops
    model.zero_grad()
    out, expected = model(*leaves), reference(*ref_leaves)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    out.sum().backward()
    expected.sum().backward()
    for x, ref in zip(leaves, ref_leaves):
        torch.testing.assert_close(x.grad, ref.grad, rtol=1e-5, atol=1e-6)
    for (name, p), ref in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, ref.grad, rtol=1e-5, atol=1e-6, msg=name)
    fused_acts.unpatch(model)
    assert type(model) is type(reference) and not [k for k in vars(model) if k.startswith("_fused_acts")]


class VarArgs(nn.Module):
    """diffusers' GEGLU: forward(hidden_states, *args, **kwargs), warning on a deprecated argument."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(DIM, 2 * HIDDEN)

    def forward(self, hidden_states, *args, **kwargs):
        if len(args) > 0 or kwargs.get("scale", None) is not None:
            warnings.warn("scale is deprecated", FutureWarning, stacklevel=2)
        hidden_states, gate = self.proj(hidden_states).chunk(2, dim=-1)
        return hidden_states * F.gelu(gate)


def test_varargs_forward_is_fused_and_other_calls_run_the_original():
    model = VarArgs()
    assert_patched_matches(model, {"GeGLU": 1}, {"geglu_packed", "geglu_packed_backward"}, torch.randn(3, DIM))
    fused_acts.patch(model)
    x = torch.randn(3, DIM)
    for call in (lambda: model(x, 2.0), lambda: model(x, scale=2.0)):
        with pytest.warns(FutureWarning, match="scale is deprecated"):
            assert fused_ops_run(call) == set()


class DeviceBranch(nn.Module):
    """diffusers' GELU: a helper method with a branch on the gate's device type."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(DIM, HIDDEN)

    def gelu(self, gate):
        on_meta = gate.device.type == "meta"  # one condition, branched on twice
        if on_meta or gate.is_mps:
            return gate * 2
        if on_meta:
            raise AssertionError("unreachable")
        return F.gelu(gate, approximate="tanh")

    def forward(self, x):
        return self.gelu(self.proj(x))


def test_a_device_type_branch_is_traced_per_device_type():
    model = DeviceBranch()
    assert_patched_matches(model, {"GELU": 1}, {"gelu", "gelu_backward"}, torch.randn(3, DIM))
    fused_acts.patch(model)
    # On the meta device the branch goes the other way: the original runs.
    meta = copy.deepcopy(model).to("meta")
    out = meta(torch.empty(3, DIM, device="meta"))
    assert out.device.type == "meta" and out.shape == (3, HIDDEN)
    assert fused_ops_run(lambda: meta(torch.empty(3, DIM, device="meta"))) == set()
    assert fused_ops_run(lambda: model(torch.randn(3, DIM))) == {"gelu"}


_GLOBAL_GELU = nn.GELU()


class GlobalActivation(nn.Module):
    """RoBERTa's LM head: forward(features, **kwargs) calls a module-level activation."""

    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(DIM, DIM)

    def forward(self, features, **kwargs):
        return _GLOBAL_GELU(self.dense(features))


def test_a_global_activation_module_is_traced_through():
    assert_patched_matches(GlobalActivation(), {"GELU": 1}, {"gelu", "gelu_backward"}, torch.randn(3, DIM))


# Activations written out, as models write them (x the input).
FORMULAS = {
    "bloom": (lambda x: x * 0.5 * (1.0 + torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x))), "tanh"),
    "fast_gelu": (lambda x: 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))), "tanh"),
    "gelu_new": (
        lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0)))),
        "tanh",
    ),
    "erf": (lambda x: x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0))), "none"),
    "erf_method": (lambda x: 0.5 * x * (1 + (x * 0.7071067811865476).erf()), "none"),
}


class Formula(nn.Module):
    def __init__(self, formula):
        super().__init__()
        self.proj, self.formula = nn.Linear(DIM, HIDDEN), formula

    def forward(self, x):
        return self.formula(self.proj(x))


@pytest.mark.parametrize("name", FORMULAS)
def test_an_activation_written_out_is_the_fused_one(name):
    formula, approximate = FORMULAS[name]
    assert_patched_matches(Formula(formula), {"GELU": 1}, {"gelu", "gelu_backward"}, torch.randn(5, DIM))
    model = Formula(formula)
    fused_acts.patch(model)
    x = torch.randn(64, DIM)
    with torch.no_grad():
        h = model.proj(x)
        torch.testing.assert_close(model(x), F.gelu(h, approximate=approximate))
        bf16 = copy.deepcopy(model).bfloat16()
        torch.testing.assert_close(bf16(x.bfloat16()).float(), formula(h.bfloat16()).float(), rtol=2e-2, atol=2e-2)


# Formulas that are not an activation we fuse: left alone.
NOT_FORMULAS = {
    "rounded_constant": lambda x: 0.5 * x * (1.0 + torch.tanh(0.798 * (x + 0.044715 * x * x * x))),
    "no_cubic": lambda x: 0.5 * x * (1.0 + torch.tanh(0.7978845608 * x)),
    "erf_scaled": lambda x: x * 0.5 * (1.0 + torch.erf(x / 1.5)),
}


@pytest.mark.parametrize("name", NOT_FORMULAS)
def test_a_formula_of_another_function_is_left_alone(name):
    model = Formula(NOT_FORMULAS[name])
    assert fused_acts.patch(model) == {}


class TanhGelu(torch.autograd.Function):
    """BLOOM's GeLUFunction: the formula forward, its derivative backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * 0.5 * (1.0 + torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x)))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        t = torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x))
        return g * (0.5 * x * ((1 - t * t) * (0.79788456 + 0.1070322243 * x * x)) + 0.5 * (1 + t))


class StraightThrough(torch.autograd.Function):
    """GELU forward, identity backward: not the same function."""

    @staticmethod
    def forward(ctx, x):
        return F.gelu(x)

    @staticmethod
    def backward(ctx, g):
        return g


class CustomFunction(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.proj, self.function = nn.Linear(DIM, HIDDEN), function

    def forward(self, x):
        return self.function.apply(self.proj(x))


def test_a_custom_function_is_fused_only_where_forward_and_backward_are_the_activation():
    model = CustomFunction(TanhGelu)
    assert_patched_matches(model, {"GELU": 1}, {"gelu", "gelu_backward"}, torch.randn(5, DIM))
    straight = CustomFunction(StraightThrough)
    assert fused_acts.patch(straight) == {}


class TensorConstants(nn.Module):
    """Gemma3n's gaussian top-k: tensors made in the forward, which fx keeps as constants."""

    def __init__(self):
        super().__init__()
        self.gate_proj, self.up_proj = nn.Linear(DIM, HIDDEN), nn.Linear(DIM, HIDDEN)

    def forward(self, x):
        gate = self.gate_proj(x)
        cutoff = torch.distributions.normal.Normal(0, 1).icdf(torch.tensor(0.9))
        gate = F.relu(gate - gate.mean(-1, keepdim=True) - cutoff * gate.std(-1, keepdim=True))
        return F.gelu(gate, approximate="tanh") * self.up_proj(x)


def test_tensor_constants_of_a_trace_are_kept_and_dropped_with_it():
    model = TensorConstants()
    assert_patched_matches(model, {"GeGLU": 1}, {"geglu", "geglu_backward"}, torch.randn(5, DIM))
    fused_acts.patch(model)
    assert [k for k in vars(model) if k.startswith("_fused_acts_tensor_constant")]
    clone = copy.deepcopy(model)
    torch.testing.assert_close(clone(torch.ones(2, DIM)), model(torch.ones(2, DIM)))


class ByName(nn.Module):
    """Mamba's mixer: holds an activation module, but calls another by name,
    from a forward that does not trace."""

    def __init__(self):
        super().__init__()
        self.act = nn.SiLU()
        self.proj = nn.Linear(DIM, DIM)

    def forward(self, x):
        for _ in range(int(x.shape[0])):
            x = F.silu(self.proj(x))
        return x


def test_a_swapped_module_that_may_not_run_is_counted_apart():
    model = ByName()
    reference = copy.deepcopy(model)
    assert fused_acts.patch(model) == {"SiLU (unverified)": 1}
    x = torch.randn(3, DIM)
    torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
    assert fused_ops_run(lambda: model(x)) == set()


class DtypeBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(DIM, HIDDEN)

    def forward(self, x):
        h = self.proj(x)
        if h.dtype == torch.float16:
            return h
        return F.gelu(h)


def test_other_branches_on_inputs_leave_the_forward_alone():
    model = DtypeBranch()
    assert fused_acts.patch(model) == {}
    assert type(model) is DtypeBranch


class ClampedGate(nn.Module):
    """GPT-OSS's clamped SwiGLU in MiniMax's words: halves, then clamps, swish and up + 1."""

    def __init__(self, gate_limit=0.5, up_limit=0.5):  # limits the inputs reach
        super().__init__()
        self.proj = nn.Linear(DIM, 2 * HIDDEN)
        self.swiglu_limit, self.up_limit = gate_limit, up_limit

    def forward(self, x):
        gate, up = self.proj(x).chunk(2, dim=-1)
        gate = gate.clamp(max=self.swiglu_limit)
        up = up.clamp(min=-self.up_limit, max=self.up_limit)
        return (up + 1.0) * (gate * torch.sigmoid(gate * 1.702))


def test_gpt_oss_clamped_swiglu_is_recognised_by_its_computation():
    ops = {"clamped_swiglu_packed", "clamped_swiglu_packed_backward"}
    assert_patched_matches(ClampedGate(), {"ClampedSwiGLU": 1}, ops, torch.randn(6, DIM))


def test_a_clamped_product_of_another_function_is_not_the_clamped_op():
    """Gate and up clamped at different limits: not GPT-OSS's function; only the swish is fused."""
    model = ClampedGate(up_limit=0.25)
    reference = copy.deepcopy(model)
    assert fused_acts.patch(model) == {"QuickGELU": 1}
    x = torch.randn(6, DIM)
    torch.testing.assert_close(model(x), reference(x))


class DeepSeekV4Gate(nn.Module):
    """DeepSeek-V4's MLP: the clamped halves, silu (a module or a function), no alpha, no offset."""

    def __init__(self, act=None, limit=0.5, up_offset=None):
        super().__init__()
        self.gate_proj, self.up_proj = nn.Linear(DIM, HIDDEN), nn.Linear(DIM, HIDDEN)
        self.act_fn = act
        self.limit, self.up_offset = limit, up_offset

    def forward(self, x):
        gate = self.gate_proj(x).clamp(max=self.limit)
        up = self.up_proj(x).clamp(min=-self.limit, max=self.limit)
        if self.up_offset is not None:
            up = up + self.up_offset
        act = self.act_fn(gate) if self.act_fn is not None else F.silu(gate)
        return act * up


@pytest.mark.parametrize(
    "act, up_offset",
    [(nn.SiLU(), None), (None, None), (None, 0.5)],
    ids=["silu-module", "silu-function", "offset-0.5"],
)
def test_deepseek_v4_clamped_swiglu_is_one_op_clamps_included(act, up_offset):
    ops = {"clamped_swiglu", "clamped_swiglu_backward"}
    model = DeepSeekV4Gate(act, up_offset=up_offset)
    counts = {"ClampedSwiGLU": 1, "SiLU": 1} if act is not None else {"ClampedSwiGLU": 1}
    assert_patched_matches(model, counts, ops, torch.randn(6, DIM))


@pytest.mark.parametrize("form", ["deepseek_v4", "gpt_oss"])
def test_clamped_sites_fall_back_to_their_formula(form):
    """Inputs the op does not take as they are (here float32 gate, float64 up) run eager's own expression."""
    from fused_acts._activations import Act, gated_op
    from fused_acts._fused_calls import gated_product

    gate, up = torch.randn(40) * 3, torch.randn(40, dtype=torch.float64) * 3
    if form == "deepseek_v4":
        act = Act("clamped_silu", (1.0, 1.0, 0.0))
        expected = F.silu(gate.clamp(max=1.0)) * up.clamp(-1.0, 1.0)
    else:
        act = Act("clamped_swish", (1.702, 1.0, 1.0))
        g = gate.clamp(max=1.0)
        expected = g * torch.sigmoid(g * 1.702) * (up.clamp(-1.0, 1.0) + 1)
    got = gated_product(gated_op(act), act, gate, up)
    assert got.dtype == torch.float64 and torch.equal(got, expected)
