"""Autograd for every op, to any order.

Each forward saves only its inputs; its backward is the fused backward op,
which recomputes the activation from them in one pass. Each backward op is
differentiable too (double backward: gradient penalties, Hessian-vector
products): its first-derivative terms run the fused kernels, and the second
derivative is an eager formula (second_derivatives.py). 16-bit inputs
compute in float there and round once, as the kernels do.
"""

import torch

from . import second_derivatives
from ._checks import packed_halves
from ._op_list import OPS, backward_of


def _save_inputs(ctx, inputs, output):
    # Every schema lists its tensors first, then its params.
    ctx.save_for_backward(*(t for t in inputs if isinstance(t, torch.Tensor)))
    ctx.params = tuple(a for a in inputs if not isinstance(a, torch.Tensor))


def _no_grads(ctx):
    return tuple(None for _ in ctx.params)


def _opmath(*tensors):
    return [t.float() if t.dtype in (torch.bfloat16, torch.float16) else t for t in tensors]


def _forward_backward(op):
    backward_op = backward_of(op).overload

    def backward(ctx, grad):
        grads = backward_op(grad, *ctx.saved_tensors, *ctx.params)
        return *(grads if isinstance(grads, tuple) else (grads,)), *_no_grads(ctx)

    return backward


def _unary_double_backward(op):
    """op(grad, x) = grad·f'(x)."""
    second = second_derivatives.BY_OP[op.family]

    def backward(ctx, grad_of_dx):
        grad, x = ctx.saved_tensors
        dtype = x.dtype
        grad_of_dx, grad, x = _opmath(grad_of_dx, grad, x)
        d_grad = op.overload(grad_of_dx, x, *ctx.params)
        d_x = grad_of_dx * grad * second(x, *ctx.params)
        return d_grad.to(dtype), d_x.to(dtype), *_no_grads(ctx)

    return backward


def _gated_derivatives(family, params, grad, gate, up, grad_of_dgate, grad_of_dup):
    """The derivatives of family's backward, (grad·up·f'(gate), grad·f(gate)),
    with respect to grad, gate and up, given the gradients of its outputs.
    backward(dy, gate, v)[0] = dy·v·f'(gate) gives every first-derivative term."""
    forward, backward = OPS[family].overload, OPS[f"{family}_backward"].overload
    second = second_derivatives.BY_OP[family]

    def first(dy, v):
        return backward(dy, gate, v, *params)[0]

    d_grad = first(grad_of_dgate, up) + forward(gate, grad_of_dup, *params)
    d_gate = first(grad_of_dup, grad) + grad_of_dgate * grad * up * second(gate, *params)
    d_up = first(grad_of_dgate, grad)
    return d_grad, d_gate, d_up


def _gated_double_backward(op):
    def backward(ctx, grad_of_dgate, grad_of_dup):
        grad, gate, up = ctx.saved_tensors
        dtype = gate.dtype
        grads = _gated_derivatives(op.family, ctx.params, *_opmath(grad, gate, up, grad_of_dgate, grad_of_dup))
        return *(g.to(dtype) for g in grads), *_no_grads(ctx)

    return backward


def _packed_double_backward(op):
    """The packed backward's output is (grad_gate‖grad_up), one tensor."""

    def backward(ctx, grad_of_dx):
        grad, x = ctx.saved_tensors
        dtype = x.dtype
        grad, x, grad_of_dx = _opmath(grad, x, grad_of_dx)
        d_grad, d_gate, d_up = _gated_derivatives(
            op.family, ctx.params, grad, *packed_halves(x), *packed_halves(grad_of_dx)
        )
        return d_grad.to(dtype), torch.cat([d_gate, d_up], dim=-1).to(dtype), *_no_grads(ctx)

    return backward


def _backward_formula(op):
    if not op.backward:
        return _forward_backward(op)
    return {"unary": _unary_double_backward, "gated": _gated_double_backward, "packed": _packed_double_backward}[
        op.kind
    ](op)


for _op in OPS.values():
    torch.library.register_autograd(f"fused_acts::{_op.name}", _backward_formula(_op), setup_context=_save_inputs)
