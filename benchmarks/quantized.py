"""Quantized outputs: the fused act+quant (out_dtype=) against eager's op
then eager's quantize, and against torch.compile of that unfused pair, in
inference mode, at decode sizes and one large one."""

import math

import torch

import fused_acts

from . import cases
from .measure import Row
from .per_call import CALLS_PER_SAMPLE
from .tables import fmt, geomean_summary
from .timing import interleaved_medians

OPS = ["swiglu_packed", "gelu"]
SIZES = [(1, 4096), (32, 14336), (1024, 4096)]  # the last: 2^22 elements
QUICK_SIZES = [(1, 256), (8, 512)]
# Below this many elements a sample is several calls, as per_call.py's are.
MANY_CALLS_BELOW = 1 << 20
E8M0 = torch.float8_e8m0fnu

# The formats, by name: the ops' quantized keyword arguments.
FORMATS = {
    "fp8_e4m3_row": dict(out_dtype=torch.float8_e4m3fn),
    "fp8_e4m3_group128": dict(out_dtype=torch.float8_e4m3fn, granularity=128),
    "fp8_e4m3_group32_e8m0": dict(out_dtype=torch.float8_e4m3fn, granularity=32, scale_dtype=E8M0),
    "int8_row": dict(out_dtype=torch.int8),
}


def eager_quantize(h, out_dtype, granularity=None, scale_dtype=torch.float32):
    """Quantization as a user writes it in torch: amax, floor, divide,
    power-of-two ceiling where asked, clamp, round, cast: each a pass."""
    qmax = float((torch.finfo if out_dtype.is_floating_point else torch.iinfo)(out_dtype).max)
    group = h.shape[-1] if granularity is None else granularity
    groups = h.float().unflatten(-1, (-1, group))
    scale = groups.abs().amax(-1, keepdim=True).clamp(min=1e-12) / qmax
    if scale_dtype == E8M0:
        scale = torch.exp2(torch.ceil(torch.log2(scale)))
    y = (groups / scale).clamp(-qmax, qmax)
    q = (y.round() if out_dtype == torch.int8 else y).to(out_dtype).flatten(-2)
    return q, scale.squeeze(-1).to(scale_dtype) if scale_dtype == E8M0 else scale.squeeze(-1)


def unfused(op, fmt):
    eager = cases.CASES[op].eager
    kwargs = FORMATS[fmt]
    return lambda *inputs: eager_quantize(eager(*inputs), **kwargs)


def differs_from_definition(fused, inputs, kwargs):
    """None if the fused act+quant is bit for bit quantize(op(x)), else what differs."""
    q, s = fused(*inputs, **kwargs)
    q_ref, s_ref = fused_acts.quantize(fused(*inputs), **kwargs)
    for name, a, b in (("q", q, q_ref), ("scale", s, s_ref)):
        if not torch.equal(
            a.view(torch.uint8) if a.element_size() == 1 else a, b.view(torch.uint8) if b.element_size() == 1 else b
        ):
            return f"{name} differs from quantize(op(x))"
    return None


def per_call_medians(fns, inputs, numel, timer, args):
    """Median seconds per call of each fn on inputs, the fns taking turns;
    for an output of fewer than MANY_CALLS_BELOW elements (numel) a sample
    is several calls."""
    calls = CALLS_PER_SAMPLE if numel < MANY_CALLS_BELOW else 1

    def repeated(fn):
        def run():
            for _ in range(calls):
                fn(*inputs)

        return run

    repeats = {name: repeated(fn) for name, fn in fns.items()}
    medians = interleaved_medians(repeats, timer, args.warmup, args.min_reps, args.max_reps, args.budget)[0]
    return {name: seconds / calls for name, seconds in medians.items()}


def bench_quantized(op, rows, cols, fmt, dtype, device, timer, args):
    """Rows for one op, format and shape: fused, unfused eager and its compile."""
    inputs = cases.make_inputs(op, rows, cols, dtype, device)
    kwargs = FORMATS[fmt]
    fused = cases.CASES[op].fused
    fns = {"fused": lambda *x: fused(*x, **kwargs), "eager": unfused(op, fmt)}
    if not args.no_compile:
        torch._dynamo.reset()
        fns["compile"] = torch.compile(unfused(op, fmt), dynamic=False)
    with torch.inference_mode():
        problem = differs_from_definition(fused, inputs, kwargs)
        medians = {} if problem else per_call_medians(fns, inputs, rows * cols, timer, args)
    out_rows = timed_rows("quant", device, dtype, op, "fwd", (rows, cols), list(fns), medians, problem)
    for row in out_rows:
        row.out_format = fmt
        if not problem:
            row.speedup_vs_compile = medians["compile"] / medians[row.candidate] if "compile" in medians else math.nan
    return out_rows


def timed_rows(kind, device, dtype, op, workload, shape, names, medians, problem):
    """A Row per candidate: its median per call and its speedup over eager's, or why it was not timed."""
    out_rows = []
    for name in names:
        row = Row(kind, device, str(dtype).removeprefix("torch."), op, workload, list(shape), math.prod(shape), name)
        out_rows.append(row)
        if problem:
            row.error = f"wrong result, not timed: {problem}"
            continue
        row.median_ms = medians[name] * 1e3
        row.speedup_vs_eager = medians["eager"] / medians[name]
    return out_rows


def lines(quant_rows):
    """The quantized-output table: µs per call of the fused act+quant, of
    eager's op then quantize, and of torch.compile of that pair; the speedups."""
    if not quant_rows:
        return []
    has_compile = any(r.candidate == "compile" for r in quant_rows)
    names = "fused / eager" + (" / compile" if has_compile else "")
    header = ["op", "dtype", "shape", "format", f"µs {names}", "× eager"] + (["× compile"] if has_compile else [])
    lines = ["## Quantized outputs", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups = {}
    for r in quant_rows:
        groups.setdefault((r.op, r.dtype, tuple(r.shape), r.out_format), {})[r.candidate] = r
    for (op, dtype, shape, fmt_name), by in groups.items():
        fused = by["fused"]
        times = " / ".join(fmt(by[c].median_ms * 1e3, ".1f") for c in ("fused", "eager", "compile") if c in by)
        cells = [op, dtype, "×".join(map(str, shape)), fmt_name, times, fmt(fused.speedup_vs_eager, ".2f")]
        if has_compile:
            cells.append(fmt(fused.speedup_vs_compile, ".2f"))
        lines.append("| " + " | ".join(cells) + " |")
        if fused.error:
            lines.append(f"|  fused: {fused.error} |")
    lines.append("")
    fused_rows = [r for r in quant_rows if r.candidate == "fused"]
    for vs in ("eager", "compile"):
        s = geomean_summary(fused_rows, vs)
        if s:
            lines.append(f"Geometric mean, quantized, fused vs {vs}: {s[0]:.2f}× over {s[2]} cells (min {s[1]:.2f}×)")
    return lines + [
        "",
        "Inference mode. fused: the activation with its quantized output (out_dtype), in one pass; eager: the "
        "activation, then fused_acts.quantize"
        + ("; compile: torch.compile of that pair" if has_compile else "")
        + ". format: the output dtype, then the scale's granularity (row, group of n, tensor) and dtype.",
        "",
    ]
