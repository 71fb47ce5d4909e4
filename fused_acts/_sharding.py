"""DTensor sharding rules for every op: each op is elementwise over the
shape its tensors share, so it runs on each shard as it is, where every
tensor takes the same placement.

- Replicate, or Shard(d) of any dim, for the unary and separate gated ops;
- any dim but the last for the packed ops, whose last dim holds gate‖up: a
  shard of it would hold gate only or up only, so DTensor redistributes;
- no Partial: an activation is not linear, so DTensor makes a Partial input
  Replicate first.
"""

import torch

from ._op_list import OPS


def _register(op, register_sharding, Replicate, Shard):
    def rule(*args, **kwargs):
        bound = op.bind(args, kwargs)
        ndim = bound[op.tensors[-1]].ndim
        dims = range(ndim - 1) if op.kind == "packed" else range(ndim)
        strategies = []
        for placement in [Replicate(), *(Shard(d) for d in dims)]:
            inputs = [placement if name in op.tensors else None for name in bound]
            strategies.append(([placement] * op.num_outputs, inputs))
        return strategies

    register_sharding(op.overload)(rule)


def _register_xielu(op, register_sharding, Partial, Replicate, Shard):
    """x (and grad) take any placement; the coefficients are replicated; the
    coefficients' gradients, sums over x's elements, are Partial sums where
    x is sharded."""

    def rule(*args, **kwargs):
        bound = op.bind(args, kwargs)
        strategies = []
        for placement in [Replicate(), *(Shard(d) for d in range(bound["x"].ndim))]:
            inputs = [
                placement if name in ("grad", "x") else Replicate() if name in op.tensors else None for name in bound
            ]
            summed = Replicate() if placement == Replicate() else Partial()
            outputs = [placement, summed, summed] if op.backward else [placement]
            strategies.append((outputs, inputs))
        return strategies

    register_sharding(op.overload)(rule)


if torch.distributed.is_available():
    from torch.distributed.tensor import Partial, Replicate, Shard
    from torch.distributed.tensor.experimental import register_sharding

    for _op in OPS.values():
        if _op.kind == "xielu":
            _register_xielu(_op, register_sharding, Partial, Replicate, Shard)
            continue
        # The in-place op: recompute calls it on plain tensors only. The
        # quantized: a per-tensor or per-row scale spans shards. The
        # monitored: their statistics are a plain tensor's.
        if not _op.inplace and not _op.quantized and not _op.monitored:
            _register(_op, register_sharding, Replicate, Shard)
