"""Every op against eager PyTorch: dtypes, shapes, memory layouts, special
values, grad-free modes and the nn modules. Tests marked cpu_builds run again
in test_cpu_builds.py, once per CPU kernel build."""

import pytest
import torch
import torch.nn.functional as F
from helpers import LAYOUTS, SHAPES, SPECIAL_VALUES, assert_close_scaled, grad_of, make_input, same_bits
from reference import GATED, PACKINGS, UNARY, deepseek_v4_gate, every_16_bit_pattern, gpt_oss_gate, split_packed

import fused_acts
from fused_acts import nn as fnn


@pytest.mark.cpu_builds
@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_unary_matches_eager(name, shape, device, dtype):
    fused, eager, _ = UNARY[name]
    x = make_input(shape, "contiguous", device, dtype)
    out, (grad,), grad_out = grad_of(fused, x)
    ref, (ref_grad,), _ = grad_of(eager, x, grad_out=grad_out)
    assert out.dtype == dtype and out.device == x.device and out.shape == x.shape
    assert_close_scaled([out], [ref])
    assert_close_scaled([grad], [ref_grad])


@pytest.mark.cpu_builds
@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_unary_non_contiguous(name, layout, device, dtype):
    fused, eager, _ = UNARY[name]
    x = make_input((6, 37), layout, device, dtype)
    before = x.clone()
    out, (grad,), grad_out = grad_of(fused, x)
    ref, (ref_grad,), _ = grad_of(eager, x, grad_out=grad_out.mT.contiguous().mT)
    assert out.is_contiguous()
    assert_close_scaled([out], [ref])
    assert_close_scaled([grad], [ref_grad])
    assert torch.equal(x, before)


@pytest.mark.cpu_builds
@pytest.mark.parametrize("name", GATED)
@pytest.mark.parametrize("shape", SHAPES[1:], ids=str)
def test_gated_matches_eager(name, shape, device, dtype):
    fused, eager, _ = GATED[name]
    gate = make_input(shape, "contiguous", device, dtype)
    up = make_input(shape, "contiguous", device, dtype)
    out, grads, grad_out = grad_of(fused, gate, up)
    ref, ref_grads, _ = grad_of(eager, gate, up, grad_out=grad_out)
    assert_close_scaled([out], [ref])
    assert_close_scaled(grads, ref_grads)


@pytest.mark.parametrize("name", GATED)
def test_gated_zero_dim(name, device):
    fused, eager, _ = GATED[name]
    gate, up = torch.tensor(1.5, device=device), torch.tensor(-2.0, device=device)
    torch.testing.assert_close(fused(gate, up), eager(gate, up))


@pytest.mark.cpu_builds
@pytest.mark.parametrize("name", ["swiglu", "geglu"])
def test_gated_forward_rounds_like_eager(name, device, dtype):
    """act(gate) is rounded to the dtype before the multiply, as eager does, so
    the forward is bit for bit eager's; for 16-bit dtypes over every gate bit
    pattern, subnormals included."""
    fused, eager, _ = GATED[name]
    if dtype.itemsize == 2:
        gate = every_16_bit_pattern(dtype).to(device).view(256, 256)
    else:
        gate = make_input((64, 257), "contiguous", device, dtype)
    up = make_input(gate.shape, "contiguous", device, dtype)
    if name == "swiglu":
        assert same_bits(fused(gate, up), eager(gate, up))
    else:  # gelu's formula differs from eager's, so compare with the rounding made explicit
        act = fused_acts.gelu(gate)
        assert same_bits(fused(gate, up), act * up)


@pytest.mark.cpu_builds
def test_silu_matches_eager_bit_for_bit(dtype):
    """SiLU keeps eager's formula, and the CPU engine inlines Sleef's exp
    algorithm that eager calls: every 251st float32 bit pattern (all
    exponents, both signs, nan and inf), every 16-bit pattern (subnormals
    included) and random float64 values give eager's exact bits, forward and
    backward. Sizes are whole vectors: eager computes a ragged tail with
    libm's exp instead of Sleef's."""
    if dtype == torch.float32:
        bits = torch.arange(0, 2**32, 251, dtype=torch.int64)
        x = torch.where(bits >= 2**31, bits - 2**32, bits).to(torch.int32).view(torch.float32)
    elif dtype.itemsize == 2:
        x = every_16_bit_pattern(dtype)
    else:
        x = make_input((4096,), "contiguous", "cpu", dtype, scale=20.0)
    g = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    assert same_bits(fused_acts.silu(x), F.silu(x))
    assert same_bits(torch.ops.fused_acts.silu_backward(g, x), torch.ops.aten.silu_backward(g, x))


@pytest.mark.cpu_builds
def test_swish_with_beta_1_is_silu_bit_for_bit(device, dtype):
    x = make_input((64, 257), "contiguous", device, dtype, scale=10.0)
    g = make_input((64, 257), "contiguous", device, dtype)
    assert same_bits(fused_acts.swish(x, 1.0), fused_acts.silu(x))
    assert same_bits(torch.ops.fused_acts.swish_backward(g, x, 1.0), torch.ops.fused_acts.silu_backward(g, x))


@pytest.mark.cpu_builds
@pytest.mark.parametrize("name", GATED)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_gated_non_contiguous(name, layout, device, dtype):
    fused, eager, _ = GATED[name]
    gate = make_input((6, 37), layout, device, dtype)
    up = make_input((6, 37), "row_strided", device, dtype)
    out, grads, grad_out = grad_of(fused, gate, up)
    ref, ref_grads, _ = grad_of(eager, gate, up, grad_out=grad_out)
    assert_close_scaled([out], [ref])
    assert_close_scaled(grads, ref_grads)


@pytest.mark.cpu_builds
@pytest.mark.parametrize("name", GATED)
@pytest.mark.parametrize("shape", [(2,), (5, 18), (2, 3, 130), (3, 256)], ids=str)
@pytest.mark.parametrize("packing", PACKINGS)
def test_packed_matches_eager(name, shape, packing, device, dtype):
    fused, eager, _ = GATED[name]
    x = make_input(shape, "contiguous", device, dtype)
    layout = PACKINGS[packing]
    out, (grad,), grad_out = grad_of(lambda t: fused(t, **layout), x)
    ref, (ref_grad,), _ = grad_of(lambda t: eager(*split_packed(t, **layout)), x, grad_out=grad_out)
    assert out.shape == (*shape[:-1], shape[-1] // 2)
    assert_close_scaled([out], [ref])
    assert_close_scaled([grad], [ref_grad])
    assert grad.shape == x.shape and grad.is_contiguous()


@pytest.mark.cpu_builds
@pytest.mark.parametrize("name", GATED)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("packing", PACKINGS)
def test_packed_non_contiguous(name, layout, packing, device, dtype):
    """Halves and interleaved pairs are read in place from a row-strided x,
    and from a contiguous copy of any other."""
    fused, eager, _ = GATED[name]
    x = make_input((6, 38), layout, device, dtype)
    packed = PACKINGS[packing]
    out, (grad,), grad_out = grad_of(lambda t: fused(t, **packed), x)
    ref, (ref_grad,), _ = grad_of(lambda t: eager(*split_packed(t, **packed)), x, grad_out=grad_out)
    assert_close_scaled([out], [ref])
    assert_close_scaled([grad], [ref_grad])


@pytest.mark.parametrize("name", GATED)
def test_packed_copies_nothing(name, device):
    """Packed mode reads both halves in place and writes one packed gradient:
    no copy, cat or slice-backward appears anywhere in forward or backward."""
    fused, _, family = GATED[name]
    x = torch.randn(8, 64, device=device, requires_grad=True)
    with torch.profiler.profile() as prof:
        fused(x).backward(torch.ones(8, 32, device=device))
    names = {event.name for event in prof.events()}
    assert not names & {"aten::copy_", "aten::cat", "aten::slice_backward", "aten::contiguous", "aten::add_"}
    assert f"fused_acts::{family}_packed" in names and f"fused_acts::{family}_packed_backward" in names


@pytest.mark.cpu_builds
@pytest.mark.parametrize("name", UNARY)
def test_special_values_match_eager(name, device, dtype):
    """±0, tiny, large, ±inf and nan give what eager gives. Eager runs in
    float64 here: its float32 CPU GELU returns nan at +inf, a flaw of its erf
    approximation that fused_acts does not copy."""
    fused, eager, _ = UNARY[name]
    x = torch.tensor(SPECIAL_VALUES, device=device, dtype=torch.float64).to(dtype)
    out, (grad,), _ = grad_of(fused, x, grad_out=torch.ones_like(x))
    ref, (ref_grad,), _ = grad_of(eager, x.double(), grad_out=torch.ones_like(x.double()))
    ref, ref_grad = ref.to(dtype), ref_grad.to(dtype)
    if dtype in (torch.float32, torch.float64):
        torch.testing.assert_close(out, ref, equal_nan=True, atol=1e-30, rtol=1e-5)
        torch.testing.assert_close(grad, ref_grad, equal_nan=True, atol=1e-30, rtol=1e-5)
    else:
        torch.testing.assert_close(out, ref, equal_nan=True)
        torch.testing.assert_close(grad, ref_grad, equal_nan=True)
    # Zeros keep eager's sign too: −0 at −0, and where x·Φ(x) underflows.
    assert torch.equal(out[~ref.isnan()].signbit(), ref[~ref.isnan()].signbit())


def every_form(x):
    """(name, fused(x)) for each unary activation, and each gated one separate and in each packing."""
    half = x.shape[-1] // 2
    for name, case in UNARY.items():
        yield name, lambda x=x, case=case: case.fused(x)
    for name, case in GATED.items():
        yield name, lambda x=x, case=case: case.fused(x[..., :half], x[..., half:])
        for packing, layout in PACKINGS.items():
            yield f"{name}_{packing}", lambda x=x, case=case, layout=layout: case.fused(x, **layout)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_grad_free_modes_match(mode, device):
    """Serving runs under no_grad or inference_mode; the latter skips the
    Python autograd layer altogether. Same kernels, so the same bits."""
    x = torch.randn(8, 64, device=device, requires_grad=True)
    for name, fused in every_form(x):
        expected = fused().detach()
        with torch.no_grad() if mode == "no_grad" else torch.inference_mode():
            out = fused()
        assert not out.requires_grad and out.is_inference() == (mode == "inference_mode"), name
        torch.testing.assert_close(out, expected, rtol=0, atol=0, msg=name)


# module -> (its repr, the function it must compute)
MODULES = {
    "GELU": (fnn.GELU(), "GELU(approximate='none')", torch.nn.GELU()),
    "GELU_tanh": (fnn.GELU("tanh"), "GELU(approximate='tanh')", torch.nn.GELU("tanh")),
    "SiLU": (fnn.SiLU(), "SiLU()", torch.nn.SiLU()),
    "Mish": (fnn.Mish(), "Mish()", torch.nn.Mish()),
    "Swish": (fnn.Swish(0.5), "Swish(beta=0.5)", lambda x: x * torch.sigmoid(0.5 * x)),
    "QuickGELU": (fnn.QuickGELU(), "QuickGELU()", lambda x: x * torch.sigmoid(1.702 * x)),
    "ReLUSquared": (fnn.ReLUSquared(), "ReLUSquared()", lambda x: torch.relu(x) ** 2),
    "SwiGLU": (fnn.SwiGLU(), "SwiGLU()", lambda x: F.silu(x[:, :5]) * x[:, 5:]),
    "GeGLU_tanh": (
        fnn.GeGLU("tanh"),
        "GeGLU(approximate='tanh')",
        lambda x: F.gelu(x[:, :5], approximate="tanh") * x[:, 5:],
    ),
    "GLU": (fnn.GLU(), "GLU()", torch.nn.GLU()),
    "ReGLU": (fnn.ReGLU(), "ReGLU()", lambda x: F.relu(x[:, :5]) * x[:, 5:]),
    "ClampedSwiGLU": (
        fnn.ClampedSwiGLU(limit=1.0, interleaved=True),
        "ClampedSwiGLU(alpha=1.702, limit=1.0, up_offset=1.0, interleaved=True)",
        lambda x: gpt_oss_gate(x[:, 0::2], x[:, 1::2], limit=1.0),
    ),
    "ClampedSwiGLU-DeepSeek-V4": (
        fnn.ClampedSwiGLU(alpha=1.0, limit=1.0, up_offset=0.0),
        "ClampedSwiGLU(alpha=1.0, limit=1.0, up_offset=0.0, interleaved=False)",
        lambda x: deepseek_v4_gate(x[:, :5], x[:, 5:], limit=1.0),
    ),
}


@pytest.mark.parametrize("name", MODULES)
def test_modules(name, device):
    module, text, expected = MODULES[name]
    x = torch.randn(3, 10, device=device)
    assert repr(module) == text
    torch.testing.assert_close(module(x), expected(x))


def test_gated_modules_take_separate_halves(device):
    x, u = torch.randn(3, 10, device=device), torch.randn(3, 10, device=device)
    torch.testing.assert_close(fnn.SwiGLU()(x, u), F.silu(x) * u)
    torch.testing.assert_close(fnn.GeGLU()(x, u), F.gelu(x) * u)
    torch.testing.assert_close(fnn.ClampedSwiGLU()(x, u), gpt_oss_gate(x, u))
    torch.testing.assert_close(fnn.GLU()(x, u), x * torch.sigmoid(u))
    torch.testing.assert_close(fnn.ReGLU()(x, u), F.relu(x) * u)


@pytest.mark.cpu_builds
def test_clamped_swiglu_limits_and_special_values(device, dtype):
    """At the limits themselves, past them, at ±inf and nan, the forward and
    both gradients are eager's (torch.clamp's): the gradient stops at a limit,
    past one and at nan."""
    limit = 2.0
    values = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, float("inf"), float("-inf"), float("nan")]
    gate, up = (t.reshape(-1) for t in torch.meshgrid(torch.tensor(values), torch.tensor(values), indexing="ij"))
    gate, up = gate.to(device, dtype), up.to(device, dtype)
    fused = lambda g, u: fused_acts.clamped_swiglu(g, u, limit=limit)
    out, grads, _ = grad_of(fused, gate, up, grad_out=torch.ones_like(gate))
    reference = lambda g, u: gpt_oss_gate(g, u, limit=limit)
    ref, ref_grads, _ = grad_of(reference, gate.double(), up.double(), grad_out=torch.ones_like(gate.double()))
    for a, e in zip([out, *grads], [ref, *ref_grads]):
        torch.testing.assert_close(a, e.to(dtype), equal_nan=True)
    assert not grads[0][gate == limit].any() and not grads[1][up.abs() == limit].any()


@pytest.mark.skipif(
    tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 14),
    reason="older torch passes the gradient at clamp's limits; the kernels follow torch 2.14",
)
def test_torch_clamp_stops_the_gradient_at_its_limits():
    """The convention that the kernels and tests/reference.py's clamp follow
    is torch's own: should torch's clamp change it again, this fails."""
    x = torch.tensor([-1.0, 1.0], requires_grad=True)
    (grad,) = torch.autograd.grad(x.clamp(-1.0, 1.0).sum(), x)
    assert not grad.any()
