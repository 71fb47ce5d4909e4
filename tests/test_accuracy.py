"""Accuracy audit: error against a float64 reference, fused_acts vs eager,
forward and gradient, over >1M random values plus special values."""

import pytest
import torch
from reference import (
    GATED,
    UNARY,
    clamp,
    every_16_bit_pattern,
    gpt_oss_gate,
    ref_derivative,
    ref_derivative_terms,
    ref_forward,
    ref_gated,
)

AUDIT_DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def audit_inputs(device):
    g = torch.Generator().manual_seed(1234)
    values = [
        torch.randn(1 << 20, generator=g, dtype=torch.float64) * 3,
        torch.empty(1 << 17, dtype=torch.float64).uniform_(-30, 30, generator=g),
        # every magnitude from 1e-30 to 1e4, both signs
        torch.logspace(-30, 4, 1 << 16, dtype=torch.float64)
        * torch.where(torch.rand(1 << 16, generator=g) < 0.5, -1, 1),
        torch.tensor([0.0, -0.0, 1e-40, -1e-40, 1e-8, -1e-8, 88.0, -88.0, 1e4, -1e4], dtype=torch.float64),
    ]
    return torch.cat(values).to(device)


def ulp_errors(out, ref, dtype, scale=None):
    """|out − ref| in units of dtype's eps at scale (default |ref|; dtype's
    smallest normal below that), over the elements whose reference is finite
    and representable in dtype."""
    info = torch.finfo(dtype)
    ref_in_range = torch.isfinite(ref.to(dtype)) & torch.isfinite(ref)
    scale = (ref.abs() if scale is None else scale).clamp_min(info.tiny) * info.eps
    err = (out.double() - ref).abs() / scale
    return err[ref_in_range]


def errors(fn, x, dtype, name, grad_scale=None):
    """Forward and gradient ulp errors; grad_scale(name, x), if given, is the
    size the gradient's error is measured against."""
    x = x.to(dtype).requires_grad_()
    out = fn(x)
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    xd = x.detach().double()
    fwd = ulp_errors(out.detach(), ref_forward(name, xd), dtype)
    bwd = ulp_errors(grad, ref_derivative(name, xd), dtype, grad_scale and grad_scale(name, xd))
    return fwd, bwd


@pytest.mark.cpu_builds
@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("dtype", AUDIT_DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_no_less_accurate_than_eager(name, dtype, device):
    """Gradients are measured in ulps of their terms: where a derivative
    crosses zero, any float formula's relative error is unbounded, and which
    one has the larger maximum is down to the input nearest the zero (on
    the GPU: 1.6e6 ulps for fused GELU, 7e5 for eager's erf)."""
    fused, eager, _ = UNARY[name]
    x = audit_inputs(device)
    fused_fwd, fused_bwd = errors(fused, x, dtype, name, ref_derivative_terms)
    eager_fwd, eager_bwd = errors(eager, x, dtype, name, ref_derivative_terms)
    for what, ours, theirs in (("forward", fused_fwd, eager_fwd), ("gradient", fused_bwd, eager_bwd)):
        # Worst case and typical case: neither may be worse than eager's, give
        # or take an ulp, whichever formula each uses.
        assert ours.max() <= theirs.max() + 1, (what, ours.max().item(), theirs.max().item())
        assert ours.mean() <= theirs.mean() * 1.25 + 0.02, (what, ours.mean().item(), theirs.mean().item())


# The unary activation each gated op's gate runs through (clamped_swiglu:
# swish with β = 1.702, QuickGELU, below its limit), for gradient scales.
GATE_ACTIVATION = {
    "swiglu": "silu",
    "geglu": "gelu",
    "geglu_tanh": "gelu_tanh",
    "clamped_swiglu": "quick_gelu",
    "clamped_swiglu_deepseek_v4": "silu",
    "glu": "sigmoid",
    "reglu": "relu",
}


def gated_audit_inputs(device):
    """gate and up: normal × 3, and uniform ±10, past GPT-OSS's limit of 7."""
    g = torch.Generator().manual_seed(4321)
    normal = torch.randn(2, 1 << 19, generator=g, dtype=torch.float64) * 3
    uniform = torch.empty(2, 1 << 17, dtype=torch.float64).uniform_(-10, 10, generator=g)
    gate, up = torch.cat([normal, uniform], dim=1).to(device)
    return gate, up


def gated_errors(fn, gate, up, dtype, name):
    """Forward and gradient ulp errors of a gated op against float64. The
    gate's gradient, up·f'(gate), is judged against up times the size of
    f''s terms, since f' crosses zero where they cancel."""
    gate, up = gate.to(dtype).requires_grad_(), up.to(dtype).requires_grad_()
    out = fn(gate, up)
    grads = torch.autograd.grad(out, (gate, up), torch.ones_like(out))
    gd, ud = gate.detach().double().requires_grad_(), up.detach().double().requires_grad_()
    ref = ref_gated(name, gd, ud)
    ref_grads = torch.autograd.grad(ref, (gd, ud), torch.ones_like(ref))
    gd, ud = gd.detach(), ud.detach()
    if name == "clamped_swiglu":
        ud, gd = clamp(ud, -7.0, 7.0) + 1, clamp(gd, max=7.0)
    if name == "clamped_swiglu_deepseek_v4":
        ud, gd = clamp(ud, -2.0, 2.0), clamp(gd, max=2.0)
    gate_scale = ud.abs() * ref_derivative_terms(GATE_ACTIVATION[name], gd)
    fwd = ulp_errors(out.detach(), ref.detach(), dtype)
    grad_gate = ulp_errors(grads[0], ref_grads[0], dtype, gate_scale)
    grad_up = ulp_errors(grads[1], ref_grads[1], dtype)
    return fwd, grad_gate, grad_up


@pytest.mark.parametrize("name", GATE_ACTIVATION)
@pytest.mark.parametrize("dtype", AUDIT_DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_gated_no_less_accurate_than_eager(name, dtype, device):
    """Each gated op against eager's (GPT-OSS's own formula for
    clamped_swiglu), forward and both gradients, as the unary audit judges."""
    case = GATED[name]
    gate, up = gated_audit_inputs(device)
    ours = gated_errors(case.fused, gate, up, dtype, name)
    theirs = gated_errors(lambda g, u: ref_gated_eager(name, g, u), gate, up, dtype, name)
    for what, o, t in zip(("forward", "gate gradient", "up gradient"), ours, theirs):
        assert o.max() <= t.max() + 1, (what, o.max().item(), t.max().item())
        assert o.mean() <= t.mean() * 1.25 + 0.02, (what, o.mean().item(), t.mean().item())


def ref_gated_eager(name, gate, up):
    """Eager PyTorch's gated op in gate's dtype: each op rounding as it goes."""
    if name == "clamped_swiglu":
        return gpt_oss_gate(gate, up)
    if name == "glu":  # as written by hand, where the reference Case rounds once as F.glu does
        return up * torch.sigmoid(gate)
    return GATED[name].eager(gate, up)


@pytest.mark.parametrize("name", UNARY)
def test_float64_error_is_a_few_ulps(name, device):
    """float64 has no wider reference here, and eager's float64 formulas are
    mostly the reference's own, so the bar is absolute instead: 16 ulps for
    |x| ≤ 4. Further out, exp(−x²/2)-like tails amplify the rounding of their
    own argument by ~x² ulps in any float64 formula, the reference's too. The
    gradient is judged against the size of its terms (~1 + |x|), since it
    crosses zero where they cancel."""
    fused = UNARY[name][0]
    x = audit_inputs(device)
    x = x[x.abs() <= 4].double().requires_grad_()
    out = fused(x)
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    x = x.detach()
    ref, ref_grad = ref_forward(name, x), ref_derivative(name, x)
    eps = torch.finfo(torch.float64).eps
    assert ulp_errors(out.detach(), ref, torch.float64).max() <= 16
    assert ((grad - ref_grad).abs() <= 8 * eps * (1 + x.abs())).all()


@pytest.mark.cpu_builds
def test_gelu_float32_stays_within_a_few_ulps_in_every_build(device):
    """Eager's erf on the CPU loses GELU's tail (8e6 ulps), so this bar is
    absolute. The tail rests on exact splits of x² by fused multiply-adds,
    which every CPU build must keep (test_cpu_builds.py repeats this test in
    each); the GPU's exp2f and division must hold it too. The gradient is
    judged against the size of its terms, Φ(x) + |x|·φ(x), since it crosses
    zero where they cancel."""
    x = audit_inputs(device).float().requires_grad_()
    out = UNARY["gelu"][0](x)
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    xd = x.detach().double()
    assert ulp_errors(out.detach(), ref_forward("gelu", xd), torch.float32).max() <= 10
    grad_errors = ulp_errors(grad, ref_derivative("gelu", xd), torch.float32, ref_derivative_terms("gelu", xd))
    assert grad_errors.max() <= 8


def every_finite(dtype, device):
    x = every_16_bit_pattern(dtype)
    return x[torch.isfinite(x)].to(device)


@pytest.mark.cpu_builds
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=lambda d: str(d).removeprefix("torch."))
def test_gelu_to_16_bits_stays_within_half_an_ulp(dtype, device):
    """Every finite 16-bit input. For 16-bit outputs the forward takes a
    shorter Φ (7e-7 relative) and a shorter exp (2^-23; ex2.approx on the
    GPU); the gradient crosses zero near x = −0.75, where a few float ulps
    of its cancelling terms are a sizeable part of a float16 ulp. Both must
    still round to within a hair of half an ulp: 0.5 on the CPU, and the bar
    leaves the GPU's ex2.approx a little room."""
    fwd, grad = errors(UNARY["gelu"][0], every_finite(dtype, device), dtype, "gelu")
    assert fwd.max() <= 0.52, fwd.max().item()
    assert grad.max() <= 0.52, grad.max().item()
