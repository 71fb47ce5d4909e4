"""Batching rules: every op is elementwise over the shape its tensors share
(a packed last dim aside), so the batched op is the op itself on tensors
whose batch dim comes first. Without a rule, vmap falls back to one call per
sample."""

import torch

from ._checks import check_packed
from ._op_list import OPS


def _register(op):
    num_outputs = op.num_outputs
    out_dims = 0 if num_outputs == 1 else (0,) * num_outputs

    def batched(info, in_dims, *args, **kwargs):
        if op.kind == "packed":
            # x, the last tensor, is checked per sample: a batch of 0-dim
            # samples would otherwise pass as one packed last dim.
            x, x_dim = [(a, d) for a, d in zip(args, in_dims) if isinstance(a, torch.Tensor)][-1]
            if x_dim is not None:
                x = torch.empty(x.shape[:x_dim] + x.shape[x_dim + 1 :], dtype=x.dtype, device="meta")
            bound = op.bind(args, kwargs)
            check_packed(op.check_name, x, bound["interleaved"], bound["up_first"])
        args = [
            a.movedim(d, 0)
            if d is not None
            else a.expand(info.batch_size, *a.shape)
            if isinstance(a, torch.Tensor)
            else a
            for a, d in zip(args, in_dims)
        ]
        return op.overload(*args, **kwargs), out_dims

    torch.library.register_vmap(f"fused_acts::{op.name}", batched)


def _register_xielu(op):
    """x batched alone: the op on x as it is (its coefficients shared).
    Otherwise (per-sample coefficients, or the backward, whose coefficient
    gradients are per sample): one call per sample."""

    def batched(info, in_dims, *args, **kwargs):
        names = [a.name for a in op.schema.arguments][: len(args)]
        dims = dict(zip(names, in_dims))
        if not op.backward and dims["alpha_p"] is None and dims["alpha_n"] is None:
            x = args[0].movedim(dims["x"], 0)
            return op.overload(x, *args[1:], **kwargs), 0
        samples = []
        for i in range(info.batch_size):
            sample = [a.select(d, i) if d is not None else a for a, d in zip(args, in_dims)]
            samples.append(op.overload(*sample, **kwargs))
        if op.num_outputs == 1:
            return torch.stack(samples), 0
        return tuple(torch.stack(parts) for parts in zip(*samples)), (0,) * op.num_outputs

    torch.library.register_vmap(f"fused_acts::{op.name}", batched)


for _op in OPS.values():
    # The in-place op: only recompute's backward calls it, on its own tensor.
    # The quantized: a per-tensor scale spans the batch, so vmap's per-sample
    # fallback is what a batched call means.
    # The monitored: their statistics span the batch.
    if _op.kind == "xielu":
        _register_xielu(_op)
    elif not _op.inplace and not _op.quantized and not _op.monitored:
        _register(_op)
