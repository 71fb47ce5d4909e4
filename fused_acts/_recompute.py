"""down_proj(act(gate) * up) that keeps no copy of h = act(gate) * up for
backward: autograd saves gate and up (or gate‖up), which the gated op needs
anyway, and the backward recomputes h from them by the fused forward, one
more elementwise pass, before down_proj's weight gradient needs it.

Where this module made gate‖up itself (packed_gated_down), the backward also
writes gate‖up's gradient over gate‖up, saving an allocation of its size.
That is safe because nothing else can read the buffer again:
- it is made here by F.linear from a plain nn.Linear without hooks, and
  handed only to _GatedDown, whose saved copy is its one reference (linear's
  own backward keeps its input and weight, not its output);
- not where saved-tensor hooks are active (activation checkpointing or
  offloading: what backward unpacks is theirs), nor under torch.compile;
- not where backward keeps the graph (retain_graph=True: it may run again
  and read gate‖up) or records one (create_graph=True: the gradient's own
  graph needs gate‖up).
And the write bumps gate‖up's version, so any read missed above fails
loudly instead of reading a gradient."""

import torch
import torch.nn.functional as F
from torch import nn

from ._op_call import gated

_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_OPS = torch.ops.fused_acts


def _gated_backward(op, grad, gate, up):
    """The gradients of gated(op, gate, up): (grad_gate, grad_up), or the packed one."""
    if up is None:
        return (getattr(_OPS, f"{op.family}_packed_backward")(grad, gate, *op.params, op.interleaved, op.up_first),)
    return getattr(_OPS, f"{op.family}_backward")(grad, gate, up, *op.params)


def _gated_backward_over(op, grad, gate_up):
    """_gated_backward(op, grad, gate_up, None), written over gate_up, which it returns."""
    getattr(_OPS, f"{op.family}_packed_backward_")(grad, gate_up, *op.params, op.interleaved, op.up_first)
    return gate_up


class _GatedDown(torch.autograd.Function):
    @staticmethod
    def forward(op, gate, up, weight, bias, owns_gate_up):
        return F.linear(gated(op, gate, up), weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        op, gate, up, weight, bias, owns_gate_up = inputs
        ctx.op, ctx.has_bias = op, bias is not None
        ctx.overwrite_gate_up = owns_gate_up and _saved_as_is()
        ctx.save_for_backward(gate, up, weight)

    @staticmethod
    def backward(ctx, grad_out):
        gate, up, weight = ctx.saved_tensors
        h = gated(ctx.op, gate, up)
        grad_out_2d = grad_out.reshape(-1, grad_out.shape[-1])
        grad_weight = grad_out_2d.mT @ h.reshape(-1, h.shape[-1])
        grad_bias = grad_out_2d.sum(0) if ctx.has_bias else None
        del h
        grad_h = grad_out @ weight
        if ctx.overwrite_gate_up and not (torch.is_grad_enabled() or _graph_kept()):
            return None, _gated_backward_over(ctx.op, grad_h, gate), None, grad_weight, grad_bias, None
        grads = _gated_backward(ctx.op, grad_h, gate, up)
        grad_gate, grad_up = grads if up is not None else (grads[0], None)
        return None, grad_gate, grad_up, grad_weight, grad_bias, None


def _saved_as_is():
    """Whether save_for_backward keeps the tensor itself: no saved-tensor
    hooks (checkpointing, offloading) and no compiler tracing."""
    # is_compiling first: the compiler cannot trace the other.
    return not torch.compiler.is_compiling() and torch._C._autograd._top_saved_tensors_default_hooks(False) is None


def _graph_kept():
    """Whether this backward keeps the graph for another (retain_graph=True)."""
    return torch._C._autograd._get_current_graph_task_keep_graph()


def has_hooks(module):
    return any(getattr(module, hooks, None) for hooks in _HOOKS)


def can_recompute(linear):
    """Whether a projection can run inside the recomputing function: a plain
    nn.Linear with plain parameters (not DTensors: under tensor parallelism
    its own forward does the communication) and no hooks to skip."""
    return type(linear) is nn.Linear and type(linear.weight) is nn.Parameter and not has_hooks(linear)


def gated_down(op, down_proj, gate, up=None, recompute=False):
    """down_proj(act(gate) * up), the activation fused as the GatedOp op; with
    recompute, where down_proj allows it, h is recomputed in backward instead
    of saved."""
    if recompute and torch.is_grad_enabled() and can_recompute(down_proj):
        return _GatedDown.apply(op, gate, up, down_proj.weight, down_proj.bias, False)
    return down_proj(gated(op, gate, up))


def packed_gated_down(op, gate_up_proj, down_proj, x, recompute=False):
    """down_proj(act(gate) * up) with gate and up packed in gate_up_proj(x).
    With recompute, where both projections allow it, gate‖up is this
    function's own, and its gradient is written over it."""
    if recompute and torch.is_grad_enabled() and can_recompute(down_proj) and can_recompute(gate_up_proj):
        gate_up = F.linear(x, gate_up_proj.weight, gate_up_proj.bias)
        return _GatedDown.apply(op, gate_up, None, down_proj.weight, down_proj.bias, True)
    return gated_down(op, down_proj, gate_up_proj(x), None, recompute)
