"""The custom-op registration of every op in the list (csrc/op_list.h):
kernels per dispatch key, fake kernels, opcheck (schema, autograd, fakes,
aot_dispatch), vmap and torch.compile."""

import itertools
import os

import pytest
import torch
from reference import GATED, PACKINGS, UNARY

import fused_acts
from fused_acts._op_list import FORWARD_OPS, OPS

# The values each param takes in the sample calls.
PARAM_VALUES = {
    "approximate": ["none", "tanh"],
    "beta": [1.0, 1.702],
    "alpha": [1.702],
    "limit": [7.0, 0.5],
    "up_offset": [1.0, 0.0],
    "eps": [-1e-6],
    "interleaved": [False, True],
    "up_first": [False, True],
    # The quantized ops' format: a row's scale and the tensor's.
    "out_dtype": [torch.float8_e4m3fn],
    "group_size": [0],
    "per_tensor": [False, True],
    "scale_dtype": [None],
    "scale": [None],
}


def sample_calls(inplace=True, quantized=True, monitored=True):
    """(id, op, params) for each op (but the in-place, quantized and monitored
    ones, unless asked for) and each combination of its params' values."""
    for op in OPS.values():
        if (op.inplace and not inplace) or (op.quantized and not quantized) or (op.monitored and not monitored):
            continue
        for params in itertools.product(*(PARAM_VALUES[p] for p in op.params)):
            yield pytest.param(op, params, id="-".join([op.name, *map(str, params)]))


def sample_args(op, params, device):
    """Small valid arguments for op: random tensors of matching shapes, then
    params (positional; see sample_kwargs for the keyword-only ones)."""
    full, half = (4, 6), (4, 3)
    shapes = {"x": full, "gate": full, "up": full, "grad": half if op.kind == "packed" else full}
    shapes.update(alpha_p=(1,), alpha_n=(1,))  # xielu's coefficients
    positional = params[: len(params) - len(keyword_params(op))]
    return (*(torch.randn(shapes[name], device=device) for name in op.tensors if name in shapes), *positional)


def keyword_params(op):
    """Its keyword-only params (a quantized op's format), which come last."""
    return [name for name in op.kwarg_only if name in op.params]


def sample_accumulators(op, device):
    """A monitored op's stats and histogram (keyword-only), for its output's channels."""
    channels = 3 if op.kind == "packed" else 6
    stats = torch.zeros(6, channels, dtype=torch.float64, device=device)
    return {"stats": stats, "histogram": torch.zeros(8, dtype=torch.float64, device=device)}


def sample_kwargs(op, params, device="cpu"):
    """The keyword-only arguments among params (they come last), and a monitored op's accumulators."""
    if op.monitored:
        return sample_accumulators(op, device)
    keyword = keyword_params(op)
    return dict(zip(keyword, params[len(params) - len(keyword) :]))


def test_every_op_family_is_tested():
    """A new entry in csrc/op_list.h fails here until the tests exercise it (reference.py)."""
    families = {op.family for op in FORWARD_OPS}
    assert families == {case.family for case in (*UNARY.values(), *GATED.values())} | {"xielu"}  # test_xielu.py


def test_the_exported_op_table_lists_every_registered_op():
    """The table the library exports (csrc/schemas.cpp) names each schema it defines, once."""
    prefix = "fused_acts::"
    registered = {n.removeprefix(prefix) for n in torch._C._dispatch_get_all_op_names() if n.startswith(prefix)}
    table = fused_acts._extension.op_table()
    assert len(table) == len(registered) and {row[0] for row in table} == registered
    assert {(row[2], row[3]) for row in table} == {
        *itertools.product(("forward", "backward", "quantized", "monitored"), ("separate", "packed")),
        ("backward_in_place", "packed"),
    }


@pytest.mark.parametrize("op", OPS.values(), ids=lambda op: op.name)
def test_every_op_has_an_autograd_kernel(op):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fused_acts::{op.name}", "Autograd")


@pytest.mark.parametrize("op", OPS.values(), ids=lambda op: op.name)
def test_every_op_has_cpu_and_fake_kernels(op):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fused_acts::{op.name}", "CPU")
    assert torch._library.simple_registry.singleton.find(f"fused_acts::{op.name}").fake_impl.kernel is not None


@pytest.mark.skipif(
    torch.version.cuda is None or os.environ.get("FUSED_ACTS_CUDA") == "0",
    reason="torch without CUDA, or CUDA disabled for this build",
)
@pytest.mark.parametrize("op", OPS.values(), ids=lambda op: op.name)
def test_every_op_has_a_cuda_kernel(op):
    """Runs on CPU-only machines too: a build that silently dropped CUDA fails here."""
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fused_acts::{op.name}", "CUDA")


@pytest.mark.parametrize("op, params", sample_calls())
def test_opcheck(op, params, device):
    # Inputs that require grad make opcheck test the autograd registration
    # too: the backward ops' own (double backward) included. The in-place
    # ops are not differentiable (test_inplace_ops_refuse_grad).
    # The quantized ops refuse inputs that require grad (test_quantized.py),
    # and xielu_backward is not differentiable (test_xielu.py).
    args = sample_args(op, params, device)
    if not op.inplace and not op.quantized and not (op.kind == "xielu" and op.backward):
        args = tuple(a.requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(op.overload, args, sample_kwargs(op, params, device))


@pytest.mark.parametrize("op", [op for op in OPS.values() if op.inplace], ids=lambda op: op.name)
def test_inplace_ops_write_the_packed_backward_over_x(op, device):
    """name_packed_backward_ writes name_packed_backward's result over x,
    bumps x's version, and refuses inputs that require grad."""
    for params in itertools.product(*(PARAM_VALUES[p] for p in op.params)):
        grad, x, *_ = args = sample_args(op, params, device)
        out_of_place = OPS[op.name.removesuffix("_")].overload(*args)
        version = x._version
        assert op.overload(*args) is None and x._version == version + 1
        assert torch.equal(x, out_of_place)
        with pytest.raises(RuntimeError, match=f"{op.name}: writes the gradient over x, and cannot itself be"):
            op.overload(grad, x.requires_grad_(), *params)


@pytest.fixture
def vmap_fallback_disabled():
    """vmap raises, rather than looping over samples, on an op without a batching rule."""
    torch._C._functorch._set_vmap_fallback_enabled(False)
    yield
    torch._C._functorch._set_vmap_fallback_enabled(True)


@pytest.mark.parametrize("op, params", sample_calls(inplace=False, quantized=False, monitored=False))
def test_vmap_batches_every_op(op, params, device, vmap_fallback_disabled):
    """Each op's batching rule gives what a loop over the samples gives. The
    first tensor is batched along its dim 1, the others along dim 0, and the
    last tensor of a multi-tensor op not at all."""
    batch = 3
    args = sample_args(op, params, device)
    tensors = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
    in_dims = [None] * len(args)
    batched = list(args)
    for i in tensors[:-1] if len(tensors) > 1 else tensors:
        in_dims[i] = 1 if i == tensors[0] else 0
        batched[i] = torch.stack([torch.randn_like(args[i]) for _ in range(batch)], dim=in_dims[i])
    samples = [[a.select(d, k) if d is not None else a for a, d in zip(batched, in_dims)] for k in range(batch)]
    out = torch.vmap(op.overload, in_dims=tuple(in_dims))(*batched)
    expected = [op.overload(*sample) for sample in samples]
    if op.num_outputs > 1:
        for o, e in zip(out, zip(*expected)):
            assert torch.equal(o, torch.stack(e))
    else:
        assert torch.equal(out, torch.stack(expected))


def test_vmap_packed_checks_each_sample(device, vmap_fallback_disabled):
    """A batch of 0-dim samples must not pass as one packed last dim."""
    with pytest.raises(ValueError, match=r"swiglu: packed x must have an even last dim \(gate‖up\), got shape \[\]"):
        torch.vmap(fused_acts.swiglu)(torch.randn(4, device=device))
    with pytest.raises(
        ValueError, match=r"geglu_backward: packed x must have an even last dim \(gate‖up\), got shape \[5, 3\]"
    ):
        torch.vmap(torch.ops.fused_acts.geglu_packed_backward, in_dims=(None, 1))(
            torch.randn(5, 1, device=device), torch.randn(5, 2, 3, device=device)
        )
    assert torch.vmap(fused_acts.swiglu)(torch.randn(0, 4, device=device)).shape == (0, 2)


def test_functorch_autograd_transforms_are_a_clear_error():
    """Autograd is a C++ torch::autograd::Function, which torch.func.grad and
    the other functorch autograd transforms refuse; torch.autograd works."""
    with pytest.raises(RuntimeError, match="cannot use C\\+\\+ torch::autograd::Function with functorch transforms"):
        torch.func.grad(lambda x: fused_acts.silu(x).sum())(torch.randn(4))


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


# xIELU's coefficients, for its form in every_form: constants of the traced function.
XIELU_COEFFICIENTS = (torch.tensor([0.8]), torch.tensor([1.3]))


def every_form():
    """(id, fn) for each unary activation, xIELU, and each gated one separate and in each packing."""
    for name, case in UNARY.items():
        yield pytest.param(case.fused, id=name)
    yield pytest.param(lambda x: fused_acts.xielu(x, *(c.to(x.device) for c in XIELU_COEFFICIENTS)), id="xielu")
    for name, case in GATED.items():
        yield pytest.param(lambda x, f=case.fused: f(*x.chunk(2, dim=-1)), id=name)
        for packing, layout in PACKINGS.items():
            yield pytest.param(lambda x, f=case.fused, layout=layout: f(x, **layout), id=f"{name}_{packing}")


@pytest.mark.parametrize("fn", every_form())
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph(fn, backend, device):
    torch._dynamo.reset()
    x = torch.randn(8, 64, device=device, requires_grad=True)
    compiled = torch.compile(lambda x: fn(x).sum(), fullgraph=True, backend=backend)
    expected = fn(x).sum()
    (expected_grad,) = torch.autograd.grad(expected, x)
    out = compiled(x)
    (grad,) = torch.autograd.grad(out, x)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(grad, expected_grad)


class Wrap(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize("fn", every_form())
def test_export(fn, device):
    """torch.export captures the op as one node, and the exported program runs it."""
    x = torch.randn(8, 64, device=device)
    exported = torch.export.export(Wrap(fn), (x,))
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert any(t.startswith("fused_acts.") for t in targets), targets
    torch.testing.assert_close(exported.module()(x), fn(x), rtol=0, atol=0)


class EveryForm(torch.nn.Module):
    def forward(self, x):
        return torch.cat([param.values[0](x).flatten() for param in every_form()])


@pytest.mark.slow
def test_aot_inductor(tmp_path):
    """An exported program with every op form compiles ahead of time
    (AOTInductor) and runs from its package, the ops called through the
    dispatcher, as they are registered in C++."""
    x = torch.randn(8, 64)
    exported = torch.export.export(EveryForm(), (x,))
    package = torch._inductor.aoti_compile_and_package(exported, package_path=str(tmp_path / "every_form.pt2"))
    torch.testing.assert_close(torch._inductor.aoti_load_package(package)(x), EveryForm()(x), rtol=0, atol=0)
