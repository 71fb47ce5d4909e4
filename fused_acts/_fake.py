"""Fake (meta) kernels for every op: the kernels' checks and their outputs'
metadata, for torch.compile, export and meta tensors. Outputs are always
contiguous, as the kernels allocate them."""

import torch

from ._checks import check_call, forward_sizes, scale_sizes
from ._op_list import OPS


def _empty_quantized(op, args):
    x = args[op.tensors[0]]
    sizes = forward_sizes(op, args)
    scale_dtype = torch.float8_e8m0fnu if args["scale_dtype"] == torch.float8_e8m0fnu else torch.float32
    return [x.new_empty(sizes, dtype=args["out_dtype"]), x.new_empty(scale_sizes(args, sizes), dtype=scale_dtype)]


def _empty_outputs(op, args):
    if op.quantized:
        return _empty_quantized(op, args)
    if op.kind == "unary":
        return [args["x"].new_empty(args["x"].shape)]
    if op.kind == "xielu":
        return [args[name].new_empty(args[name].shape) for name in ("x", "alpha_p", "alpha_n")][: op.num_outputs]
    if op.kind == "gated":
        return [args["gate"].new_empty(args["gate"].shape), args["up"].new_empty(args["up"].shape)][: op.num_outputs]
    x = args["x"]
    return [x.new_empty(x.shape if op.backward else (*x.shape[:-1], x.shape[-1] // 2))]


def _register(op):
    def fake(*args, **kwargs):
        bound = op.bind(args, kwargs)
        check_call(op, bound)
        if op.inplace:
            return None
        outputs = _empty_outputs(op, bound)
        return outputs[0] if op.num_outputs == 1 else tuple(outputs)

    torch.library.register_fake(f"fused_acts::{op.name}", fake)


for _op in OPS.values():
    _register(_op)
