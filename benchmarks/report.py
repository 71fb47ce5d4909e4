"""What a run reports: the machine it ran on, markdown tables with
geometric means, results.json, and PNG plots when matplotlib is installed."""

import contextlib
import datetime
import json
import math
import platform
import sys
from dataclasses import asdict
from pathlib import Path

import torch

import fused_acts

from . import monitor
from .cases import MODES, OPS


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


def fmt(value, spec):
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def render_tables(rows, info, copy_gbps):
    """Markdown tables: one line per (op, dtype, shape, mode)."""
    lines = [
        f"Machine: {', '.join(f'{k}={v}' for k, v in info.items())}",
        f"Copy bandwidth (read+write): {copy_gbps:.1f} GB/s",
        "",
    ]
    lines += model_lines([r for r in rows if r.kind == "model"])
    op_rows = [r for r in rows if r.kind == "op"]
    if op_rows:
        has_compile = any(r.candidate == "compile" for r in op_rows)
        has_liger = any(r.candidate == "liger" for r in op_rows)
        header = ["op", "dtype", "shape", "mode", "fused ms", "eager ms"]
        header += ["compile ms"] if has_compile else []
        header += ["liger ms"] if has_liger else []
        header += ["× eager"] + (["× compile"] if has_compile else []) + (["× liger"] if has_liger else [])
        header += ["fused GB/s", "% of copy"]
        on_cpu = any(r.device == "cpu" for r in op_rows)
        if on_cpu:
            header += [
                "page faults/call "
                + "/".join(c for c in ("fused", "eager", "compile", "liger") if any(r.candidate == c for r in op_rows))
            ]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        groups = {}
        for r in op_rows:
            groups.setdefault((r.op, r.dtype, tuple(r.shape), r.mode), {})[r.candidate] = r
        for (op, dtype, shape, mode), by in groups.items():
            f = by["fused"]
            cells = [
                op,
                dtype,
                "×".join(map(str, shape)),
                mode,
                fmt(f.median_ms, ".3f"),
                fmt(by["eager"].median_ms, ".3f"),
            ]
            if has_compile:
                cells.append(fmt(by["compile"].median_ms, ".3f") if "compile" in by else "-")
            if has_liger:
                cells.append(fmt(by["liger"].median_ms, ".3f") if "liger" in by else "-")
            cells.append(fmt(f.speedup_vs_eager, ".2f"))
            if has_compile:
                cells.append(fmt(f.speedup_vs_compile, ".2f"))
            if has_liger:
                liger = by.get("liger")
                cells.append(fmt(liger.median_ms / f.median_ms, ".2f") if liger and not liger.error else "-")
            cells += [fmt(f.gbps, ".1f"), fmt(f.pct_of_copy, ".0f")]
            if on_cpu:
                cells.append("/".join(fmt(r.page_faults, ".0f") for r in by.values()))
            lines.append("| " + " | ".join(cells) + " |")
            for cand in by.values():
                if cand.error:
                    lines.append(f"|  {cand.candidate}: {cand.error} |")
        lines.append("")
        lines += geomean_lines(op_rows)
    lines += ffn_lines([r for r in rows if r.kind == "ffn"])
    lines += per_call_lines([r for r in rows if r.kind == "call"])
    lines += quantized_lines([r for r in rows if r.kind == "quant"])
    lines += monitor.lines([r for r in rows if r.kind == "monitor"])
    return "\n".join(lines)


def model_lines(model_rows):
    """The whole-model table: a line per model, dtype and candidate, with its
    training step, bytes saved for backward, peak (CUDA), prefill and greedy
    decode, each with its ratio to eager (time: eager's ÷ the candidate's;
    memory: the candidate's ÷ eager's), and whether greedy tokens are eager's."""
    if not model_rows:
        return []
    lines = ["Whole models, random weights:", ""]
    for name, describe in dict.fromkeys((r.op, r.extra["shape"]) for r in model_rows if "shape" in r.extra):
        lines.append(f"- {name}: {describe}")
    header = ["model", "dtype", "candidate", "train ms", "× eager", "saved MB", "of eager's", "peak MB"]
    header += ["prefill ms", "× eager", "decode tok/s", "× eager", "greedy = eager"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups = {}
    for r in model_rows:
        groups.setdefault((r.op, r.dtype), {}).setdefault(r.candidate, {})[r.mode] = r
    for (name, dtype), by in groups.items():
        eager = by["eager"]
        for candidate, measures in by.items():
            train, prefill, decode = (measures[m] for m in ("train", "prefill", "decode"))
            cells = [name, dtype, candidate, fmt(train.median_ms, ".1f"), fmt(train.speedup_vs_eager, ".3f")]
            cells += [fmt(train.saved_mb, ".1f"), fmt(train.saved_mb / eager["train"].saved_mb, ".2f")]
            cells += [fmt(train.peak_mb, ".0f"), fmt(prefill.median_ms, ".2f"), fmt(prefill.speedup_vs_eager, ".3f")]
            cells += [fmt(decode.extra.get("tokens_per_s"), ".1f"), fmt(decode.speedup_vs_eager, ".3f")]
            if train.error:
                cells.append(train.error)
            else:
                first = decode.extra["first_token_unlike_eager"]
                cells.append("yes" if first is None else f"no, from token {first}")
            lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


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
    header += [f"saved MB {names}", f"peak MB {names}"]
    lines = ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
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
        cells.append(per_candidate(by, "peak_mb", ".1f"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def per_call_lines(call_rows):
    """The per-call table: µs per call, fused and eager, and fused ÷ eager, per mode."""
    if not call_rows:
        return []
    modes = list(dict.fromkeys(r.mode for r in call_rows))
    header = ["op", "dtype", "shape"]
    for mode in modes:
        header += [f"{mode} µs fused / eager", "÷"]
    lines = ["", "Per call (µs), and fused time ÷ eager's:", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups = {}
    for r in call_rows:
        groups.setdefault((r.op, r.dtype, tuple(r.shape)), {})[(r.mode, r.candidate)] = r
    for (op, dtype, shape), by in groups.items():
        cells = [op, dtype, "×".join(map(str, shape))]
        for mode in modes:
            fused, eager = by[(mode, "fused")], by[(mode, "eager")]
            cells += [
                f"{fmt(fused.median_ms * 1e3, '.1f')} / {fmt(eager.median_ms * 1e3, '.1f')}",
                fmt(1 / fused.speedup_vs_eager, ".2f"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def quantized_lines(quant_rows):
    """The quantized-output table: µs per call of the fused act+quant, of
    eager's op then quantize, and of torch.compile of that pair; the speedups."""
    if not quant_rows:
        return []
    has_compile = any(r.candidate == "compile" for r in quant_rows)
    names = "fused / eager" + (" / compile" if has_compile else "")
    header = ["op", "dtype", "shape", "format", f"µs {names}", "× eager"] + (["× compile"] if has_compile else [])
    lines = ["", "Quantized outputs (inference mode), fused act+quant against the op then quantize:", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups = {}
    for r in quant_rows:
        groups.setdefault((r.op, r.dtype, tuple(r.shape), r.mode), {})[r.candidate] = r
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
    return lines


def geomean_summary(rows, vs):
    """(geometric mean, min, count) of the rows' speedups against vs, or None if none has one."""
    values = [v for v in (getattr(r, f"speedup_vs_{vs}") for r in rows) if not math.isnan(v)]
    if not values:
        return None
    return math.exp(sum(map(math.log, values)) / len(values)), min(values), len(values)


def geomean_lines(op_rows):
    """Geometric-mean speedups over all cells, then per op (over its dtypes and sizes)."""
    fused = [r for r in op_rows if r.candidate == "fused"]

    lines = []
    for mode in MODES:
        for vs in ("eager", "compile"):
            s = geomean_summary([r for r in fused if r.mode == mode], vs)
            if s:
                lines.append(
                    f"Geometric mean speedup, {mode}, fused vs {vs}: {s[0]:.2f}× over {s[2]} cells (min {s[1]:.2f}×)"
                )
    per_op = []
    for mode in MODES:
        for op in dict.fromkeys(r.op for r in fused):
            rows = [r for r in fused if r.op == op and r.mode == mode]
            cells = [geomean_summary(rows, vs) for vs in ("eager", "compile")]
            if cells[0]:
                per_op.append(
                    f"| {op} | {mode} | {cells[0][2]} | "
                    + " | ".join(f"{c[0]:.2f}× ({c[1]:.2f}×)" if c else "-" for c in cells)
                    + " |"
                )
    if per_op:
        lines += [
            "",
            "Per op, over its dtypes and sizes:",
            "",
            "| op | mode | cells | × eager, geomean (min) | × compile, geomean (min) |",
            "|---|---|---|---|---|",
            *per_op,
        ]
    return lines


def plot(rows, copy_gbps, out_dir, info):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)", file=sys.stderr)
        return []
    paths = []
    fused = [r for r in rows if r.kind == "op" and r.candidate == "fused" and not r.error]
    if not fused:
        return paths
    title = info.get("gpu") or info.get("cpu", "")
    # Speedup per op at the largest size, forward+backward.
    fig, ax = plt.subplots(figsize=(9, 4))
    mode = "fwdbwd" if any(r.mode == "fwdbwd" for r in fused) else fused[0].mode
    labels, vs_eager, vs_compile = [], [], []
    for dtype in sorted({r.dtype for r in fused}):
        for op in OPS:
            cells = [r for r in fused if r.op == op and r.dtype == dtype and r.mode == mode]
            if cells:
                largest = max(cells, key=lambda r: r.numel)
                labels.append(f"{op}\n{dtype}")
                vs_eager.append(largest.speedup_vs_eager)
                vs_compile.append(largest.speedup_vs_compile)
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], vs_eager, 0.4, label="vs eager")
    ax.bar([x + 0.2 for x in xs], vs_compile, 0.4, label="vs torch.compile")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_ylabel(f"fused speedup ({mode}, largest size)")
    ax.set_title(f"fused_acts speedup — {title}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    path = out_dir / "speedup.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
    # Bandwidth against size, forward, with the copy line.
    fig, ax = plt.subplots(figsize=(7, 4))
    for op, dtype in sorted({(r.op, r.dtype) for r in fused if r.mode == "fwd"}):
        cells = sorted((r for r in fused if r.op == op and r.dtype == dtype and r.mode == "fwd"), key=lambda r: r.numel)
        ax.plot([r.numel for r in cells], [r.gbps for r in cells], marker="o", label=f"{op} {dtype}")
    ax.axhline(copy_gbps, color="black", linestyle="--", label="copy")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("elements")
    ax.set_ylabel("GB/s (minimum bytes)")
    ax.set_title(f"fused_acts forward bandwidth — {title}", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path = out_dir / "bandwidth.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
    return paths


def write_results(out_dir, rows, info, copy_gbps, table):
    """results.json, results.md and the plots, in out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps({"machine": info, "copy_gbps": copy_gbps, "rows": [asdict(r) for r in rows]}, indent=1)
    )
    (out / "results.md").write_text(table + "\n")
    for path in plot(rows, copy_gbps, out, info):
        print(f"wrote {path}")
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
