"""Per-call cost at decode sizes: the time of one call, fused and eager, in
the modes a model runs in: inference_mode (serving), no_grad (Hugging Face
generate) and forward+backward (training). At these sizes the host's work
per call is most of the time, and on a GPU it bounds small-batch decode."""

import torch

from . import cases
from .measure import Row, check_against_eager
from .timing import interleaved_medians

SIZES = [(1, 4096), (32, 14336)]
CALL_MODES = ["inference_mode", "no_grad", "fwdbwd"]
CALLS_PER_SAMPLE = 20


def repeated(fn, inputs, mode):
    """A callable that makes CALLS_PER_SAMPLE calls of fn in mode."""
    if mode == "fwdbwd":
        leaves = [t.detach().clone().requires_grad_() for t in inputs]
        grad_out = torch.ones_like(fn(*leaves))

        def run():
            for _ in range(CALLS_PER_SAMPLE):
                torch.autograd.grad(fn(*leaves), leaves, grad_out)

        return run
    context = torch.inference_mode if mode == "inference_mode" else torch.no_grad

    def run():
        with context():
            for _ in range(CALLS_PER_SAMPLE):
                fn(*inputs)

    return run


def bench_per_call(op, rows, cols, dtype, device, timer, args):
    """Rows for one op at one decode shape: fused and eager, a row per mode."""
    inputs = cases.make_inputs(op, rows, cols, dtype, device)
    case = cases.CASES[op]
    fns = {"fused": case.fused, "eager": case.eager}
    problem = check_against_eager(case.fused, case.eager, inputs, dtype)
    out_rows = []
    for mode in CALL_MODES:
        medians = {}
        if not problem:
            calls = {name: repeated(fn, inputs, mode) for name, fn in fns.items()}
            medians = interleaved_medians(calls, timer, args.warmup, args.min_reps, args.max_reps, args.budget)[0]
        for name in fns:
            row = Row("call", device, str(dtype).removeprefix("torch."), op, mode, [rows, cols], rows * cols, name)
            if problem:
                row.error = f"wrong result, not timed: {problem}"
            else:
                row.median_ms = medians[name] / CALLS_PER_SAMPLE * 1e3
                row.speedup_vs_eager = medians["eager"] / medians[name]
            out_rows.append(row)
    return out_rows
