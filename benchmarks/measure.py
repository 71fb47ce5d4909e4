"""The per-op cells: check every candidate against eager, then time them,
interleaved, in each mode."""

import math
from dataclasses import dataclass, field

import torch

from . import cases
from .timing import interleaved_medians


@dataclass
class Row:
    """One candidate in one cell: what results.json holds, a row per entry."""

    kind: str
    device: str
    dtype: str
    op: str
    workload: str  # what was timed: fwd or fwdbwd (ops, FFN blocks, calls); train, prefill or decode (models)
    shape: list
    numel: int
    candidate: str
    median_ms: float = math.nan
    page_faults: float = math.nan
    gbps: float = math.nan
    pct_of_copy: float = math.nan
    speedup_vs_eager: float = math.nan
    speedup_vs_compile: float = math.nan
    saved_mb: float = math.nan
    peak_mb: float = math.nan
    out_format: str = ""  # a quantized row's output format: fp8, int8, mxfp8, ...
    error: str = ""
    extra: dict = field(default_factory=dict)


def tolerances(dtype):
    return {
        torch.float32: (1e-4, 1e-4),
        torch.float64: (1e-7, 1e-7),
        torch.bfloat16: (3e-2, 3e-2),
        torch.float16: (4e-3, 4e-3),
    }[dtype]


def check_against_eager(fn, eager, inputs, dtype):
    """None if fn's output and gradients match eager's, else what differs."""
    rtol, atol = tolerances(dtype)
    results = []
    for f in (fn, eager):
        leaves = [t.detach().clone().requires_grad_() for t in inputs]
        out = f(*leaves)
        grads = torch.autograd.grad(out, leaves, torch.ones_like(out))
        results.append((out.detach(), grads))
    (out, grads), (ref, ref_grads) = results
    try:
        for a, b in zip((out, *grads), (ref, *ref_grads)):
            scale = max(1.0, b.abs().max().item())
            torch.testing.assert_close(a.float(), b.float(), rtol=rtol, atol=atol * scale)
    except AssertionError as error:
        return str(error).splitlines()[0]
    return None


def mode_fn(fn, inputs, mode):
    """A no-argument callable that runs fn in the given mode."""
    if mode == "fwd":
        return lambda: fn(*inputs)
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    if mode == "bwd":
        out = fn(*leaves)
        grad_out = torch.ones_like(out)
        return lambda: torch.autograd.grad(out, leaves, grad_out, retain_graph=True)
    grad_out = torch.ones_like(fn(*leaves))
    return lambda: torch.autograd.grad(fn(*leaves), leaves, grad_out)


def bench_op(op, rows, cols, dtype, device, modes, timer, copy_bps, args):
    """Rows for one op at one shape and dtype: a row per candidate and mode."""
    inputs = cases.make_inputs(op, rows, cols, dtype, device)
    cands = cases.candidates(op, device, not args.no_compile)
    eager = cands["eager"]
    numel = rows * cols
    out_rows = []
    wrong = {}
    for name, fn in cands.items():
        if name != "eager":
            problem = check_against_eager(fn, eager, inputs, dtype)
            if problem:
                wrong[name] = problem
    for mode in modes:
        fns = {name: mode_fn(fn, inputs, mode) for name, fn in cands.items() if name not in wrong}
        medians, faults = interleaved_medians(fns, timer, args.warmup, args.min_reps, args.max_reps, args.budget)
        nbytes = cases.min_bytes(op, numel, inputs[0].element_size(), mode)
        for name in cands:
            row = Row("op", device, str(dtype).removeprefix("torch."), op, mode, [rows, cols], numel, name)
            if name in wrong:
                row.error = f"wrong result, not timed: {wrong[name]}"
            else:
                t = medians[name]
                row.median_ms = t * 1e3
                row.page_faults = faults[name]
                row.gbps = nbytes / t / 1e9
                row.pct_of_copy = 100 * nbytes / t / copy_bps
                row.speedup_vs_eager = medians["eager"] / t
                if "compile" in medians:
                    row.speedup_vs_compile = medians["compile"] / t
            out_rows.append(row)
    return out_rows
