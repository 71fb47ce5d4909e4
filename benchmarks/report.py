"""What a run reports: the machine it ran on, markdown tables with
geometric means, results.json, and PNG plots when matplotlib is installed."""

import contextlib
import datetime
import json
import math
import platform
from dataclasses import asdict
from pathlib import Path

import torch

import fused_acts

from . import model, monitor, plots, quantized
from .cases import MODES
from .tables import fmt, geomean_summary, markdown_table


def machine_info(device, threads):
    info = {
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "fused_acts_cpu_kernels": fused_acts._extension.cpu_capability,
        "device": device,
        "python": platform.python_version(),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    else:
        cpu = platform.processor() or platform.machine()
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        info["cpu"] = cpu
        info["threads"] = threads
    return info


RATIOS = (
    "Every × column is a speedup: the other candidate's time (or memory) ÷ this one's, so above 1 means "
    "fused_acts is faster (or lighter). Times are medians of the candidates run in turns."
)


def render_tables(rows, info, copy_gbps):
    """results.md: the machine, then a section per kind of measure, each
    table followed by what its columns mean."""
    lines = [
        "# fused_acts benchmark",
        "",
        f"Machine: {', '.join(f'{k}={v}' for k, v in info.items())}",
        "",
        f"Copy bandwidth (bytes read + written per second by a large copy, out of cache): {copy_gbps:.1f} GB/s",
        "",
        RATIOS,
        "",
    ]
    lines += model.lines([r for r in rows if r.kind == "model"])
    lines += op_lines([r for r in rows if r.kind == "op"])
    lines += ffn_lines([r for r in rows if r.kind == "ffn"])
    lines += per_call_lines([r for r in rows if r.kind == "call"])
    lines += quantized.lines([r for r in rows if r.kind == "quant"])
    lines += monitor.lines([r for r in rows if r.kind == "monitor"])
    return "\n".join(lines)


def op_lines(op_rows):
    """The per-op table: a line per (op, dtype, shape, workload), then the geometric means."""
    if not op_rows:
        return []
    candidates = [c for c in ("fused", "eager", "compile", "liger") if any(r.candidate == c for r in op_rows)]
    rivals = candidates[1:]
    on_cpu = any(r.device == "cpu" for r in op_rows)
    header = ["op", "dtype", "shape", "workload", *(f"{c} ms" for c in candidates), *(f"× {c}" for c in rivals)]
    header += ["fused GB/s", "% of copy"] + (["page faults per call, " + " / ".join(candidates)] if on_cpu else [])
    groups = {}
    for r in op_rows:
        groups.setdefault((r.op, r.dtype, tuple(r.shape), r.workload), {})[r.candidate] = r
    body = []
    for (op, dtype, shape, workload), by in groups.items():
        f = by["fused"]
        cells = [op, dtype, "×".join(map(str, shape)), workload]
        cells += [fmt(by[c].median_ms, ".3f") if c in by else "-" for c in candidates]
        for c in rivals:
            rival = by.get(c)
            ok = rival is not None and not rival.error
            cells.append(fmt(rival.median_ms / f.median_ms, ".2f") if ok else "-")
        cells += [fmt(f.gbps, ".1f"), fmt(f.pct_of_copy, ".0f")]
        if on_cpu:
            cells.append(" / ".join(fmt(by[c].page_faults, ".0f") if c in by else "-" for c in candidates))
        body.append("| " + " | ".join(cells) + " |")
        body += [f"|  {c.candidate}: {c.error} |" for c in by.values() if c.error]
    return [
        "## Per op",
        "",
        *markdown_table(header, body),
        "",
        "workload: fwd is the forward; fwdbwd a forward and its backward. ms: median per call. "
        "fused GB/s: the bytes the op must move (its inputs read and outputs written once) ÷ fused's time; "
        "% of copy: that against the copy's bandwidth above, which sizes that fit in cache exceed, "
        "since the copy is measured out of cache."
        + (" page faults: per call, where a fresh output is not yet mapped (ideally 0)." if on_cpu else ""),
        "",
        *geomean_lines(op_rows),
    ]


def ffn_lines(ffn_rows):
    """The FFN table: ms, speedup, and MB saved for backward (parameters
    excluded) and peak (CUDA), per candidate: fused, recompute (where the
    block has one), eager, and the compiled ones where they ran: the
    compile backend against plain torch.compile."""
    if not ffn_rows:
        return []
    order = ("fused", "recompute", "eager", "compile", "compile_fused_acts")
    candidates = [c for c in order if any(r.candidate == c for r in ffn_rows)]
    names = " / ".join(candidates)
    header = ["FFN block", "dtype", "tokens×dim×hidden", f"ms {names}", "fused × eager"]
    with_compile = "compile_fused_acts" in candidates
    if with_compile:
        header.append("backend × compile")
    with_peak = any(not math.isnan(r.peak_mb) for r in ffn_rows)
    header += [f"saved MB {names}"] + ([f"peak MB {names}"] if with_peak else [])
    lines = ["## FFN blocks", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups = {}
    for r in ffn_rows:
        groups.setdefault((r.op, r.dtype, tuple(r.shape)), {})[r.candidate] = r

    def per_candidate(by, field, spec):
        return " / ".join(fmt(getattr(by[c], field), spec) if c in by else "-" for c in candidates)

    for (name, dtype, shape), by in groups.items():
        cells = [name, dtype, "×".join(map(str, shape)), per_candidate(by, "median_ms", ".2f")]
        cells.append(fmt(by["fused"].speedup_vs_eager, ".2f"))
        if with_compile:
            backend, plain = by.get("compile_fused_acts"), by.get("compile")
            ratio = plain.median_ms / backend.median_ms if backend and plain else math.nan
            cells.append(fmt(ratio, ".2f"))
        cells.append(per_candidate(by, "saved_mb", ".1f"))
        cells += [per_candidate(by, "peak_mb", ".1f")] if with_peak else []
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [
        "",
        "A transformer FFN block (its projections and activation), forward and backward. recompute: patched with "
        "recompute=True, which keeps gate‖up instead of the activation's output"
        + ("; backend × compile: torch.compile's time ÷ the fused_acts compile backend's" if with_compile else "")
        + "; saved MB: the activations autograd keeps for backward, parameters excluded"
        + ("; peak MB: the peak allocation above the block's" if with_peak else "")
        + ".",
        "",
    ]


def per_call_lines(call_rows):
    """The per-call table: µs per call, fused and eager, and eager's ÷ fused's, per workload."""
    if not call_rows:
        return []
    workloads = list(dict.fromkeys(r.workload for r in call_rows))
    header = ["op", "dtype", "shape"]
    for workload in workloads:
        header += [f"{workload} µs fused / eager", "× eager"]
    groups = {}
    for r in call_rows:
        groups.setdefault((r.op, r.dtype, tuple(r.shape)), {})[(r.workload, r.candidate)] = r
    body = []
    for (op, dtype, shape), by in groups.items():
        cells = [op, dtype, "×".join(map(str, shape))]
        for workload in workloads:
            fused, eager = by[(workload, "fused")], by[(workload, "eager")]
            cells += [
                f"{fmt(fused.median_ms * 1e3, '.1f')} / {fmt(eager.median_ms * 1e3, '.1f')}",
                fmt(fused.speedup_vs_eager, ".2f"),
            ]
        body.append("| " + " | ".join(cells) + " |")
    return [
        "## Per call",
        "",
        *markdown_table(header, body),
        "",
        "Decode-sized calls, one thread, where the cost of a call (Python, dispatch, autograd) outweighs the "
        "kernel's: µs per call through fused_acts' Python API and through eager's; × eager below 1 means "
        "fused_acts' call costs more than eager's.",
        "",
    ]


def geomean_lines(op_rows):
    """Geometric-mean speedups over all cells, then per op (over its dtypes and sizes)."""
    fused = [r for r in op_rows if r.candidate == "fused"]
    lines = ["### Geometric means", ""]
    for workload in MODES:
        for vs in ("eager", "compile"):
            s = geomean_summary([r for r in fused if r.workload == workload], vs)
            if s:
                lines.append(f"- {workload}, fused vs {vs}: {s[0]:.2f}× over {s[2]} cells (min {s[1]:.2f}×)")
    per_op = []
    for workload in MODES:
        for op in dict.fromkeys(r.op for r in fused):
            rows = [r for r in fused if r.op == op and r.workload == workload]
            cells = [geomean_summary(rows, vs) for vs in ("eager", "compile")]
            if cells[0]:
                per_op.append(
                    f"| {op} | {workload} | {cells[0][2]} | "
                    + " | ".join(f"{c[0]:.2f}× ({c[1]:.2f}×)" if c else "-" for c in cells)
                    + " |"
                )
    if per_op:
        header = ["op", "workload", "cells", "× eager, geomean (min)", "× compile, geomean (min)"]
        lines += ["", *markdown_table(header, per_op), "", "Per op, over its dtypes and sizes.", ""]
    return lines


def write_results(out_dir, rows, info, copy_gbps, table):
    """results.json, results.md and the plots, in out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps({"machine": info, "copy_gbps": copy_gbps, "rows": [asdict(r) for r in rows]}, indent=1)
    )
    (out / "results.md").write_text(table + "\n")
    for path in plots.plot(rows, copy_gbps, out, info):
        print(f"wrote {path}")
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
