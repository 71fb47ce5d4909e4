"""The Python side of every custom op: fake (meta) kernels, autograd, and the
public functional API. Schemas and kernels are in csrc/.

Each forward saves only its inputs; its backward is a fused op that
recomputes the activation from them in one pass.
"""

import torch

from . import _extension  # noqa: F401  (registers the ops)
from . import second_derivatives

__all__ = ["gelu", "silu", "mish", "swiglu", "geglu"]

_ops = torch.ops.fused_acts
_FLOATING = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
_APPROXIMATE = ("none", "tanh")


# The checks below repeat csrc/checks.h, message for message, so that fake
# tensors (torch.compile, meta) fail exactly as real ones do.
def _dtype_name(t):
    return str(t.dtype).removeprefix("torch.")


def _check_floating(op, arg, t):
    if t.dtype not in _FLOATING:
        raise TypeError(f"{op}: {arg} must be float32, float64, bfloat16 or float16, got {_dtype_name(t)}")


def _check_same(op, a_name, a, b_name, b):
    _check_floating(op, a_name, a)
    _check_floating(op, b_name, b)
    if a.shape != b.shape:
        raise ValueError(f"{op}: {a_name} and {b_name} must have the same shape, got {list(a.shape)} and {list(b.shape)}")
    if a.dtype != b.dtype:
        raise TypeError(f"{op}: {a_name} and {b_name} must have the same dtype, got {_dtype_name(a)} and {_dtype_name(b)}")
    if a.device != b.device:
        raise RuntimeError(f"{op}: {a_name} and {b_name} must be on the same device, got {a.device} and {b.device}")


def _check_packed(op, x):
    _check_floating(op, "x", x)
    if x.dim() < 1 or x.shape[-1] % 2 != 0:
        raise ValueError(f"{op}: packed x must have an even last dim (gate‖up), got shape {list(x.shape)}")


def _check_approximate(op, approximate):
    if approximate not in _APPROXIMATE:
        raise ValueError(f"{op}: approximate must be 'none' or 'tanh', got '{approximate}'")


def _packed_halves(x):
    return x.chunk(2, dim=-1)


def _empty(like, shape=None):
    return like.new_empty(like.shape if shape is None else shape)


# Fake kernels: output metadata only. Outputs are always contiguous.
@torch.library.register_fake("fused_acts::gelu")
def _(x, approximate="none"):
    _check_approximate("gelu", approximate)
    _check_floating("gelu", "x", x)
    return _empty(x)


@torch.library.register_fake("fused_acts::gelu_backward")
def _(grad, x, approximate="none"):
    _check_approximate("gelu_backward", approximate)
    _check_same("gelu_backward", "grad", grad, "x", x)
    return _empty(x)


def _register_unary_fakes(name):
    @torch.library.register_fake(f"fused_acts::{name}")
    def _(x):
        _check_floating(name, "x", x)
        return _empty(x)

    @torch.library.register_fake(f"fused_acts::{name}_backward")
    def _(grad, x):
        _check_same(f"{name}_backward", "grad", grad, "x", x)
        return _empty(x)


def _register_gated_fakes(name, *extra):
    """extra: the op's trailing arguments after its tensors (geglu's approximate)."""

    def check_extra(op, args):
        if args:
            _check_approximate(op, *args)

    @torch.library.register_fake(f"fused_acts::{name}")
    def _(gate, up, *args):
        check_extra(name, args)
        _check_same(name, "gate", gate, "up", up)
        return _empty(gate)

    @torch.library.register_fake(f"fused_acts::{name}_backward")
    def _(grad, gate, up, *args):
        op = f"{name}_backward"
        check_extra(op, args)
        _check_same(op, "gate", gate, "up", up)
        _check_same(op, "grad", grad, "gate", gate)
        return _empty(gate), _empty(up)

    @torch.library.register_fake(f"fused_acts::{name}_packed")
    def _(x, *args):
        check_extra(name, args)
        _check_packed(name, x)
        return _empty(x, (*x.shape[:-1], x.shape[-1] // 2))

    @torch.library.register_fake(f"fused_acts::{name}_packed_backward")
    def _(grad, x, *args):
        op = f"{name}_backward"
        check_extra(op, args)
        _check_packed(op, x)
        _check_same(op, "grad", grad, "gate", _packed_halves(x)[0])
        return _empty(x)


_register_unary_fakes("silu")
_register_unary_fakes("mish")
_register_gated_fakes("swiglu")
_register_gated_fakes("geglu")


# Autograd: save the inputs, recompute in the fused backward.
def _save_inputs(ctx, inputs, output):
    ctx.save_for_backward(*(t for t in inputs if isinstance(t, torch.Tensor)))
    ctx.extra = tuple(a for a in inputs if not isinstance(a, torch.Tensor))


def _register_autograd(name, backward_op, num_tensors):
    """backward_op(grad, *saved_tensors, *extra) returns the tensors' grads;
    non-tensor arguments (approximate) get None."""

    def backward(ctx, grad):
        grads = backward_op(grad, *ctx.saved_tensors, *ctx.extra)
        if num_tensors == 1:
            grads = (grads,)
        return (*grads, *(None for _ in ctx.extra))

    torch.library.register_autograd(f"fused_acts::{name}", backward, setup_context=_save_inputs)


_register_autograd("gelu", _ops.gelu_backward, 1)
_register_autograd("silu", _ops.silu_backward, 1)
_register_autograd("mish", _ops.mish_backward, 1)
_register_autograd("swiglu", _ops.swiglu_backward, 2)
_register_autograd("swiglu_packed", _ops.swiglu_packed_backward, 1)
_register_autograd("geglu", _ops.geglu_backward, 2)
_register_autograd("geglu_packed", _ops.geglu_packed_backward, 1)


# Double backward: the derivative of each backward op. Its first-derivative
# terms run the fused kernels, f'' is eager (second_derivatives.py). 16-bit
# inputs compute in float and round once, as the kernels do.
def _opmath(*tensors):
    return [t.float() if t.dtype in (torch.bfloat16, torch.float16) else t for t in tensors]


def _register_unary_double_backward(act):
    first = getattr(_ops, f"{act}_backward")
    second = getattr(second_derivatives, act)

    def backward(ctx, grad_of_dx):
        grad, x = ctx.saved_tensors
        dtype = x.dtype
        grad_of_dx, grad, x = _opmath(grad_of_dx, grad, x)
        d_grad = first(grad_of_dx, x, *ctx.extra)
        d_x = grad_of_dx * grad * second(x, *ctx.extra)
        return d_grad.to(dtype), d_x.to(dtype), *(None for _ in ctx.extra)

    torch.library.register_autograd(f"fused_acts::{act}_backward", backward, setup_context=_save_inputs)


def _register_gated_double_backward(name, act):
    """name's backward gives (grad·up·act'(gate), grad·act(gate)); packed, the two side by side."""
    first = getattr(_ops, f"{act}_backward")
    second = getattr(second_derivatives, act)
    gated = getattr(_ops, name)

    def derivatives(extra, grad, gate, up, grad_of_dgate, grad_of_dup):
        d_grad = first(grad_of_dgate * up, gate, *extra) + gated(gate, grad_of_dup, *extra)
        d_gate = first(grad_of_dup * grad, gate, *extra) + grad_of_dgate * grad * up * second(gate, *extra)
        d_up = first(grad_of_dgate * grad, gate, *extra)
        return d_grad, d_gate, d_up

    def backward(ctx, grad_of_dgate, grad_of_dup):
        grad, gate, up = ctx.saved_tensors
        dtype = gate.dtype
        grads = derivatives(ctx.extra, *_opmath(grad, gate, up, grad_of_dgate, grad_of_dup))
        return *(g.to(dtype) for g in grads), *(None for _ in ctx.extra)

    def packed_backward(ctx, grad_of_dx):
        grad, x = ctx.saved_tensors
        dtype = x.dtype
        grad, x, grad_of_dx = _opmath(grad, x, grad_of_dx)
        d_grad, d_gate, d_up = derivatives(ctx.extra, grad, *_packed_halves(x), *_packed_halves(grad_of_dx))
        return d_grad.to(dtype), torch.cat([d_gate, d_up], dim=-1).to(dtype), *(None for _ in ctx.extra)

    torch.library.register_autograd(f"fused_acts::{name}_backward", backward, setup_context=_save_inputs)
    torch.library.register_autograd(f"fused_acts::{name}_packed_backward", packed_backward, setup_context=_save_inputs)


for _act in ("gelu", "silu", "mish"):
    _register_unary_double_backward(_act)
_register_gated_double_backward("swiglu", "silu")
_register_gated_double_backward("geglu", "gelu")


# vmap: every op is elementwise over the shape its tensors share (a packed
# last dim aside), so the batched op is the op itself on tensors whose batch
# dim comes first. Without a rule, vmap falls back to one call per sample.
def _register_vmap(name):
    op = getattr(_ops, name)
    num_outputs = len(op.default._schema.returns)
    packed = "_packed" in name
    check_name = name.replace("_packed", "")

    def batched(info, in_dims, *args):
        if packed:
            # x, the last tensor, is checked per sample: a batch of 0-dim
            # samples would otherwise pass as one packed last dim.
            x, x_dim = [(a, d) for a, d in zip(args, in_dims) if isinstance(a, torch.Tensor)][-1]
            if x_dim is not None:
                x = torch.empty(x.shape[:x_dim] + x.shape[x_dim + 1:], dtype=x.dtype, device="meta")
            _check_packed(check_name, x)
        args = [a.movedim(d, 0) if d is not None
                else a.expand(info.batch_size, *a.shape) if isinstance(a, torch.Tensor) else a
                for a, d in zip(args, in_dims)]
        return op(*args), (0 if num_outputs == 1 else (0,) * num_outputs)

    torch.library.register_vmap(f"fused_acts::{name}", batched)


for _base in ("gelu", "silu", "mish", "swiglu", "swiglu_packed", "geglu", "geglu_packed"):
    _register_vmap(_base)
    _register_vmap(f"{_base}_backward")


def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """Same as ``torch.nn.functional.gelu``: "none" is the erf form, "tanh" the tanh approximation."""
    return _ops.gelu(x, approximate)


def silu(x: torch.Tensor) -> torch.Tensor:
    """Same as ``torch.nn.functional.silu``."""
    return _ops.silu(x)


def mish(x: torch.Tensor) -> torch.Tensor:
    """Same as ``torch.nn.functional.mish``."""
    return _ops.mish(x)


def swiglu(gate: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """``silu(gate) * up``. With one tensor, its last dim is a packed gate‖up
    (the output of a fused projection): neither half is copied, forward or
    backward, and the gradient comes back as one packed tensor."""
    if up is None:
        return _ops.swiglu_packed(gate)
    return _ops.swiglu(gate, up)


def geglu(gate: torch.Tensor, up: torch.Tensor | None = None, approximate: str = "none") -> torch.Tensor:
    """``gelu(gate, approximate) * up``, separate or packed as for :func:`swiglu`."""
    if up is None:
        return _ops.geglu_packed(gate, approximate)
    return _ops.geglu(gate, up, approximate)
