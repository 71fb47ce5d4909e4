"""Tensor parallelism for layers whose output is a packed gate‖up.

Under a plain ``ColwiseParallel`` each rank holds a contiguous block of
``gate_up_proj``'s rows: with 2 ranks, all of gate on one and all of up on the
other, so a packed SwiGLU would pair the wrong halves. ``PackedColwiseParallel``
gives each rank the same slice of gate and of up instead (a strided shard of
the rows), so that its local output is a packed gate‖up of its own slice:

    from torch.distributed.tensor.parallel import parallelize_module
    parallelize_module(ffn, mesh, fused_acts.tensor_parallel.swiglu_ffn_plan())

The weights keep their layout: ``full_tensor()`` and the state dict give the
unsharded module's gate‖up rows.
"""

import torch.nn.functional as F
from torch import nn
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_module, distribute_tensor
from torch.distributed.tensor.parallel import ParallelStyle, RowwiseParallel
from torch.distributed.tensor.placement_types import _StridedShard

__all__ = ["PackedColwiseParallel", "swiglu_ffn_plan"]


class _PackedShardLinear(nn.Linear):
    """An nn.Linear whose weight (and bias) rows are this rank's gate and up slices."""

    def forward(self, x):
        # The input is replicated: its gradient is the sum of every rank's,
        # all-reduced in backward.
        mesh = self.weight.device_mesh
        if not isinstance(x, DTensor):
            x = DTensor.from_local(x, mesh, [Replicate()], run_check=False)
        x = x.redistribute(mesh, [Replicate()]).to_local(grad_placements=[Partial()])
        bias = None if self.bias is None else self.bias.to_local()
        return F.linear(x, self.weight.to_local(), bias)


class PackedColwiseParallel(ParallelStyle):
    """Shards an ``nn.Linear`` whose output rows are gate then up (a packed
    gate‖up projection) so that each rank holds the same slice of both, and
    returns each rank's packed gate‖up slice as a local tensor, ready for a
    packed op (``fused_acts.swiglu(h)``) and a ``RowwiseParallel`` after it."""

    def _apply(self, module: nn.Module, device_mesh) -> nn.Module:
        if not isinstance(module, nn.Linear):
            raise TypeError(f"PackedColwiseParallel: expects an nn.Linear, got {type(module).__name__}")
        if module.out_features % (2 * device_mesh.size()) != 0:
            raise ValueError(
                f"PackedColwiseParallel: out_features ({module.out_features}) must split into gate and up "
                f"and each into {device_mesh.size()} equal slices"
            )

        def partition(name, module, mesh):
            for param_name, param in list(module.named_parameters(recurse=False)):
                sharded = distribute_tensor(param, mesh, [_StridedShard(0, split_factor=2)])
                module.register_parameter(param_name, nn.Parameter(sharded, requires_grad=param.requires_grad))

        distribute_module(module, device_mesh, partition)
        module.__class__ = _PackedShardLinear
        return module


def swiglu_ffn_plan() -> dict:
    """The plan for ``fused_acts.nn.SwiGLUFFN``: gate_up_proj packed column-wise, down_proj row-wise."""
    return {"gate_up_proj": PackedColwiseParallel(), "down_proj": RowwiseParallel()}


def check_packed_weight(op, weight):
    """A plain row shard of a packed gate‖up weight (ColwiseParallel) would
    pair the wrong halves, silently: refuse it."""
    if isinstance(weight, DTensor) and any(type(p) is Shard and p.dim == 0 for p in weight.placements):
        raise ValueError(
            f"{op}: gate_up_proj is sharded by contiguous rows (ColwiseParallel), which splits gate from up; "
            "parallelize it with fused_acts.tensor_parallel.PackedColwiseParallel (swiglu_ffn_plan())"
        )
