"""xIELU (Apertus): the op against eager's formula and a float64 reference,
its coefficients' gradients, every bad input, vmap, compile and export, and
the module that patch swaps in for transformers' XIELUActivation."""

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from helpers import LAYOUTS, SHAPES, SPECIAL_VALUES, assert_close_scaled, make_input, same_bits
from test_accuracy import ulp_errors

import fused_acts
from fused_acts import nn as fnn

BETA, EPS = 0.5, -1e-6


def coefficients(dtype=torch.float32, device="cpu", alpha_p=0.8, alpha_n=1.3):
    """Coefficients as the formula takes them, one-element tensors: alpha_n past β, as softplus puts it."""
    return torch.tensor([alpha_p], dtype=dtype, device=device), torch.tensor([alpha_n], dtype=dtype, device=device)


def eager_xielu(x, alpha_p, alpha_n, beta=BETA, eps=EPS):
    """transformers' _xielu_python, on coefficients already through softplus, in x's dtype."""
    alpha_p, alpha_n = alpha_p.reshape(()).to(x.dtype), alpha_n.reshape(()).to(x.dtype)
    eps = torch.tensor(eps, dtype=x.dtype, device=x.device)
    return torch.where(x > 0, alpha_p * x * x + beta * x, (torch.expm1(torch.min(x, eps)) - x) * alpha_n + beta * x)


def ref_xielu(x, alpha_p, alpha_n, beta=BETA, eps=EPS):
    """The float64 reference: eager's formula in float64, eps as given."""
    return eager_xielu(x.double(), alpha_p.double(), alpha_n.double(), beta, eps)


def fused(x, alpha_p, alpha_n):
    return fused_acts.xielu(x, alpha_p, alpha_n, BETA, EPS)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_and_gradients_match_eager(shape, device, dtype):
    x = make_input(shape, "contiguous", device, dtype)
    alpha_p, alpha_n = coefficients(dtype, device)
    inputs = [t.clone().requires_grad_() for t in (x, alpha_p, alpha_n)]
    eager_inputs = [t.clone().requires_grad_() for t in (x, alpha_p, alpha_n)]
    out = fused(*inputs)
    expected = eager_xielu(*eager_inputs)
    assert out.shape == x.shape and out.dtype == dtype
    grad_out = torch.randn_like(expected)
    grads = torch.autograd.grad(out, inputs, grad_out)
    eager_grads = torch.autograd.grad(expected, eager_inputs, grad_out)
    ref_inputs = [t.detach().double().requires_grad_() for t in (x, alpha_p, alpha_n)]
    ref = ref_xielu(*ref_inputs)
    ref_grads = torch.autograd.grad(ref, ref_inputs, grad_out.double())
    if dtype in (torch.bfloat16, torch.float16):
        # Eager's 16-bit gradient rounds β + αn·(e^x − 1) term by term, where
        # they cancel; ours rounds once: both judged against float64's, rounded.
        expected, eager_grads = ref.to(dtype), [g.to(dtype) for g in ref_grads]
    assert_close_scaled([out, grads[0]], [expected, eager_grads[0]])
    # The coefficients' gradients are sums: judged against float64's, to a tolerance of the sum's size.
    for got, ref, terms in zip(grads[1:], ref_grads[1:], (x.double() ** 2, x.double().abs() + 1)):
        size = (grad_out.double().abs() * terms).sum().item() + 1e-30
        tolerance = {torch.float64: 1e-12, torch.float32: 1e-6}.get(dtype, 1e-2)
        assert got.shape == (1,) and got.dtype == dtype
        assert abs(got.double().item() - ref.item()) <= tolerance * size, (got, ref)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_strided_inputs(layout, device, dtype):
    x = make_input((6, 37), layout, device, dtype)
    alpha_p, alpha_n = coefficients(dtype, device)
    grad = make_input((6, 37), layout, device, dtype)
    torch.testing.assert_close(fused(x, alpha_p, alpha_n), fused(x.contiguous(), alpha_p, alpha_n), rtol=0, atol=0)
    got = torch.ops.fused_acts.xielu_backward(grad, x, alpha_p, alpha_n, BETA, EPS)
    expected = torch.ops.fused_acts.xielu_backward(grad.contiguous(), x.contiguous(), alpha_p, alpha_n, BETA, EPS)
    assert torch.equal(got[0], expected[0])
    for g, e in zip(got[1:], expected[1:]):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_special_values(device, dtype):
    """nan stays nan, ±inf as eager's formula gives, and min(x, eps)'s gradient halved at x = eps."""
    eps = torch.tensor(EPS, dtype=dtype).item()  # eps as the dtype holds it, so that x = eps exactly
    x = torch.tensor([*SPECIAL_VALUES, eps, 2 * eps, eps / 2], dtype=torch.float64).to(dtype).to(device)
    alpha_p, alpha_n = coefficients(dtype, device)
    out = fused_acts.xielu(x, alpha_p, alpha_n, BETA, eps)
    expected = eager_xielu(x, alpha_p, alpha_n, BETA, eps)
    assert torch.equal(out.isnan(), expected.isnan())
    torch.testing.assert_close(out, expected, equal_nan=True, rtol=2e-2, atol=1e-30)
    xs, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(fused_acts.xielu(xs, alpha_p, alpha_n, BETA, eps).sum(), xs)
    (expected_grad,) = torch.autograd.grad(eager_xielu(xe, alpha_p, alpha_n, BETA, eps).sum(), xe)
    torch.testing.assert_close(grad, expected_grad, equal_nan=True, rtol=2e-2, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_no_less_accurate_than_eager(dtype, device):
    """Forward and x's gradient against float64, over normal × 3 and uniform ±30."""
    g = torch.Generator().manual_seed(7)
    values = torch.cat([torch.randn(1 << 18, generator=g, dtype=torch.float64) * 3,
                        torch.empty(1 << 15, dtype=torch.float64).uniform_(-30, 30, generator=g)])  # fmt: skip
    x = values.to(dtype).to(device)
    alpha_p, alpha_n = coefficients(dtype, device)
    xd = x.double().requires_grad_()
    ref = ref_xielu(xd, alpha_p, alpha_n)
    (ref_grad,) = torch.autograd.grad(ref, xd, torch.ones_like(ref))
    results = []
    for fn in (fused, eager_xielu):
        xs = x.clone().requires_grad_()
        out = fn(xs, alpha_p, alpha_n)
        (grad,) = torch.autograd.grad(out, xs, torch.ones_like(out))
        results.append((ulp_errors(out.detach(), ref.detach(), dtype), ulp_errors(grad, ref_grad, dtype)))
    for what, ours, theirs in zip(("forward", "gradient"), *results):
        assert ours.max() <= theirs.max() + 1, (what, ours.max().item(), theirs.max().item())
        assert ours.mean() <= theirs.mean() * 1.25 + 0.02, (what, ours.mean().item(), theirs.mean().item())


def test_gradcheck(device):
    x = torch.tensor([-5.0, -1.0, -1e-3, 0.3, 1.0, 4.0], dtype=torch.float64, device=device, requires_grad=True)
    alpha_p, alpha_n = (t.requires_grad_() for t in coefficients(torch.float64, device))
    assert torch.autograd.gradcheck(lambda *a: fused_acts.xielu(*a, BETA, EPS), (x, alpha_p, alpha_n))


def test_coefficient_gradients_are_the_same_at_any_thread_count():
    """Summed per block of fixed size, then in order: no thread count changes a bit."""
    x = torch.randn(3, 100_003, dtype=torch.float32) * 3
    grad = torch.randn_like(x)
    alpha_p, alpha_n = coefficients()
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(torch.ops.fused_acts.xielu_backward(grad, x, alpha_p, alpha_n, BETA, EPS))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(same_bits(a, b) for a, b in zip(results[0], other))


def test_double_backward_is_refused():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    alpha_p, alpha_n = coefficients(torch.float64)
    (grad,) = torch.autograd.grad(fused(x, alpha_p, alpha_n).sum(), x)  # first order, without create_graph
    assert grad.shape == x.shape
    with pytest.raises(NotImplementedError, match="xielu_backward: double backward is not supported"):
        torch.autograd.grad(fused(x, alpha_p, alpha_n).sum(), x, create_graph=True)


def _rand(device, *shape, dtype=torch.float32):
    return torch.randn(shape, device=device, dtype=dtype)


BAD_INPUTS = {
    "int-x": (
        lambda d: fused(torch.ones(3, dtype=torch.int64, device=d), *coefficients(device=d)),
        TypeError,
        "xielu: x must be float32, float64, bfloat16 or float16, got int64",
    ),
    "two-element-alpha_p": (
        lambda d: fused(_rand(d, 3), _rand(d, 2), coefficients(device=d)[1]),
        ValueError,
        r"xielu: alpha_p must have one element, got shape \[2\]",
    ),
    "int-alpha_n": (
        lambda d: fused(_rand(d, 3), coefficients(device=d)[0], torch.ones(1, dtype=torch.int32, device=d)),
        TypeError,
        "xielu: alpha_n must be float32, float64, bfloat16 or float16, got int32",
    ),
    "meta-alpha_p": (
        lambda d: fused(_rand(d, 3), torch.ones(1, device="meta"), coefficients(device=d)[1]),
        RuntimeError,
        "xielu: alpha_p and x must be on the same device",
    ),
    "nan-beta": (
        lambda d: fused_acts.xielu(_rand(d, 3), *coefficients(device=d), beta=float("nan")),
        ValueError,
        "xielu: beta must be finite, got nan",
    ),
    "inf-eps": (
        lambda d: fused_acts.xielu(_rand(d, 3), *coefficients(device=d), eps=float("-inf")),
        ValueError,
        "xielu: eps must be finite, got -inf",
    ),
    "backward-grad-shape": (
        lambda d: torch.ops.fused_acts.xielu_backward(_rand(d, 3, 4), _rand(d, 3, 5), *coefficients(device=d)),
        ValueError,
        r"xielu_backward: grad and x must have the same shape, got \[3, 4\] and \[3, 5\]",
    ),
    "backward-grad-dtype": (
        lambda d: torch.ops.fused_acts.xielu_backward(
            _rand(d, 3, dtype=torch.float64), _rand(d, 3), *coefficients(device=d)
        ),
        TypeError,
        "xielu_backward: grad and x must have the same dtype, got float64 and float32",
    ),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_inputs_fail_alike_in_real_and_fake_kernels(name, device):
    """The kernels and the fake kernels (compile, meta) say the same, before any work."""
    call, error, message = BAD_INPUTS[name]
    with pytest.raises(error, match=message):
        call(device)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True), pytest.raises(error, match=message):
        call(device)


def test_vmap():
    x = torch.randn(4, 3, 5)
    alpha_p, alpha_n = coefficients()
    expected = fused(x, alpha_p, alpha_n)
    torch.testing.assert_close(torch.vmap(fused, in_dims=(1, None, None))(x, alpha_p, alpha_n), expected.movedim(1, 0))
    # Per-sample coefficients, and per-sample gradients of shared ones.
    per_sample = torch.stack([coefficients(alpha_p=0.5 + i)[0] for i in range(4)])
    batched = torch.vmap(fused, in_dims=(0, 0, None))(x, per_sample, alpha_n)
    torch.testing.assert_close(batched, torch.stack([fused(x[i], per_sample[i], alpha_n) for i in range(4)]))
    # The backward per sample: each sample's coefficient gradients its own sums.
    grad = torch.randn_like(x)
    backward = torch.ops.fused_acts.xielu_backward
    grads = torch.vmap(backward, in_dims=(0, 0, None, None, None, None))(grad, x, alpha_p, alpha_n, BETA, EPS)
    for i in range(4):
        for got, expected in zip(grads, backward(grad[i], x[i], alpha_p, alpha_n, BETA, EPS)):
            torch.testing.assert_close(got[i], expected)


def test_compile_fullgraph_and_export():
    torch._dynamo.reset()
    module = fnn.XIELU()
    x = torch.randn(4, 8, requires_grad=True)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    out.sum().backward()
    expected_x = x.detach().clone().requires_grad_()
    reference = copy.deepcopy(module)
    reference(expected_x).sum().backward()
    torch.testing.assert_close(out, reference(expected_x))
    torch.testing.assert_close(x.grad, expected_x.grad)
    torch.testing.assert_close(module.alpha_p.grad, reference.alpha_p.grad)
    torch.testing.assert_close(module.alpha_n.grad, reference.alpha_n.grad)
    exported = torch.export.export(module, (torch.randn(4, 8),))
    assert any("fused_acts.xielu" in str(node.target) for node in exported.graph.nodes)


def test_module_matches_transformers_xielu_and_shares_its_parameters():
    activations = pytest.importorskip("transformers.activations")
    torch.manual_seed(0)
    original = activations.XIELUActivation(dtype=torch.float32)
    fused_module = fnn.XIELU.sharing(original)
    assert fused_module.alpha_p is original.alpha_p and fused_module.beta is original.beta
    assert list(fused_module.state_dict()) == list(original.state_dict())
    x = torch.randn(5, 33, requires_grad=True)
    xe = x.detach().clone().requires_grad_()
    out, expected = fused_module(x), original(xe)
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.sum(), [x, original.alpha_p, original.alpha_n])
    eager_grads = torch.autograd.grad(expected.sum(), [xe, original.alpha_p, original.alpha_n])
    for g, e in zip(grads, eager_grads):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
    # A state dict with other values is read, beta and eps included.
    state = {k: v * 0.5 for k, v in original.state_dict().items()}
    fused_module.load_state_dict(state)
    assert fused_module._beta == 0.25 and fused_module._eps == pytest.approx(EPS / 2)
    torch.testing.assert_close(fused_module(x), original(x))
    assert pickle.loads(pickle.dumps(fused_module)).alpha_p.item() == original.alpha_p.item()


@pytest.mark.parametrize(
    "case",
    ["0-dim x", "bfloat16 x, float32 parameters"],
)
def test_module_keeps_eagers_broadcast_and_promotion(case):
    """A call whose eager result broadcasts (0-dim x: shape [1]) or widens runs eager's formula."""
    module = fnn.XIELU()
    x = torch.tensor(0.7) if case == "0-dim x" else torch.randn(3, dtype=torch.bfloat16)
    alpha_p, alpha_n = F.softplus(module.alpha_p), module.beta + F.softplus(module.alpha_n)
    expected = torch.where(
        x > 0,
        alpha_p * x * x + module.beta * x,
        (torch.expm1(torch.min(x, module.eps)) - x) * alpha_n + module.beta * x,
    )
    out = module(x)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    assert torch.equal(out, expected)


def test_patch_reaches_a_meta_module_that_is_materialized_later():
    """patch on a module built on the meta device reads beta and eps once they are real."""
    activations = pytest.importorskip("transformers.activations")
    torch.manual_seed(0)
    reference = torch.nn.Sequential(activations.XIELUActivation(dtype=torch.float32))
    with torch.device("meta"):
        model = torch.nn.Sequential(activations.XIELUActivation(dtype=torch.float32))
    assert fused_acts.patch(model) == {"XIELU": 1}
    model.to_empty(device="cpu")
    model.load_state_dict(reference.state_dict())
    x = torch.randn(4, 9)
    assert type(model[0]) is fnn.XIELU
    torch.testing.assert_close(model(x), reference(x))
