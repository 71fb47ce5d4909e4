"""Autograd: gradcheck to the third order in float64, and every double
backward against autograd through the float64 reference, in every dtype."""

import pytest
import torch
from helpers import SPECIAL_VALUES
from reference import GATED, PACKINGS, UNARY, pack, ref_forward, ref_gated, split_packed

FORMS = list(UNARY) + list(GATED) + [f"{name}_{packing}" for name in GATED for packing in PACKINGS]


def parse(form):
    """(activation name, packing or None)."""
    for packing in sorted(PACKINGS, key=len, reverse=True):
        if form.endswith(f"_{packing}"):
            return form.removesuffix(f"_{packing}"), packing
    return form, None


def fused_of(form):
    name, packing = parse(form)
    if packing is not None:
        return lambda x: GATED[name].fused(x, **PACKINGS[packing])
    return (UNARY.get(name) or GATED[name]).fused


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_gradcheck_to_third_order(form, device):
    """First and second derivatives (gradgradcheck), and the third through
    gradgradcheck of the gradient: each order is differentiable in turn."""
    torch.manual_seed(0)
    fused = fused_of(form)
    if form in UNARY:
        args = [torch.randn(5, 7, device=device, dtype=torch.float64) * 3]
    elif form in GATED:
        args = [torch.randn(5, 7, device=device, dtype=torch.float64) * 3 for _ in range(2)]
    else:
        args = [torch.randn(5, 8, device=device, dtype=torch.float64) * 3]
    args = [t.requires_grad_() for t in args]
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


@pytest.mark.parametrize("form", FORMS)
def test_double_backward_matches_float64(form, device, dtype):
    """Every double-backward output against autograd through the float64
    reference, within a few eps of the largest, special values included: nan
    at ±inf and nan inputs, as eager's. (Eager's own float64 Mish gives nan
    at 1e30 too, so it cannot be the reference.)"""
    torch.manual_seed(0)
    values = torch.cat([torch.randn(500, dtype=torch.float64) * 3, torch.tensor(SPECIAL_VALUES, dtype=torch.float64)])
    values = values.to(device=device, dtype=dtype)
    fused = fused_of(form)
    if form in UNARY:
        reference = lambda x: ref_forward(form, x)  # noqa: E731
        inputs = [values]
    else:
        name, packing = parse(form)
        reference = lambda gate, up: ref_gated(name, gate, up)  # noqa: E731
        inputs = [values, (torch.randn(values.shape, dtype=torch.float64) * 3).to(device=device, dtype=dtype)]
        if packing is not None:
            layout = PACKINGS[packing]
            inputs = [pack(*inputs, **layout)]
            reference = lambda x, separate=reference: separate(*split_packed(x, **layout))  # noqa: E731
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


def sample_inputs(form, device, dtype=torch.float32):
    torch.manual_seed(0)
    width = 8 if parse(form)[1] else 7
    count = 2 if form in GATED else 1
    return [(torch.randn(5, width, device=device, dtype=dtype) * 3).requires_grad_() for _ in range(count)]


@pytest.mark.skipif(
    torch.torch_version.TorchVersion(torch.__version__) < "2.14",
    reason="the node implements torch 2.14's compiled-autograd interface (forward_node.h)",
)
@pytest.mark.parametrize("form", FORMS)
def test_compiled_autograd_matches_eager(form, device):
    """The forwards' backward nodes (csrc/autograd/forward_node.h) run under
    compiled autograd, in one graph, as eager's backward does."""
    fused, inputs = fused_of(form), sample_inputs(form, device)
    expected = torch.autograd.grad(fused(*inputs).square().sum(), inputs)
    torch._dynamo.reset()
    compiler = torch.compile(backend="aot_eager", fullgraph=True)
    with torch._dynamo.compiled_autograd._enable(compiler):
        loss = fused(*inputs).square().sum()
        grads = torch.autograd.grad(loss, inputs)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("form", FORMS)
def test_backward_node_is_named_for_its_backward_op_and_frees_what_it_saved(form, device):
    name, packing = parse(form)
    inputs = sample_inputs(form, device)
    out = fused_of(form)(*inputs)
    family = (UNARY.get(name) or GATED[name]).family
    assert out.grad_fn.name() == f"{family}{'_packed' if packing else ''}_backward"
    out.sum().backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        out.sum().backward()
