"""What a site that _recognize.py rewrote runs: the fused op where its
inputs are ones the op computes exactly as eager does (one floating dtype,
one shape, a device with kernels), and otherwise eager's own computation,
as the original code wrote it, so that a broadcast, a dtype promotion or an
odd packed size keeps eager's result (or eager's error). The one promotion
taken fused is up's exact widening to the activation's dtype, which eager's
product does first anyway.

A packed x is split as the code did, described by `halves`:
- ("chunk", dim): x.chunk(2, dim);
- ("split", size, dim): x.split(size, dim), the first two parts;
- ("slice", n): x[..., :n] and x[..., n:];
- ("step",): x[..., ::2] and x[..., 1::2], interleaved;
- ("glu", dim): F.glu(x, dim), value first.
"""

import torch
import torch.nn.functional as F

from . import _op_call
from ._activations import ACTIVATIONS
from ._checks import FLOATING
from ._op_call import gated
from ._recompute import can_recompute, gated_down, packed_gated_down

_FLOATING = frozenset(FLOATING)


def runs_fused(t):
    """Whether the kernels take t: a floating tensor on a device they run on."""
    return isinstance(t, torch.Tensor) and t.dtype in _FLOATING and (t.is_cpu or t.is_cuda)


def _fused_up(gate, up):
    """up as a gated op takes it beside gate without changing eager's result,
    else None: up itself where the two match (no broadcast, no dtype
    promotion), or up widened to gate's dtype where eager's act(gate) * up
    widens it exactly (a bfloat16 h times a float32 silu(gate): gated RMSNorm)."""
    if not (runs_fused(gate) and isinstance(up, torch.Tensor)) or gate.shape != up.shape or gate.device != up.device:
        return None
    if up.dtype == gate.dtype:
        return up
    if up.dtype in _FLOATING and torch.promote_types(gate.dtype, up.dtype) == gate.dtype:
        return up.to(gate.dtype)
    return None


def _eager_act(act, eager_module):
    if eager_module is not None:
        return eager_module
    activation = ACTIVATIONS[act.name]
    return lambda x: activation.eager(x, *act.params)


def _eager_product(act, gate, up, eager_module):
    """act(gate) * up as eager computes it (GPT-OSS's up clamped and offset first)."""
    map_up = ACTIVATIONS[act.name].up
    return _eager_act(act, eager_module)(gate) * (up if map_up is None else map_up(up, *act.params))


def _is_last_dim(ndim, dim):
    return -ndim <= dim < ndim and dim % ndim == ndim - 1


def _halves_fit(shape, halves):
    """Whether a packed tensor of this shape splits, as halves says, into two
    same-shaped halves of its last dim, which the packed op reads."""
    if len(shape) == 0:
        return False
    how, ndim, size = halves[0], len(shape), shape[-1]
    if how in ("chunk", "glu"):
        return _is_last_dim(ndim, halves[1]) and size % 2 == 0
    if how == "split":
        parts = halves[1]
        part = parts if isinstance(parts, int) else (parts[0] if len(parts) == 2 and parts[0] == parts[1] else -1)
        return _is_last_dim(ndim, halves[2]) and part >= 0 and size == 2 * part
    if how == "slice":
        return isinstance(halves[1], int) and size == 2 * halves[1]
    return size % 2 == 0  # step


def _packed_fusable(x, halves):
    return runs_fused(x) and _halves_fit(x.shape, halves)


def _eager_halves(x, halves):
    """x's two halves, split as the original code split it."""
    how = halves[0]
    if how == "chunk":
        parts = x.chunk(2, dim=halves[1])
    elif how == "split":
        parts = x.split(halves[1], dim=halves[2])
    elif how == "slice":
        parts = x[..., : halves[1]], x[..., halves[1] :]
    else:
        parts = x[..., ::2], x[..., 1::2]
    return parts[0], parts[1]


def _eager_packed(act, x, halves, up_first, eager_module):
    if halves[0] == "glu":
        return eager_module(x) if eager_module is not None else F.glu(x, halves[1])
    first, second = _eager_halves(x, halves)
    gate, up = (second, first) if up_first else (first, second)
    return _eager_product(act, gate, up, eager_module)


def unary(act, x):
    """act(x), as the fused unary op where x allows it."""
    if runs_fused(x):
        return _op_call.call(ACTIVATIONS[act.name].unary, (x, *act.params))
    return _eager_act(act, None)(x)


# The sites below take the GatedOp that computes act(gate) * up (for a
# packed x, in x's layout), worked out once by the rewrite.


def gated_product(op, act, gate, up, eager_module=None):
    """act(gate) * up, as one fused op where gate and up allow it."""
    fused_up = _fused_up(gate, up)
    if fused_up is not None:
        return gated(op, gate, fused_up)
    return _eager_product(act, gate, up, eager_module)


def packed_product(op, act, x, halves, eager_module=None):
    """act(gate) * up from the halves of x, as one fused packed op read in place."""
    if _packed_fusable(x, halves):
        return gated(op, x)
    return _eager_packed(act, x, halves, op.up_first, eager_module)


def down_of_gated(op, act, down_proj, gate, up, recompute, eager_module=None):
    """down_proj(act(gate) * up), recomputing h in backward where recompute allows."""
    fused_up = _fused_up(gate, up)
    if fused_up is not None:
        return gated_down(op, down_proj, gate, fused_up, recompute)
    return down_proj(_eager_product(act, gate, up, eager_module))


def down_of_packed(op, act, down_proj, x, halves, recompute, eager_module=None):
    """down_proj(act(gate) * up) with gate and up the halves of x."""
    if _packed_fusable(x, halves):
        return gated_down(op, down_proj, x, None, recompute)
    return down_proj(_eager_packed(act, x, halves, op.up_first, eager_module))


def down_of_projected(op, act, gate_up_proj, down_proj, x, halves, recompute, eager_module=None):
    """down_proj(act(gate) * up) with gate and up the halves of gate_up_proj(x);
    with recompute, where the projections allow it, gate‖up is the fused
    function's own (_recompute.packed_gated_down)."""
    if recompute and torch.is_grad_enabled() and can_recompute(gate_up_proj) and runs_fused(x):
        weight = gate_up_proj.weight
        same_kind = x.dtype == weight.dtype and x.device == weight.device
        if same_kind and _halves_fit((*x.shape[:-1], weight.shape[0]), halves):
            return packed_gated_down(op, gate_up_proj, down_proj, x, recompute)
    gate_up = gate_up_proj(x)
    if _packed_fusable(gate_up, halves):
        return gated_down(op, down_proj, gate_up, None, recompute)
    return down_proj(_eager_packed(act, gate_up, halves, op.up_first, eager_module))
