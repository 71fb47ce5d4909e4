"""patch() and the compile backend recognise fused activations by what a
forward computes: FFNs written in each style people train with, in these
tests' own words, and every case whose semantics would differ, which must
keep eager's results."""

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fused_acts

DIM, HIDDEN = 16, 24


class LlamaTutorial(nn.Module):
    """w1, w2, w3 with biases, as tutorials write LLaMA's FFN."""

    def __init__(self, bias=True):
        super().__init__()
        self.w1, self.w2, self.w3 = (
            nn.Linear(DIM, HIDDEN, bias),
            nn.Linear(HIDDEN, DIM, bias),
            nn.Linear(DIM, HIDDEN, bias),
        )

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Reference(LlamaTutorial):
    """Meta's reference and torchtitan: the same, without biases."""

    def __init__(self):
        super().__init__(bias=False)


class LitStyle(nn.Module):
    """litgpt's LLaMAMLP, and with approximate="tanh" its GemmaMLP."""

    def __init__(self, approximate=None):
        super().__init__()
        self.fc_1, self.fc_2, self.proj = nn.Linear(DIM, HIDDEN), nn.Linear(DIM, HIDDEN), nn.Linear(HIDDEN, DIM)
        self.approximate = approximate

    def forward(self, x):
        x_fc_1 = self.fc_1(x)
        x_fc_2 = self.fc_2(x)
        if self.approximate is None:
            x = F.silu(x_fc_1) * x_fc_2
        else:
            x = F.gelu(x_fc_1, approximate=self.approximate) * x_fc_2
        return self.proj(x)


class TimmSwiGLU(nn.Module):
    """timm's SwiGLU: separate gate and value projections, an activation module, dropout."""

    def __init__(self):
        super().__init__()
        self.fc1_g, self.fc1_x = nn.Linear(DIM, HIDDEN), nn.Linear(DIM, HIDDEN)
        self.act, self.drop, self.fc2 = nn.SiLU(), nn.Dropout(0.0), nn.Linear(HIDDEN, DIM)

    def forward(self, x):
        x_gate = self.fc1_g(x)
        x = self.fc1_x(x)
        x = self.act(x_gate) * x
        return self.fc2(self.drop(x))


class TimmGluMlp(nn.Module):
    """timm's GluMlp: one projection chunked, the gate first or last."""

    def __init__(self, act=None, gate_last=True):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(DIM, 2 * HIDDEN), nn.Linear(HIDDEN, DIM)
        self.act, self.gate_last = act if act is not None else nn.Sigmoid(), gate_last

    def forward(self, x):
        x = self.fc1(x)
        x1, x2 = x.chunk(2, dim=-1)
        x = x1 * self.act(x2) if self.gate_last else self.act(x1) * x2
        return self.fc2(x)


class DiffusersGEGLU(nn.Module):
    """diffusers' GEGLU: up first, gate second, no down projection."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(DIM, 2 * HIDDEN)

    def forward(self, hidden_states):
        hidden_states, gate = self.proj(hidden_states).chunk(2, dim=-1)
        return hidden_states * F.gelu(gate)


class ReluSquaredMLP(nn.Module):
    """nanoGPT-style relu² MLP, in three spellings."""

    def __init__(self, spelling="method"):
        super().__init__()
        self.c_fc, self.c_proj, self.spelling = nn.Linear(DIM, HIDDEN), nn.Linear(HIDDEN, DIM), spelling

    def forward(self, x):
        x = self.c_fc(x)
        if self.spelling == "method":
            x = F.relu(x).square()
        elif self.spelling == "pow":
            x = F.relu(x) ** 2
        else:
            x = torch.square(F.relu(x))
        return self.c_proj(x)


class TutorialGLU(nn.Module):
    """The original GLU as tutorials write it, F.glu, or nn.GLU."""

    def __init__(self, spelling="sigmoid"):
        super().__init__()
        self.linear, self.spelling, self.glu = nn.Linear(DIM, 2 * HIDDEN), spelling, nn.GLU()

    def forward(self, x):
        h = self.linear(x)
        if self.spelling == "F.glu":
            return F.glu(h, dim=-1)
        if self.spelling == "nn.GLU":
            return self.glu(h)
        x, gate = h.chunk(2, -1)
        return x * torch.sigmoid(gate)


class Slices(nn.Module):
    """One projection split by split(), by slices, or interleaved, ReLU-gated (ReGLU)."""

    def __init__(self, how):
        super().__init__()
        self.up, self.down, self.how = nn.Linear(DIM, 2 * HIDDEN), nn.Linear(HIDDEN, DIM), how

    def forward(self, x):
        h = self.up(x)
        if self.how == "split":
            gate, value = h.split(HIDDEN, dim=-1)
        elif self.how == "slices":
            half = h.shape[-1] // 2
            value, gate = h[..., :half], h[..., half:]
        else:
            gate, value = h[..., ::2], h[..., 1::2]
        return self.down(F.relu(gate) * value)


class FunctionalBlock(nn.Module):
    """Activations called as functions anywhere in a forward: GELU, and QuickGELU written out."""

    def __init__(self):
        super().__init__()
        self.fc, self.out = nn.Linear(DIM, DIM), nn.Linear(DIM, DIM)

    def forward(self, x):
        h = F.gelu(self.fc(x), approximate="tanh")
        h = h * torch.sigmoid(1.702 * h)
        return self.out(h) + F.silu(x)


# name -> (make the module, the fused ops that must run, what patch() counts)
STYLES = {
    "llama_tutorial": (LlamaTutorial, {"swiglu"}, {"SwiGLU": 1}),
    "reference": (Reference, {"swiglu"}, {"SwiGLU": 1}),
    "litgpt_llama": (LitStyle, {"swiglu"}, {"SwiGLU": 1}),
    "litgpt_gemma": (lambda: LitStyle("tanh"), {"geglu"}, {"GeGLU": 1}),
    "timm_swiglu": (TimmSwiGLU, {"swiglu"}, {"SwiGLU": 1, "SiLU": 1}),
    "timm_glu_gate_last": (TimmGluMlp, {"glu_packed"}, {"GLU": 1}),
    "timm_glu_gate_first": (
        lambda: TimmGluMlp(nn.SiLU(), gate_last=False),
        {"swiglu_packed"},
        {"SwiGLU": 1, "SiLU": 1},
    ),
    "diffusers_geglu": (DiffusersGEGLU, {"geglu_packed"}, {"GeGLU": 1}),
    "relu_squared_method": (ReluSquaredMLP, {"relu_squared"}, {"ReLUSquared": 1}),
    "relu_squared_pow": (lambda: ReluSquaredMLP("pow"), {"relu_squared"}, {"ReLUSquared": 1}),
    "relu_squared_square": (lambda: ReluSquaredMLP("square"), {"relu_squared"}, {"ReLUSquared": 1}),
    "glu_sigmoid": (TutorialGLU, {"glu_packed"}, {"GLU": 1}),
    "glu_F": (lambda: TutorialGLU("F.glu"), {"glu_packed"}, {"GLU": 1}),
    "glu_module": (lambda: TutorialGLU("nn.GLU"), {"glu_packed"}, {"GLU": 1}),
    "reglu_split": (lambda: Slices("split"), {"reglu_packed"}, {"ReGLU": 1}),
    "reglu_slices": (lambda: Slices("slices"), {"reglu_packed"}, {"ReGLU": 1}),
    "reglu_interleaved": (lambda: Slices("interleaved"), {"reglu_packed"}, {"ReGLU": 1}),
    "functional": (FunctionalBlock, {"gelu", "swish", "silu"}, {"GELU": 1, "QuickGELU": 1, "SiLU": 1}),
}


def make(name, dtype=torch.float32):
    torch.manual_seed(0)
    return STYLES[name][0]().to(dtype)


def outputs_and_grads(model, x):
    x = x.detach().clone().requires_grad_()
    out = model(x)
    grads = torch.autograd.grad(out, [x, *model.parameters()], torch.ones_like(out))
    return out, grads


def fused_ops_run(fn):
    with torch.profiler.profile() as prof:
        fn()
    return {e.name.removeprefix("fused_acts::") for e in prof.events() if e.name.startswith("fused_acts::")}


@pytest.mark.parametrize("name", STYLES)
def test_patch_fuses_each_style(name):
    """Outputs and input and parameter gradients are the unpatched module's,
    the fused op runs, deepcopy and pickling keep it, and unpatch restores it."""
    model = make(name)
    reference = copy.deepcopy(model)
    x = torch.randn(3, 5, DIM)
    expected, expected_grads = outputs_and_grads(reference, x)
    assert fused_acts.patch(model) == STYLES[name][2]
    assert isinstance(model, type(reference)) and type(model) is not type(reference)
    out, grads = outputs_and_grads(model, x)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(grads, expected_grads)
    ran = fused_ops_run(lambda: outputs_and_grads(model, x))
    assert STYLES[name][1] <= ran, ran
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert type(copied) is type(model)
        torch.testing.assert_close(copied(x), expected)
    fused_acts.unpatch(model)
    assert type(model) is type(reference)
    assert torch.equal(model(x), reference(x))


@pytest.mark.parametrize("name", STYLES)
def test_patch_close_in_bfloat16(name):
    model = make(name, torch.bfloat16)
    reference = copy.deepcopy(model)
    x = torch.randn(3, 5, DIM, dtype=torch.bfloat16)
    fused_acts.patch(model)
    torch.testing.assert_close(model(x), reference(x), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("name", STYLES)
def test_compile_backend_fuses_each_style(name, dynamic):
    """torch.compile(backend="fused_acts", fullgraph=True): eager's results
    and gradients, with the fused op in the compiled graph, forward and backward."""
    torch._dynamo.reset()
    model = make(name)
    x = torch.randn(3, 5, DIM)
    expected, expected_grads = outputs_and_grads(model, x)
    compiled = torch.compile(model, backend="fused_acts", fullgraph=True, dynamic=dynamic)
    out, grads = outputs_and_grads(compiled, x)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(grads, expected_grads)
    ran = fused_ops_run(lambda: outputs_and_grads(compiled, x))
    assert STYLES[name][1] <= ran, ran
    other = torch.randn(2, 7, DIM)
    torch.testing.assert_close(compiled(other), model(other))


class ShapeBranch(LlamaTutorial):
    """fx cannot trace a branch on x's rank; dynamo specializes it, with no graph break."""

    def forward(self, x):
        if x.dim() == 3:
            x = x.flatten(0, 1)
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def test_compile_backend_reaches_what_fx_cannot_trace():
    torch._dynamo.reset()
    model = ShapeBranch()
    x = torch.randn(3, 5, DIM)
    assert fused_acts.patch(copy.deepcopy(model)) == {}
    compiled = torch.compile(model, backend="fused_acts", fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x))
    assert "swiglu" in fused_ops_run(lambda: compiled(x))


class Negative(nn.Module):
    """A gated product whose semantics a fused op would change."""

    def __init__(self, case):
        super().__init__()
        self.w1, self.w3, self.case = nn.Linear(DIM, HIDDEN), nn.Linear(DIM, HIDDEN), case
        self.scale = nn.Parameter(torch.randn(HIDDEN))

    def forward(self, x):
        gate, up = self.w1(x), self.w3(x)
        if self.case == "broadcast_parameter":
            return F.silu(gate) * self.scale
        if self.case == "broadcast":
            return F.silu(gate) * up[..., :1]
        if self.case == "used_elsewhere":
            act = F.silu(gate)
            return act * up + act
        if self.case == "inplace":
            return F.silu(gate, inplace=True) * up
        if self.case == "mixed_dtypes":  # silu rounded to float32, then widened: not swiglu in float64
            return F.silu(gate) * up.double()
        raise ValueError(self.case)


# case -> what patch() counts; the fused gated op never runs.
NEGATIVE = {
    "broadcast_parameter": {"SiLU": 1},
    "broadcast": {"SwiGLU": 1},  # shapes unknown until the call, which then runs eager's
    "used_elsewhere": {"SiLU": 1},
    "inplace": {},
    "mixed_dtypes": {"SwiGLU": 1},  # dtypes unknown until the call, which then runs eager's
}


class GatedNorm(nn.Module):
    """Qwen3-Next's gated RMSNorm, in short: h times silu of a float32 gate."""

    def forward(self, h, gate):
        return h * F.silu(gate.to(torch.float32))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
def test_an_exactly_widened_up_is_fused(dtype):
    """Eager widens h to float32 exactly before its product, so the fused
    op takes the widened h: the same function."""
    model = GatedNorm()
    assert fused_acts.patch(model) == {"SwiGLU": 1}
    h, gate = torch.randn(4, DIM, dtype=dtype), torch.randn(4, DIM, dtype=dtype)
    assert fused_ops_run(lambda: model(h, gate)) == {"swiglu"}
    out = model(h, gate)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, h.float() * F.silu(gate.float()), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", NEGATIVE)
def test_semantics_that_differ_keep_eager(case):
    torch.manual_seed(0)
    model = Negative(case)
    reference = copy.deepcopy(model)
    x = torch.randn(4, DIM)
    assert fused_acts.patch(model) == NEGATIVE[case]
    torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
    ran = fused_ops_run(lambda: model(x))
    assert not ran & {"swiglu", "swiglu_packed"}, ran
    torch._dynamo.reset()
    compiled = torch.compile(reference, backend="fused_acts", fullgraph=True)
    torch.testing.assert_close(compiled(x), reference(x))
    assert not fused_ops_run(lambda: compiled(x)) & {"swiglu", "swiglu_packed"}


def test_odd_packed_size_keeps_eager():
    """chunk(2) of an odd last dim gives halves of two sizes, which broadcast
    where one is 1: the packed op does not apply, and eager's result stays."""

    class Odd(nn.Module):
        def forward(self, h):
            gate, up = h.chunk(2, dim=-1)
            return F.silu(gate) * up

    model = Odd()
    fused_acts.patch(model)
    for width in (3, 5, 8):
        h = torch.randn(2, width)
        gate, up = h.chunk(2, dim=-1)
        if width == 5:
            with pytest.raises(RuntimeError, match="must match the size"):
                model(h)
        else:
            torch.testing.assert_close(model(h), F.silu(gate) * up, rtol=0, atol=0)


class Untraceable(nn.Module):
    """Data-dependent control flow: left as it is, its children still visited."""

    def __init__(self):
        super().__init__()
        self.ffn = LlamaTutorial()

    def forward(self, x):
        if x.sum() > 0:
            x = -x
        return self.ffn(x)


def test_untraceable_forward_is_left_alone_and_children_visited():
    model = Untraceable()
    x = torch.randn(4, DIM)
    expected = model(x)
    assert fused_acts.patch(model) == {"SwiGLU": 1}
    assert type(model) is Untraceable and type(model.ffn) is not LlamaTutorial
    torch.testing.assert_close(model(x), expected)


class ModeAndDefaults(LlamaTutorial):
    """A forward that reads self.training and has an argument with a default."""

    def forward(self, x, scale=1.0, mask=None):
        h = F.dropout(F.silu(self.w1(x)) * self.w3(x), 0.5, self.training)
        if mask is not None:
            h = h * mask
        return self.w2(h) * scale


def test_mode_and_defaults():
    """The trace of each mode runs in that mode; a call with arguments other
    than their defaults runs the original forward."""
    torch.manual_seed(0)
    model = ModeAndDefaults()
    reference = copy.deepcopy(model)
    x = torch.randn(4, DIM)
    assert fused_acts.patch(model) == {"SwiGLU": 1}
    model.eval(), reference.eval()
    torch.testing.assert_close(model(x), reference(x))
    torch.testing.assert_close(model(x, scale=2.0), reference(x, scale=2.0))
    mask = torch.rand(4, HIDDEN)
    torch.testing.assert_close(model(x, 1.0, mask), reference(x, 1.0, mask))
    model.train(), reference.train()
    torch.manual_seed(1)
    out = model(x)
    torch.manual_seed(1)
    torch.testing.assert_close(out, reference(x))
    with pytest.raises(TypeError, match="unexpected keyword argument 'bias'"):
        model(x, bias=None)


def test_forward_with_side_effects_is_left_alone():
    class Caching(LlamaTutorial):
        def forward(self, x):
            self.last = F.silu(self.w1(x)) * self.w3(x)
            return self.w2(self.last)

    model = Caching()
    assert fused_acts.patch(model) == {}
    assert type(model) is Caching and "last" not in vars(model)


@pytest.mark.parametrize("recompute", [False, True])
def test_recompute_on_a_hand_written_ffn(recompute):
    """recompute=True reaches any product that feeds a plain nn.Linear, packed or not."""
    for make_model in (LlamaTutorial, lambda: Slices("split")):
        torch.manual_seed(0)
        model = make_model()
        reference = copy.deepcopy(model)
        x = torch.randn(4, DIM)
        fused_acts.patch(model, recompute=recompute)
        out, grads = outputs_and_grads(model, x)
        expected, expected_grads = outputs_and_grads(reference, x)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(grads, expected_grads)
        names = {type(fn).__name__ for fn in _grad_fns(model(x))}
        assert ("_GatedDownBackward" in names) == recompute, names


def _grad_fns(out):
    """Every autograd node that out's graph holds."""
    seen, stack = [], [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is not None and fn not in seen:
            seen.append(fn)
            stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return seen
