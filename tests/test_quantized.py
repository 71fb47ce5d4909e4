"""Quantized outputs (out_dtype=): every op, layout, dtype and format is bit
for bit quantize(op(x)), and quantize is the definition (reference.py's
ref_quantize, docs/design.md). Then errors, grad, compile, export and the
GEMMs that consume them. The bit tests run again for each CPU build
(cpu_builds)."""

import pytest
import torch
from helpers import SHAPES, SPECIAL_VALUES, make_input, same_bits
from reference import GATED, PACKINGS, QMAX, UNARY, pack, ref_quantize

import fused_acts

E4M3, E5M2, INT8, E8M0 = torch.float8_e4m3fn, torch.float8_e5m2, torch.int8, torch.float8_e8m0fnu

# The formats, by name: the quantized keyword arguments, a static scale as its value.
FORMATS = {
    "e4m3_row": dict(out_dtype=E4M3),
    "e4m3_group32": dict(out_dtype=E4M3, granularity=32),
    "e4m3_group32_e8m0": dict(out_dtype=E4M3, granularity=32, scale_dtype=E8M0),
    "e5m2_group16": dict(out_dtype=E5M2, granularity=16),
    "int8_row": dict(out_dtype=INT8),
    "int8_tensor": dict(out_dtype=INT8, granularity="tensor"),
    "e4m3_tensor_e8m0": dict(out_dtype=E4M3, granularity="tensor", scale_dtype=E8M0),
    "e5m2_static": dict(out_dtype=E5M2, scale=0.004),
}


def quantized_kwargs(fmt, device):
    """The keyword arguments of a format (a FORMATS name, or its dict), its static scale a tensor on device."""
    kwargs = dict(FORMATS[fmt] if isinstance(fmt, str) else fmt)
    if "scale" in kwargs:
        kwargs["scale"] = torch.tensor(kwargs["scale"], device=device)
    return kwargs


def assert_same_quantized(actual, expected):
    """Scales bit for bit (any nan matching any nan), and q bit for bit in
    every group whose scale is finite (the definition leaves the others')."""
    (q, s), (q_ref, s_ref) = actual, expected
    assert q.dtype == q_ref.dtype and s.dtype == s_ref.dtype
    assert q.shape == q_ref.shape and s.shape == s_ref.shape, (q.shape, s.shape, q_ref.shape, s_ref.shape)
    # float32 holds every e8m0 scale exactly, nan included.
    s32 = s.float()
    assert same_bits(s32, s_ref.float())
    finite = s32.isfinite()
    if q.dim() and s.dim():
        finite = finite.repeat_interleave(q.shape[-1] // max(s.shape[-1], 1), dim=-1) if s.shape[-1] else finite
    elif not bool(finite):
        return
    mismatch = (q.view(torch.uint8) != q_ref.view(torch.uint8)) & finite
    assert not mismatch.any(), f"{int(mismatch.sum())} of {q.numel()} differ"


def rows_of_many_sizes(shape, device, dtype):
    """Inputs whose rows span magnitudes from 1e-3 to 1e2, so scales differ,
    with a row of zeros where there are rows to spare."""
    x = torch.randn(shape, device=device, dtype=torch.float64)
    if x.dim() >= 2 and x.shape[-2] > 0:
        x = x * torch.logspace(-3, 2, x.shape[-2], device=device, dtype=torch.float64).unsqueeze(-1)
        x[..., 0, :] = 0
    return x.to(dtype)


def every_form():
    """(id, fn(x, **quantized)) for each unary activation, and each gated one
    separate (x's halves, row-strided views) and in each packing."""
    for name, case in UNARY.items():
        yield pytest.param(case.fused, id=name)
    for name, case in GATED.items():
        yield pytest.param(lambda x, f=case.fused, **kw: f(*x.chunk(2, dim=-1), **kw), id=name)
        for packing, layout in PACKINGS.items():
            yield pytest.param(
                lambda x, f=case.fused, layout=layout, **kw: f(x, **layout, **kw), id=f"{name}_{packing}"
            )


@pytest.mark.cpu_builds
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("fn", every_form())
def test_op_is_quantize_of_op(fn, fmt, device, dtype):
    x = rows_of_many_sizes((3, 5, 192), device, dtype)
    kwargs = quantized_kwargs(fmt, device)
    with torch.no_grad():
        h = fn(x)
        actual = fn(x, **kwargs)
    assert isinstance(actual, fused_acts.Quantized)
    assert_same_quantized(actual, fused_acts.quantize(h, **kwargs))
    assert_same_quantized(actual, ref_quantize(h, **kwargs))


@pytest.mark.cpu_builds
@pytest.mark.parametrize("layout", ["transposed", "row_strided", "step", "expanded"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_layouts(layout, fmt, device, dtype):
    """Inputs without a row stride, row-strided, strided and expanded, for a
    unary op, a separate gated op, and interleaved pairs of a strided tensor."""
    kwargs = quantized_kwargs(fmt, device)
    x = make_input((6, 64), layout, device, dtype)
    up = make_input((6, 64), layout, device, dtype)
    packed = pack(x, up, interleaved=True)[:, :64]
    for h, actual in [
        (fused_acts.silu(x), fused_acts.silu(x, **kwargs)),
        (fused_acts.swiglu(x, up), fused_acts.swiglu(x, up, **kwargs)),
        (fused_acts.swiglu(packed, interleaved=True), fused_acts.swiglu(packed, interleaved=True, **kwargs)),
    ]:
        assert_same_quantized(actual, ref_quantize(h, **kwargs))


def group_formats(shape):
    """Each format, with granularity a divisor of shape's last dim where it takes a group."""
    cols = shape[-1] if shape else 1
    for name, kwargs in FORMATS.items():
        if isinstance(kwargs.get("granularity"), int):
            divisor = next((g for g in (3, 5, 7, 1) if cols % g == 0), 1)
            kwargs = {**kwargs, "granularity": divisor}
        yield pytest.param(kwargs, id=name)


@pytest.mark.cpu_builds
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_quantize_is_the_definition(shape, device, dtype):
    """Odd, empty and 0-dim shapes, every format."""
    x = rows_of_many_sizes(shape, device, dtype)
    for param in group_formats(shape):
        kwargs = quantized_kwargs(param.values[0], device)
        assert_same_quantized(fused_acts.quantize(x, **kwargs), ref_quantize(x, **kwargs))


def test_empty_inputs_have_the_scales_of_zeros(device):
    """An empty group's amax is 0: its scale is 1e-12 / qmax."""
    q, s = fused_acts.quantize(torch.empty(2, 0, device=device), out_dtype=E4M3)
    assert q.shape == (2, 0) and s.shape == (2, 1)
    expected = (torch.tensor(1e-12) / torch.tensor(448.0)).item()
    assert torch.equal(s, torch.full((2, 1), expected, device=device))
    q, s = fused_acts.silu(torch.empty(0, 64, device=device), out_dtype=INT8, granularity=32)
    assert q.shape == (0, 64) and s.shape == (0, 2)
    _, s = fused_acts.silu(torch.empty(0, device=device), out_dtype=INT8, granularity="tensor")
    assert s.shape == () and s.item() == (torch.tensor(1e-12) / torch.tensor(127.0)).item()


@pytest.mark.cpu_builds
@pytest.mark.parametrize("fmt", FORMATS)
def test_special_values(fmt, device, dtype):
    """Zeros, subnormals, huge values, infinities and nans, one row each: a
    nan's group has a nan scale, an infinity's an infinite one."""
    values = torch.tensor(SPECIAL_VALUES, dtype=torch.float64)
    x = values.repeat(len(SPECIAL_VALUES), 4).reshape(len(SPECIAL_VALUES), -1)
    x = x.to(dtype).to(device)
    kwargs = quantized_kwargs(fmt, device)
    assert_same_quantized(fused_acts.quantize(x, **kwargs), ref_quantize(x, **kwargs))
    assert_same_quantized(fused_acts.gelu(x, **kwargs), ref_quantize(fused_acts.gelu(x), **kwargs))


@pytest.mark.cpu_builds
@pytest.mark.parametrize("out_dtype", [E4M3, E5M2, INT8], ids=str)
def test_values_saturate_and_round_to_nearest_even(out_dtype, device):
    """A static scale of 1: values past qmax clamp to it, halfway values go to the even neighbour."""
    qmax = QMAX[out_dtype]
    # Halfway between neighbours that are 1 apart (int8 everywhere, e4m3 in
    # [8, 16)) or 2 apart (e5m2 in [8, 16)).
    halfway, nearest_even = {
        INT8: ([0.5, 1.5, 2.5, -2.5], [0.0, 2.0, 2.0, -2.0]),
        E4M3: ([8.5, 9.5, 10.5, -9.5], [8.0, 10.0, 10.0, -10.0]),
        E5M2: ([9.0, 11.0, 13.0, -11.0], [8.0, 12.0, 12.0, -12.0]),
    }[out_dtype]
    x = torch.tensor([*halfway, 1e9, -1e9, qmax * 2, 0.0], device=device)
    q, s = fused_acts.quantize(x, out_dtype=out_dtype, scale=torch.tensor(1.0, device=device))
    assert s.item() == 1.0
    expected = [*nearest_even, qmax, -qmax, qmax, 0.0]
    assert q.float().tolist() == expected


def test_power_of_two_scales_do_not_saturate(device):
    x = torch.randn(64, 128, device=device) * 7
    q, s = fused_acts.quantize(x, out_dtype=E4M3, granularity=32, scale_dtype=E8M0)
    s32 = s.float()
    assert torch.equal(torch.frexp(s32).mantissa, torch.full_like(s32, 0.5))
    amax = x.reshape(64, 4, 32).abs().amax(-1)
    assert (amax / s32 <= 448).all() and (amax / s32 > 224).all()


def test_consumers(device):
    """A SwiGLU FFN's down projection in W8A8: fp8 through torch._scaled_mm
    and int8 through torch._int_mm, with per-row scales of activation and
    weight, close to the unquantized projection."""
    torch.manual_seed(0)
    tokens, hidden, inter = 32, 64, 128
    gate_up = torch.randn(tokens, 2 * inter, device=device)
    w_down = torch.randn(hidden, inter, device=device) / inter**0.5
    with torch.inference_mode():
        exact = fused_acts.swiglu(gate_up) @ w_down.t()
        for out_dtype in (E4M3, INT8):
            q, s = fused_acts.swiglu(gate_up, out_dtype=out_dtype)
            w_q, w_s = fused_acts.quantize(w_down, out_dtype=out_dtype)
            assert s.shape == (tokens, 1) and w_s.shape == (hidden, 1)
            if out_dtype == E4M3:
                out = torch._scaled_mm(q, w_q.t(), scale_a=s, scale_b=w_s.t(), out_dtype=torch.float32)
            else:
                out = torch._int_mm(q, w_q.t()).float() * s * w_s.t()
            error = (out - exact).norm() / exact.norm()
            assert error < {E4M3: 0.06, INT8: 0.02}[out_dtype], (out_dtype, error)


BAD_CALLS = [
    (lambda x: fused_acts.silu(x[:, :100], out_dtype=E4M3, granularity=64), ValueError,
     "silu: granularity 64 does not divide the last dim 100"),
    (lambda x: fused_acts.swiglu(x, out_dtype=E4M3, granularity=48), ValueError,
     "swiglu: granularity 48 does not divide the last dim 64"),
    (lambda x: fused_acts.gelu(x, out_dtype=torch.float16), TypeError,
     "gelu: out_dtype must be float8_e4m3fn, float8_e5m2 or int8, got float16"),
    (lambda x: fused_acts.quantize(x, out_dtype=torch.uint8), TypeError,
     "quantize: out_dtype must be float8_e4m3fn, float8_e5m2 or int8, got uint8"),
    (lambda x: fused_acts.mish(x, out_dtype=E4M3, granularity=0), ValueError,
     "mish: granularity must be 'row', 'tensor' or a positive int, got 0"),
    (lambda x: fused_acts.mish(x, out_dtype=E4M3, granularity="col"), ValueError,
     "mish: granularity must be 'row', 'tensor' or a positive int, got 'col'"),
    (lambda x: fused_acts.silu(x, out_dtype=E4M3, granularity="row", scale=torch.tensor(1.0)), ValueError,
     "silu: a static scale is one scale for the tensor, so granularity must be 'tensor' or left out, got 'row'"),
    (lambda x: fused_acts.silu(x, out_dtype=E4M3, granularity=32, scale=torch.tensor(1.0)), ValueError,
     "silu: a static scale is one scale for the tensor, so granularity must be 'tensor' or left out, got 32"),
    (lambda x: fused_acts.silu(x, out_dtype=E4M3, scale=torch.tensor([1.0, 2.0])), TypeError,
     r"silu: scale must be a float32 tensor with one element, got float32 of shape \[2\]"),
    (lambda x: fused_acts.silu(x, out_dtype=E4M3, scale=torch.tensor(1.0, dtype=torch.float64)), TypeError,
     r"silu: scale must be a float32 tensor with one element, got float64 of shape \[\]"),
    (lambda x: fused_acts.silu(x, out_dtype=E4M3, scale=torch.tensor(1.0), scale_dtype=E8M0), ValueError,
     "silu: a static scale is used as given, so scale_dtype must be float32, got float8_e8m0fnu"),
    (lambda x: fused_acts.silu(x, out_dtype=E4M3, scale_dtype=torch.bfloat16), TypeError,
     "silu: scale_dtype must be float32 or float8_e8m0fnu, got bfloat16"),
    (lambda x: fused_acts.silu(x, granularity=32), ValueError,
     "silu: granularity, scale and scale_dtype describe a quantized output; give out_dtype too"),
    (lambda x: fused_acts.quantize(x.long(), out_dtype=E4M3), TypeError,
     "quantize: x must be float32, float64, bfloat16 or float16, got int64"),
    (lambda x: fused_acts.swiglu(x[:, :3], out_dtype=E4M3), ValueError,
     r"swiglu: packed x must have an even last dim \(gate‖up\), got shape \[4, 3\]"),
    (lambda x: torch.ops.fused_acts.silu_quantized(x, out_dtype=E4M3, group_size=-2), ValueError,
     "silu: granularity must be a positive group size, got -2"),
    (lambda x: torch.ops.fused_acts.silu_quantized(x, out_dtype=E4M3, group_size=32, per_tensor=True), ValueError,
     "silu: a per-tensor scale takes no group_size, got 32"),
    (lambda x: torch.ops.fused_acts.silu_quantized(x, out_dtype=E4M3, scale=torch.tensor(1.0)), ValueError,
     "silu: a static scale is one scale for the tensor, so granularity must be 'tensor', got 'row'"),
]  # fmt: skip


@pytest.mark.parametrize("call, error, message", BAD_CALLS, ids=[m for _, _, m in BAD_CALLS])
def test_bad_input_is_a_clear_error(call, error, message):
    """The same error from real tensors and from fake ones (torch.compile, meta)."""
    x = torch.randn(4, 128)
    with pytest.raises(error, match=message):
        call(x)
    with pytest.raises(error, match=message):
        call(x.to("meta"))


@pytest.mark.parametrize("fn", [
    lambda x: fused_acts.silu(x, out_dtype=E4M3),
    lambda x: fused_acts.swiglu(x, out_dtype=INT8, granularity="tensor"),
    lambda x: fused_acts.geglu(*x.chunk(2, -1), out_dtype=E5M2),
    lambda x: fused_acts.quantize(x, out_dtype=E4M3),
])  # fmt: skip
def test_quantized_outputs_have_no_gradient(fn, device):
    x = torch.randn(4, 64, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="a quantized output has no gradient, but an input requires grad; call it "):
        fn(x)
    with torch.no_grad():
        expected = fn(x)
    with torch.inference_mode():
        assert_same_quantized(fn(x), expected)


@pytest.mark.parametrize("fmt", ["e4m3_group32_e8m0", "int8_tensor", "e5m2_static"])
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_same_bits(fmt, backend, device):
    torch._dynamo.reset()
    kwargs = quantized_kwargs(fmt, device)
    x = torch.randn(8, 128, device=device)
    fn = lambda x: fused_acts.swiglu(x, interleaved=True, **kwargs)  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True, backend=backend, dynamic=False)
    with torch.no_grad():
        assert_same_quantized(tuple(compiled(x)), tuple(fn(x)))


class Quantizing(torch.nn.Module):
    def forward(self, gate_up):
        q, s = fused_acts.swiglu(gate_up, out_dtype=E4M3, granularity=32)
        return q, s


def test_export(device):
    x = torch.randn(8, 128, device=device)
    exported = torch.export.export(Quantizing(), (x,))
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert "fused_acts.swiglu_packed_quantized.default" in targets, targets
    assert_same_quantized(exported.module()(x), Quantizing()(x))


def test_vmap_is_per_sample(device):
    """No batching rule: vmap's fallback loops over samples, so a per-tensor scale is each sample's own."""
    x = torch.randn(3, 4, 64, device=device) * torch.tensor([1.0, 10.0, 100.0], device=device).view(3, 1, 1)
    fn = lambda x: tuple(fused_acts.silu(x, out_dtype=INT8, granularity="tensor"))  # noqa: E731
    q, s = torch.vmap(fn)(x)
    expected = [fn(sample) for sample in x]
    assert torch.equal(q, torch.stack([e[0] for e in expected]))
    assert torch.equal(s, torch.stack([e[1] for e in expected]))
