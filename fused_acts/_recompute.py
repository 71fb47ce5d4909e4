"""down_proj(act(gate) * up) that keeps no copy of h = act(gate) * up for
backward: autograd saves gate and up (or gate‖up), which the gated op needs
anyway, and the backward recomputes h from them by the fused forward, one
more elementwise pass, before down_proj's weight gradient needs it."""

import torch
import torch.nn.functional as F
from torch import nn

_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_OPS = torch.ops.fused_acts


def _family(kind):
    """The gated op family that applies kind ('silu', 'gelu' or 'gelu_tanh')
    to the gate, and its params."""
    if kind == "silu":
        return "swiglu", ()
    return "geglu", ("tanh" if kind == "gelu_tanh" else "none",)


def gated(kind, gate, up=None):
    """act(gate) * up as one fused op (up=None: gate is packed gate‖up)."""
    family, params = _family(kind)
    if up is None:
        return getattr(_OPS, f"{family}_packed")(gate, *params)
    return getattr(_OPS, family)(gate, up, *params)


def _gated_backward(kind, grad, gate, up):
    """The gradients of gated(kind, gate, up): (grad_gate, grad_up), or the packed one."""
    family, params = _family(kind)
    if up is None:
        return (getattr(_OPS, f"{family}_packed_backward")(grad, gate, *params),)
    return getattr(_OPS, f"{family}_backward")(grad, gate, up, *params)


class _GatedDown(torch.autograd.Function):
    @staticmethod
    def forward(kind, gate, up, weight, bias):
        return F.linear(gated(kind, gate, up), weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        kind, gate, up, weight, bias = inputs
        ctx.kind, ctx.has_bias = kind, bias is not None
        ctx.save_for_backward(gate, up, weight)

    @staticmethod
    def backward(ctx, grad_out):
        gate, up, weight = ctx.saved_tensors
        h = gated(ctx.kind, gate, up)
        grad_out_2d = grad_out.reshape(-1, grad_out.shape[-1])
        grad_weight = grad_out_2d.mT @ h.reshape(-1, h.shape[-1])
        grad_bias = grad_out_2d.sum(0) if ctx.has_bias else None
        grads = _gated_backward(ctx.kind, grad_out @ weight, gate, up)
        grad_gate, grad_up = grads if up is not None else (grads[0], None)
        return None, grad_gate, grad_up, grad_weight, grad_bias


def has_hooks(module):
    return any(getattr(module, hooks, None) for hooks in _HOOKS)


def can_recompute(down_proj):
    """Whether down_proj can run inside the recomputing function: a plain
    nn.Linear with plain parameters (not DTensors: under tensor parallelism
    its own forward does the communication) and no hooks to skip."""
    return type(down_proj) is nn.Linear and type(down_proj.weight) is nn.Parameter and not has_hooks(down_proj)


def gated_down(kind, down_proj, gate, up=None, recompute=False):
    """down_proj(act(gate) * up), the activation fused; with recompute, where
    down_proj allows it, h is recomputed in backward instead of saved."""
    if recompute and torch.is_grad_enabled() and can_recompute(down_proj):
        return _GatedDown.apply(kind, gate, up, down_proj.weight, down_proj.bias)
    return down_proj(gated(kind, gate, up))
