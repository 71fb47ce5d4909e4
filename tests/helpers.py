"""Inputs, comparisons and subprocesses shared by the test modules."""

import os
from pathlib import Path

import torch

import fused_acts

SHAPES = [(), (0,), (3, 0, 5), (1,), (7,), (33, 65), (2, 3, 1029)]
LAYOUTS = ["transposed", "row_strided", "step", "expanded"]
SPECIAL_VALUES = [0.0, -0.0, 1e-40, -1e-40, 1e-30, 3.0, -3.0, 30.0, -30.0, 100.0, -100.0,
                  1e30, -1e30, float("inf"), float("-inf"), float("nan")]  # fmt: skip


def make_input(shape, layout, device, dtype, scale=3.0):
    """A tensor of `shape` in one of several memory layouts."""
    if layout == "contiguous":
        return (torch.randn(shape, device=device, dtype=torch.float64) * scale).to(dtype)
    if layout == "transposed":  # no row stride: the op makes a contiguous copy
        return make_input(shape[::-1], "contiguous", device, dtype, scale).mT
    if layout == "row_strided":  # a column slice: read in place, row by row
        wide = make_input((*shape[:-1], shape[-1] + 9), "contiguous", device, dtype, scale)
        return wide[..., 3 : 3 + shape[-1]]
    if layout == "step":  # every other element
        return make_input((*shape[:-1], 2 * shape[-1]), "contiguous", device, dtype, scale)[..., ::2]
    if layout == "expanded":  # stride 0 rows
        return make_input((1, shape[-1]), "contiguous", device, dtype, scale).expand(shape)
    raise ValueError(layout)


def assert_close_scaled(actual, expected):
    """assert_close within 2 ulps, atol scaled to the values' size: near the
    zeros of a derivative, both sides carry rounding error of its terms' size."""
    for a, e in zip(actual, expected):
        scale = max(1.0, e.abs().max().item()) if e.numel() else 1.0
        rtol, atol = {
            torch.float64: (1e-7, 1e-7),
            torch.float32: (1.3e-6, 1e-5),
            torch.bfloat16: (1.6e-2, 1e-3),
            torch.float16: (2e-3, 1e-3),
        }[e.dtype]
        torch.testing.assert_close(a, e, atol=atol * scale, rtol=rtol)


def grad_of(fn, *inputs, grad_out=None):
    """fn's output, the gradients of its inputs, and the grad_out used (random if None)."""
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*inputs)
    grad_out = torch.randn_like(out) if grad_out is None else grad_out
    grads = torch.autograd.grad(out, inputs, grad_out)
    return out, grads, grad_out


def same_bits(a, b):
    """Equal bit for bit, except that any nan matches any nan."""
    as_int = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    nan = a.isnan()
    return torch.equal(nan, b.isnan()) and torch.equal(a.view(as_int)[~nan], b.view(as_int)[~nan])


def subprocess_env(**variables):
    """The environment for a subprocess that imports the package this process imported."""
    package_root = str(Path(fused_acts.__file__).parent.parent)
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **variables}
