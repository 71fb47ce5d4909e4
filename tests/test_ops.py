"""Every op against eager PyTorch: dtypes, shapes, layouts, autograd,
custom-op registration, torch.compile, modules and bad inputs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fused_acts
from fused_acts import nn as fnn
from reference import GATED, GATED_ACTIVATION, UNARY, every_16_bit_pattern, ref_forward, split_packed

OPS = ["gelu", "gelu_backward", "silu", "silu_backward", "mish", "mish_backward",
       "swiglu", "swiglu_backward", "swiglu_packed", "swiglu_packed_backward",
       "geglu", "geglu_backward", "geglu_packed", "geglu_packed_backward"]

SHAPES = [(), (0,), (3, 0, 5), (1,), (7,), (33, 65), (2, 3, 1029)]


def make_input(shape, layout, device, dtype, scale=3.0):
    """A tensor of `shape` in one of several memory layouts."""
    if layout == "contiguous":
        return (torch.randn(shape, device=device, dtype=torch.float64) * scale).to(dtype)
    if layout == "transposed":  # no row stride: the op makes a contiguous copy
        return make_input(shape[::-1], "contiguous", device, dtype, scale).mT
    if layout == "row_strided":  # a column slice: read in place, row by row
        wide = make_input((*shape[:-1], shape[-1] + 9), "contiguous", device, dtype, scale)
        return wide[..., 3:3 + shape[-1]]
    if layout == "step":  # every other element
        return make_input((*shape[:-1], 2 * shape[-1]), "contiguous", device, dtype, scale)[..., ::2]
    if layout == "expanded":  # stride 0 rows
        return make_input((1, shape[-1]), "contiguous", device, dtype, scale).expand(shape)
    raise ValueError(layout)


LAYOUTS = ["transposed", "row_strided", "step", "expanded"]


def assert_close_scaled(actual, expected):
    """assert_close within 2 ulps, atol scaled to the values' size: near the
    zeros of a derivative, both sides carry rounding error of its terms' size."""
    for a, e in zip(actual, expected):
        scale = max(1.0, e.abs().max().item()) if e.numel() else 1.0
        rtol, atol = {torch.float64: (1e-7, 1e-7), torch.float32: (1.3e-6, 1e-5),
                      torch.bfloat16: (1.6e-2, 1e-3), torch.float16: (2e-3, 1e-3)}[e.dtype]
        torch.testing.assert_close(a, e, atol=atol * scale, rtol=rtol)


def grad_of(fn, *inputs, grad_out=None):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*inputs)
    grad_out = torch.randn_like(out) if grad_out is None else grad_out
    grads = torch.autograd.grad(out, inputs, grad_out)
    return out, grads, grad_out


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_unary_matches_eager(name, shape, device, dtype):
    fused, eager = UNARY[name]
    x = make_input(shape, "contiguous", device, dtype)
    out, (grad,), grad_out = grad_of(fused, x)
    ref, (ref_grad,), _ = grad_of(eager, x, grad_out=grad_out)
    assert out.dtype == dtype and out.device == x.device and out.shape == x.shape
    assert_close_scaled([out], [ref])
    assert_close_scaled([grad], [ref_grad])


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_unary_non_contiguous(name, layout, device, dtype):
    fused, eager = UNARY[name]
    x = make_input((6, 37), layout, device, dtype)
    before = x.clone()
    out, (grad,), grad_out = grad_of(fused, x)
    ref, (ref_grad,), _ = grad_of(eager, x, grad_out=grad_out.mT.contiguous().mT)
    assert out.is_contiguous()
    assert_close_scaled([out], [ref])
    assert_close_scaled([grad], [ref_grad])
    assert torch.equal(x, before)


@pytest.mark.parametrize("name", GATED)
@pytest.mark.parametrize("shape", SHAPES[1:], ids=str)
def test_gated_matches_eager(name, shape, device, dtype):
    fused, eager = GATED[name]
    gate = make_input(shape, "contiguous", device, dtype)
    up = make_input(shape, "contiguous", device, dtype)
    out, grads, grad_out = grad_of(fused, gate, up)
    ref, ref_grads, _ = grad_of(eager, gate, up, grad_out=grad_out)
    assert_close_scaled([out], [ref])
    assert_close_scaled(grads, ref_grads)


def test_gated_zero_dim(device):
    gate, up = torch.tensor(1.5, device=device), torch.tensor(-2.0, device=device)
    torch.testing.assert_close(fused_acts.swiglu(gate, up), torch.nn.functional.silu(gate) * up)


def same_bits(a, b):
    """Equal bit for bit, except that any nan matches any nan."""
    as_int = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    nan = a.isnan()
    return torch.equal(nan, b.isnan()) and torch.equal(a.view(as_int)[~nan], b.view(as_int)[~nan])


@pytest.mark.parametrize("name", ["swiglu", "geglu"])
def test_gated_forward_rounds_like_eager(name, device, dtype):
    """act(gate) is rounded to the dtype before the multiply, as eager does, so
    the forward is bit for bit eager's; for 16-bit dtypes over every gate bit
    pattern, subnormals included."""
    fused, eager = GATED[name]
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
    assert same_bits(fused_acts.silu(x), torch.nn.functional.silu(x))
    assert same_bits(torch.ops.fused_acts.silu_backward(g, x), torch.ops.aten.silu_backward(g, x))


@pytest.mark.parametrize("name", GATED)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_gated_non_contiguous(name, layout, device, dtype):
    fused, eager = GATED[name]
    gate = make_input((6, 37), layout, device, dtype)
    up = make_input((6, 37), "row_strided", device, dtype)
    out, grads, grad_out = grad_of(fused, gate, up)
    ref, ref_grads, _ = grad_of(eager, gate, up, grad_out=grad_out)
    assert_close_scaled([out], [ref])
    assert_close_scaled(grads, ref_grads)


@pytest.mark.parametrize("name", GATED)
@pytest.mark.parametrize("shape", [(2,), (5, 18), (2, 3, 130), (3, 256)], ids=str)
def test_packed_matches_eager(name, shape, device, dtype):
    fused, eager = GATED[name]
    x = make_input(shape, "contiguous", device, dtype)
    out, (grad,), grad_out = grad_of(fused, x)
    ref, (ref_grad,), _ = grad_of(lambda t: eager(*split_packed(t)), x, grad_out=grad_out)
    assert out.shape == (*shape[:-1], shape[-1] // 2)
    assert_close_scaled([out], [ref])
    assert_close_scaled([grad], [ref_grad])
    assert grad.shape == x.shape and grad.is_contiguous()


@pytest.mark.parametrize("name", GATED)
def test_packed_copies_nothing(name, device):
    """Packed mode reads both halves in place and writes one packed gradient:
    no copy, cat or slice-backward appears anywhere in forward or backward."""
    fused, _ = GATED[name]
    x = torch.randn(8, 64, device=device, requires_grad=True)
    with torch.profiler.profile() as prof:
        fused(x).backward(torch.ones(8, 32, device=device))
    names = {event.name for event in prof.events()}
    assert not names & {"aten::copy_", "aten::cat", "aten::slice_backward", "aten::contiguous", "aten::add_"}
    assert any(n.startswith(f"fused_acts::{name.split('_')[0]}_packed") for n in names)


SPECIAL_VALUES = [0.0, -0.0, 1e-40, -1e-40, 1e-30, 3.0, -3.0, 30.0, -30.0, 100.0, -100.0,
                  1e30, -1e30, float("inf"), float("-inf"), float("nan")]


@pytest.mark.parametrize("name", UNARY)
def test_special_values_match_eager(name, device, dtype):
    """±0, tiny, large, ±inf and nan give what eager gives. Eager runs in
    float64 here: its float32 CPU GELU returns nan at +inf, a flaw of its erf
    approximation that fused_acts does not copy."""
    fused, eager = UNARY[name]
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


@pytest.mark.parametrize("name", list(UNARY) + list(GATED))
def test_gradcheck_to_third_order(name, device):
    """First and second derivatives (gradgradcheck), and the third through
    gradgradcheck of the gradient: each order is differentiable in turn."""
    torch.manual_seed(0)
    if name in UNARY:
        fused = UNARY[name][0]
        inputs = [torch.randn(5, 7, device=device, dtype=torch.float64) * 3]
    else:
        fused = GATED[name][0]
        inputs = [torch.randn(5, 7, device=device, dtype=torch.float64) * 3 for _ in range(2)]
        inputs.append(torch.randn(5, 8, device=device, dtype=torch.float64) * 3)
    inputs = [t.requires_grad_() for t in inputs]
    cases = [inputs] if name in UNARY else [inputs[:2], inputs[2:]]
    for args in cases:
        assert torch.autograd.gradcheck(fused, args)
        assert torch.autograd.gradgradcheck(fused, args)

        def gradient(*args):
            return torch.autograd.grad(fused(*args).sum(), args, create_graph=True)

        assert torch.autograd.gradgradcheck(gradient, args)


def second_order(fn, inputs, grad_out, probes):
    """The gradient of <d(fn)/d(inputs)·grad_out, probes> with respect to
    inputs and grad_out: what a double backward (create_graph=True) returns."""
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    grad_out = grad_out.detach().clone().requires_grad_()
    grads = torch.autograd.grad(fn(*inputs), inputs, grad_out, create_graph=True)
    return torch.autograd.grad(grads, [*inputs, grad_out], probes)


@pytest.mark.parametrize("name", list(UNARY) + list(GATED) + [f"{g}_packed" for g in GATED])
def test_double_backward_matches_float64(name, device, dtype):
    """Every double-backward output against autograd through the float64
    reference, within a few eps of the largest, special values included: nan
    at ±inf and nan inputs, as eager's. (Eager's own float64 Mish gives nan
    at 1e30 too, so it cannot be the reference.)"""
    torch.manual_seed(0)
    values = torch.cat([torch.randn(500, dtype=torch.float64) * 3, torch.tensor(SPECIAL_VALUES, dtype=torch.float64)])
    values = values.to(device=device, dtype=dtype)
    if name in UNARY:
        fused = UNARY[name][0]
        reference = lambda x: ref_forward(name, x)  # noqa: E731
        inputs = [values]
    else:
        gated = name.removesuffix("_packed")
        fused = GATED[gated][0]
        reference = lambda gate, up: ref_forward(GATED_ACTIVATION[gated], gate) * up  # noqa: E731
        inputs = [values, (torch.randn(values.shape, dtype=torch.float64) * 3).to(device=device, dtype=dtype)]
        if name != gated:
            inputs = [torch.cat(inputs, dim=-1)]
            reference = lambda x, separate=reference: separate(*split_packed(x))  # noqa: E731
    grad_out = torch.randn_like(fused(*inputs))
    probes = [torch.randn_like(t) for t in inputs]
    actual = second_order(fused, inputs, grad_out, probes)
    expected = second_order(reference, [t.double() for t in inputs], grad_out.double(), [p.double() for p in probes])
    # In float64 the reference's own autograd formulas cancel in the tails
    # (1 − sigmoid), at about 1e-14 of the largest value.
    eps = 1e-13 if dtype == torch.float64 else torch.finfo(dtype).eps
    for a, e in zip(actual, expected):
        assert a.dtype == dtype
        assert torch.equal(a.isnan(), e.isnan())
        finite = e.isfinite()
        scale = e[finite].abs().max().item()
        torch.testing.assert_close(a.double()[finite], e[finite], rtol=0, atol=4 * eps * scale)


def _opcheck_cases(device):
    x = torch.randn(4, 6, device=device)
    g = torch.randn(4, 6, device=device)
    half = torch.randn(4, 3, device=device)
    ops = torch.ops.fused_acts
    for approximate in ("none", "tanh"):
        yield ops.gelu, (x, approximate)
        yield ops.gelu_backward, (g, x, approximate)
        yield ops.geglu, (x, g, approximate)
        yield ops.geglu_backward, (g, x, x, approximate)
        yield ops.geglu_packed, (x, approximate)
        yield ops.geglu_packed_backward, (half, x, approximate)
    for name in ("silu", "mish"):
        yield getattr(ops, name), (x,)
        yield getattr(ops, f"{name}_backward"), (g, x)
    yield ops.swiglu, (x, g)
    yield ops.swiglu_backward, (g, x, x)
    yield ops.swiglu_packed, (x,)
    yield ops.swiglu_packed_backward, (half, x)


def test_opcheck(device):
    for op, args in _opcheck_cases(device):
        # Inputs that require grad make opcheck test the autograd registration
        # too: the backward ops' own (double backward) included.
        args = tuple(a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)
        torch.library.opcheck(op, args)


@pytest.fixture
def vmap_fallback_disabled():
    """vmap raises, rather than looping over samples, on an op without a batching rule."""
    torch._C._functorch._set_vmap_fallback_enabled(False)
    yield
    torch._C._functorch._set_vmap_fallback_enabled(True)


def test_vmap_batches_every_op(device, vmap_fallback_disabled):
    """Each op's batching rule gives what a loop over the samples gives. The
    first tensor is batched along its dim 1, the others along dim 0, and the
    last tensor of a multi-tensor op not at all."""
    batch = 3
    for op, args in _opcheck_cases(device):
        tensors = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        in_dims = [None] * len(args)
        batched = list(args)
        for i in tensors[:-1] if len(tensors) > 1 else tensors:
            in_dims[i] = 1 if i == tensors[0] else 0
            batched[i] = torch.stack([torch.randn_like(args[i]) for _ in range(batch)], dim=in_dims[i])
        samples = [[a.select(d, k) if d is not None else a for a, d in zip(batched, in_dims)] for k in range(batch)]
        out = torch.vmap(op, in_dims=tuple(in_dims))(*batched)
        expected = [op(*sample) for sample in samples]
        if isinstance(out, tuple):
            for o, e in zip(out, zip(*expected)):
                assert torch.equal(o, torch.stack(e)), op
        else:
            assert torch.equal(out, torch.stack(expected)), op


def test_vmap_packed_checks_each_sample(device, vmap_fallback_disabled):
    """A batch of 0-dim samples must not pass as one packed last dim."""
    with pytest.raises(ValueError, match=r"swiglu: packed x must have an even last dim \(gate‖up\), got shape \[\]"):
        torch.vmap(fused_acts.swiglu)(torch.randn(4, device=device))
    with pytest.raises(ValueError, match=r"geglu_backward: packed x must have an even last dim \(gate‖up\), got shape \[5, 3\]"):
        torch.vmap(torch.ops.fused_acts.geglu_packed_backward, in_dims=(None, 1))(
            torch.randn(5, 1, device=device), torch.randn(5, 2, 3, device=device))
    assert torch.vmap(fused_acts.swiglu)(torch.randn(0, 4, device=device)).shape == (0, 2)


def test_vmap_under_autograd_and_compile(device, vmap_fallback_disabled):
    x = torch.randn(3, 4, 6, device=device, requires_grad=True)
    out = torch.vmap(fused_acts.swiglu, in_dims=1)(x)
    expected = torch.stack([fused_acts.swiglu(x[:, k]) for k in range(4)])
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    grad_out = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, grad_out)
    (expected_grad,) = torch.autograd.grad(expected, x, grad_out)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0)
    torch._dynamo.reset()
    compiled = torch.compile(torch.vmap(fused_acts.mish), fullgraph=True)
    torch.testing.assert_close(compiled(x.detach()), fused_acts.mish(x.detach()), rtol=0, atol=0)


def _all_activations(x):
    """Every public op, forward and backward, in one traced function."""
    half = x.shape[-1] // 2
    total = fused_acts.gelu(x).sum() + fused_acts.gelu(x, "tanh").sum()
    total = total + fused_acts.silu(x).sum() + fused_acts.mish(x).sum()
    total = total + fused_acts.swiglu(x[..., :half], x[..., half:]).sum() + fused_acts.swiglu(x).sum()
    total = total + fused_acts.geglu(x).sum() + fused_acts.geglu(x[..., :half], x[..., half:], "tanh").sum()
    return total


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph(backend, device):
    torch._dynamo.reset()
    x = torch.randn(8, 64, device=device, requires_grad=True)
    compiled = torch.compile(_all_activations, fullgraph=True, backend=backend)
    expected = _all_activations(x)
    (expected_grad,) = torch.autograd.grad(expected, x)
    out = compiled(x)
    (grad,) = torch.autograd.grad(out, x)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(grad, expected_grad)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_grad_free_modes_match(mode, device):
    """Serving runs under no_grad or inference_mode; the latter skips the
    Python autograd layer altogether. Same kernels, so the same bits."""
    x = torch.randn(8, 64, device=device, requires_grad=True)
    expected = _all_activations(x).detach()
    with torch.no_grad() if mode == "no_grad" else torch.inference_mode():
        out = _all_activations(x)
    assert not out.requires_grad and out.is_inference() == (mode == "inference_mode")
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_modules(device):
    x = torch.randn(3, 10, device=device)
    assert repr(fnn.GELU()) == "GELU(approximate='none')"
    assert repr(fnn.GELU("tanh")) == "GELU(approximate='tanh')"
    assert repr(fnn.SiLU()) == "SiLU()" and repr(fnn.Mish()) == "Mish()" and repr(fnn.SwiGLU()) == "SwiGLU()"
    assert repr(fnn.GeGLU("tanh")) == "GeGLU(approximate='tanh')"
    torch.testing.assert_close(fnn.GELU("tanh")(x), torch.nn.GELU("tanh")(x))
    torch.testing.assert_close(fnn.SiLU()(x), torch.nn.SiLU()(x))
    torch.testing.assert_close(fnn.Mish()(x), torch.nn.Mish()(x))
    torch.testing.assert_close(fnn.SwiGLU()(x), fused_acts.swiglu(x[:, :5], x[:, 5:]))
    torch.testing.assert_close(fnn.SwiGLU()(x, x), fused_acts.swiglu(x, x))
    torch.testing.assert_close(fnn.GeGLU()(x), fused_acts.geglu(x))
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh', got 'exact'"):
        fnn.GELU("exact")


def _bad_inputs(device):
    """(callable, exception, message) for every bad input."""
    f = torch.randn(3, 4, device=device)
    for dtype in (torch.int64, torch.bool, torch.complex64):
        bad = torch.ones(3, 4, device=device, dtype=dtype)
        name = str(dtype).removeprefix("torch.")
        msg = f"x must be float32, float64, bfloat16 or float16, got {name}"
        yield lambda bad=bad: fused_acts.gelu(bad), TypeError, f"gelu: {msg}"
        yield lambda bad=bad: fused_acts.silu(bad), TypeError, f"silu: {msg}"
        yield lambda bad=bad: fused_acts.mish(bad), TypeError, f"mish: {msg}"
        yield lambda bad=bad: fused_acts.swiglu(bad), TypeError, f"swiglu: {msg}"
        yield lambda bad=bad: fused_acts.swiglu(bad, f), TypeError, f"swiglu: gate must be float32, float64, bfloat16 or float16, got {name}"
    yield (lambda: fused_acts.swiglu(f, torch.randn(3, 5, device=device)), ValueError,
           r"swiglu: gate and up must have the same shape, got \[3, 4\] and \[3, 5\]")
    yield (lambda: fused_acts.geglu(f, torch.randn(3, 5, device=device)), ValueError,
           r"geglu: gate and up must have the same shape, got \[3, 4\] and \[3, 5\]")
    yield (lambda: fused_acts.swiglu(f, f.double()), TypeError,
           "swiglu: gate and up must have the same dtype, got float32 and float64")
    yield (lambda: fused_acts.swiglu(torch.randn(3, 5, device=device)), ValueError,
           r"swiglu: packed x must have an even last dim \(gate‖up\), got shape \[3, 5\]")
    yield (lambda: fused_acts.swiglu(torch.tensor(1.0, device=device)), ValueError,
           r"swiglu: packed x must have an even last dim \(gate‖up\), got shape \[\]")
    yield (lambda: fused_acts.gelu(f, "exact"), ValueError, "gelu: approximate must be 'none' or 'tanh', got 'exact'")
    yield (lambda: fused_acts.geglu(f, f, "exact"), ValueError, "geglu: approximate must be 'none' or 'tanh', got 'exact'")
    yield (lambda: torch.ops.fused_acts.silu_backward(torch.randn(3, 5, device=device), f), ValueError,
           r"silu_backward: grad and x must have the same shape, got \[3, 5\] and \[3, 4\]")
    if device != "cpu":
        yield (lambda: fused_acts.swiglu(f, f.cpu()), RuntimeError,
               "swiglu: gate and up must be on the same device, got cuda:0 and cpu")


@pytest.mark.parametrize("mode", ["eager", "compile"])
def test_bad_inputs_raise_clear_errors(mode, device):
    for fn, error, message in _bad_inputs(device):
        if mode == "compile":
            torch._dynamo.reset()
            fn = torch.compile(fn, fullgraph=True, backend="aot_eager")
        with pytest.raises(Exception) as info:
            fn()
        # torch.compile wraps errors raised while tracing; the message survives.
        assert isinstance(info.value, error) or mode == "compile", info.value
        assert info.match(message)


def test_fake_kernels_check_inputs():
    meta = torch.empty(3, 4, device="meta")
    with pytest.raises(ValueError, match=r"swiglu: gate and up must have the same shape, got \[3, 4\] and \[3, 5\]"):
        torch.ops.fused_acts.swiglu(meta, torch.empty(3, 5, device="meta"))
    with pytest.raises(TypeError, match="silu: x must be float32, float64, bfloat16 or float16, got int32"):
        torch.ops.fused_acts.silu(torch.empty(3, device="meta", dtype=torch.int32))
    assert torch.ops.fused_acts.swiglu_packed(meta).shape == (3, 2)


def test_no_work_on_bad_input():
    """A bad call raises before anything is written or allocated for output."""
    gate = torch.randn(4, 4)
    before = gate.clone()
    with pytest.raises(ValueError):
        fused_acts.swiglu(gate, torch.randn(4, 3))
    assert torch.equal(gate, before)


@pytest.mark.skipif(torch.version.cuda is None or os.environ.get("FUSED_ACTS_CUDA") == "0",
                    reason="torch without CUDA, or CUDA disabled for this build")
def test_every_op_has_a_cuda_kernel():
    """Runs on CPU-only machines too: a build that silently dropped CUDA fails here."""
    missing = [op for op in OPS if not torch._C._dispatch_has_kernel_for_dispatch_key(f"fused_acts::{op}", "CUDA")]
    assert not missing


def test_every_op_has_cpu_and_fake_kernels():
    for op in OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fused_acts::{op}", "CPU"), op
        assert torch._library.simple_registry.singleton.find(f"fused_acts::{op}").fake_impl.kernel is not None, op


def subprocess_env(**variables):
    """The environment for a subprocess that imports the package this process imported."""
    package_root = str(Path(fused_acts.__file__).parent.parent)
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **variables}


# Each CPU build: whether this CPU runs it, and the ATen capability whose
# eager kernels share its SIMD width, and so its results bit for bit.
def cpu_has(feature):
    return getattr(torch.cpu, f"_is_{feature}_supported", lambda: False)()


CPU_BUILDS = {
    "default": (lambda: True, "default"),
    "avx2": (lambda: cpu_has("avx2"), "avx2"),
    "avx512": (lambda: cpu_has("avx512"), "avx512"),
    "avx512_bf16": (lambda: cpu_has("avx512_bf16"), "avx512"),
}


def run_eager_tests_in_subprocess(level, **variables):
    """Every CPU test that compares with eager or names every build, in a
    subprocess that loads the `level` CPU build, eager running at the same
    SIMD width."""
    if fused_acts._extension._library_path(f"_cpu_{level}") is None:
        pytest.skip(f"no {level} build on this platform")
    supported, aten_capability = CPU_BUILDS[level]
    if not supported():
        pytest.skip(f"this CPU cannot run {level}")
    tests = Path(__file__).parent
    pytest_args = ["-q", "-x", "-p", "no:cacheprovider", "-k", "(eager or every_build) and (cpu or bit_for_bit) and not in_subprocess",
                   str(tests / "test_ops.py"), str(tests / "test_accuracy.py")]
    script = (
        "import sys, pytest, fused_acts\n"
        f"assert fused_acts._extension.cpu_capability == {level!r}\n"
        f"sys.exit(pytest.main({pytest_args!r}))"
    )
    env = subprocess_env(FUSED_ACTS_CPU_KERNELS=level, ATEN_CPU_CAPABILITY=aten_capability, **variables)
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=tests, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.parametrize("level", CPU_BUILDS)
def test_each_cpu_build_matches_eager_in_subprocess(level):
    """The import loads the best CPU build; the others run here."""
    if level == fused_acts._extension.cpu_capability:
        pytest.skip("the build this process runs")
    run_eager_tests_in_subprocess(level)


@pytest.mark.parametrize("level", [level for level in CPU_BUILDS if level != "default"])
def test_nontemporal_stores_match_eager_in_subprocess(level):
    """Calls that outgrow the last-level cache store past it (non-temporal
    stores, AVX2 and up). A threshold of 0 bytes sends every call there,
    among them outputs whose rows start unaligned and so fall back."""
    run_eager_tests_in_subprocess(level, FUSED_ACTS_NONTEMPORAL_MIN_BYTES="0")


def test_bad_nontemporal_threshold_is_a_clear_error():
    script = "import torch, fused_acts; fused_acts.silu(torch.ones(3))"
    env = subprocess_env(FUSED_ACTS_NONTEMPORAL_MIN_BYTES="lots")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "FUSED_ACTS_NONTEMPORAL_MIN_BYTES must be a byte count, 0 (always) or -1 (never), got 'lots'" in result.stderr


def test_unknown_cpu_build_is_a_clear_import_error():
    env = subprocess_env(FUSED_ACTS_CPU_KERNELS="avx9000")
    result = subprocess.run([sys.executable, "-c", "import fused_acts"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "no CPU kernels were built for avx9000" in result.stderr
