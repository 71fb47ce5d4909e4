"""fused_acts benchmark: per op and per transformer FFN block, against eager
PyTorch and torch.compile (and Liger-Kernel's SwiGLU on CUDA when it imports).

    python benchmarks/bench.py                     # CPU, float32 + bfloat16
    python benchmarks/bench.py --device cuda       # GPU sweep and FFN shapes
    python benchmarks/bench.py --quick             # a smoke run in seconds

Each candidate's output and gradients are checked against eager once before
timing; a wrong candidate is reported, never timed. Timings are medians of
interleaved repetitions (CUDA events on the GPU). Bandwidth counts the
minimum bytes (each input read once, each output written once) and is shown
against the device's copy bandwidth, measured in the same run. The benchmark
reports; it never fails on a slow number.
"""

import argparse
import contextlib
import ctypes
import ctypes.util
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

try:
    import resource  # Unix only: page-fault counts
except ImportError:
    resource = None

import torch
import torch.nn.functional as F

import fused_acts

OPS = ["gelu", "gelu_tanh", "silu", "mish", "swiglu", "swiglu_packed"]
MODES = ["fwd", "bwd", "fwdbwd"]
GATED_OPS = {"swiglu", "swiglu_packed"}


# ---------------------------------------------------------------- candidates
def eager_fn(op):
    return {
        "gelu": F.gelu,
        "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "silu": F.silu,
        "mish": F.mish,
        "swiglu": lambda g, u: F.silu(g) * u,
        "swiglu_packed": lambda x: (lambda g, u: F.silu(g) * u)(*x.chunk(2, dim=-1)),
    }[op]


def fused_fn(op):
    return {
        "gelu": fused_acts.gelu,
        "gelu_tanh": lambda x: fused_acts.gelu(x, "tanh"),
        "silu": fused_acts.silu,
        "mish": fused_acts.mish,
        "swiglu": fused_acts.swiglu,
        "swiglu_packed": fused_acts.swiglu,
    }[op]


def liger_fn(op):
    """Liger-Kernel's fused SwiGLU, where it is installed (it needs CUDA and triton)."""
    if op not in GATED_OPS:
        return None
    try:
        from liger_kernel.ops.swiglu import LigerSiLUMulFunction
    except Exception:
        return None
    if op == "swiglu":
        return LigerSiLUMulFunction.apply
    return lambda x: LigerSiLUMulFunction.apply(*x.chunk(2, dim=-1))


def candidates(op, device, use_compile):
    cands = {"fused": fused_fn(op), "eager": eager_fn(op)}
    if use_compile:
        # F.gelu, F.silu and F.mish are builtins, which dynamo runs through one
        # shared wrapper frame: without a reset, its recompile limit is soon
        # hit and "compile" silently falls back to eager.
        torch._dynamo.reset()
        cands["compile"] = torch.compile(eager_fn(op), dynamic=True)
    if device == "cuda" and liger_fn(op) is not None:
        cands["liger"] = liger_fn(op)
    return cands


def make_inputs(op, rows, cols, dtype, device):
    """The op's inputs for an activation of shape (rows, cols)."""
    gen = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape):
        return (torch.randn(*shape, generator=gen) * 2).to(device=device, dtype=dtype)

    if op == "swiglu":
        return [rand(rows, cols), rand(rows, cols)]
    if op == "swiglu_packed":
        return [rand(rows, 2 * cols)]
    return [rand(rows, cols)]


def min_bytes(op, numel, itemsize, mode):
    """Each input read once and each output written once."""
    gated = op in GATED_OPS
    fwd = (3 if gated else 2) * numel * itemsize
    bwd = (5 if gated else 3) * numel * itemsize
    return {"fwd": fwd, "bwd": bwd, "fwdbwd": fwd + bwd}[mode]


# ------------------------------------------------------------------- timing
class Timer:
    """Times one call of fn. CUDA: events on the current stream; CPU: a host clock."""

    def __init__(self, device):
        self.device = device

    def __call__(self, fn):
        if self.device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        begin = time.perf_counter()
        fn()
        return time.perf_counter() - begin


def minor_page_faults():
    """Page faults this process has taken so far; 0 where the OS cannot say."""
    if resource is None:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def interleaved_medians(fns, timer, warmup, min_reps, max_reps, budget_s):
    """Median seconds and median host page faults per call for each fn, the
    candidates taking turns so that drift on a shared machine hits all of
    them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    seconds = {name: [] for name in fns}
    faults = {name: [] for name in fns}

    def sample(name, fn):
        before = minor_page_faults()
        seconds[name].append(timer(fn))
        faults[name].append(minor_page_faults() - before)

    for name, fn in fns.items():
        sample(name, fn)
    per_round = sum(ts[0] for ts in seconds.values())
    reps = int(min(max_reps, max(min_reps, budget_s / max(per_round, 1e-9))))
    for _ in range(reps - 1):
        for name, fn in fns.items():
            sample(name, fn)
    return (
        {name: statistics.median(v) for name, v in seconds.items()},
        {name: statistics.median(v) for name, v in faults.items()},
    )


def copy_bandwidth(device, nbytes, timer):
    """Bytes read plus written per second by a large copy_ into a preallocated tensor."""
    src = torch.empty(nbytes // 4, device=device, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    t = interleaved_medians({"copy": lambda: dst.copy_(src)}, timer, 3, 10, 50, 1.0)[0]["copy"]
    return 2 * src.numel() * 4 / t


def keep_freed_memory_mapped(pool_bytes):
    """Makes glibc serve every allocation from one heap that it never gives
    back to the kernel, and faults pool_bytes of it in up front. By default
    glibc maps each block over 32 MiB afresh, and first touch of each fresh
    page faults: at 2^24 float32 elements that costs more than the op itself,
    and which candidate pays it depends on what the others freed before. On
    warm memory, as under a caching allocator, every candidate is timed on its
    kernels (the tables show page faults per call). True if set."""
    path = ctypes.util.find_library("c")
    if platform.system() != "Linux" or path is None:
        return False
    libc = ctypes.CDLL(path)
    if not hasattr(libc, "mallopt"):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    if not (libc.mallopt(m_mmap_max, 0) and libc.mallopt(m_trim_threshold, -1)):
        return False
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    pool = libc.malloc(ctypes.c_size_t(pool_bytes))
    if pool:
        ctypes.memset(pool, 0, pool_bytes)
        libc.free(pool)
    return True


# ---------------------------------------------------------------- per op
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


@dataclass
class Row:
    kind: str
    device: str
    dtype: str
    op: str
    mode: str
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
    error: str = ""
    extra: dict = field(default_factory=dict)


def bench_op(op, rows, cols, dtype, device, modes, timer, copy_bps, args):
    inputs = make_inputs(op, rows, cols, dtype, device)
    cands = candidates(op, device, not args.no_compile)
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
        nbytes = min_bytes(op, numel, inputs[0].element_size(), mode)
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


# ---------------------------------------------------------------- FFN blocks
class LlamaMLP(torch.nn.Module):
    """gate/up/down projections; packed=True fuses gate and up into one matmul."""

    def __init__(self, dim, hidden, act, packed):
        super().__init__()
        self.packed, self.act = packed, act
        if packed:
            self.gate_up_proj = torch.nn.Linear(dim, 2 * hidden, bias=False)
        else:
            self.gate_proj = torch.nn.Linear(dim, hidden, bias=False)
            self.up_proj = torch.nn.Linear(dim, hidden, bias=False)
        self.down_proj = torch.nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        if self.packed:
            return self.down_proj(self.act(self.gate_up_proj(x)))
        return self.down_proj(self.act(self.gate_proj(x), self.up_proj(x)))


class GeluMLP(torch.nn.Module):
    def __init__(self, dim, hidden, act):
        super().__init__()
        self.fc1, self.fc2, self.act = torch.nn.Linear(dim, hidden), torch.nn.Linear(hidden, dim), act

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def ffn_blocks(dim, hidden):
    """name -> (fused block, eager block), sharing weights."""

    def eager_swiglu(g, u=None):
        if u is None:
            g, u = g.chunk(2, dim=-1)
        return F.silu(g) * u

    blocks = {}
    for packed in (False, True):
        name = "llama_mlp_packed" if packed else "llama_mlp"
        fused = LlamaMLP(dim, hidden, fused_acts.swiglu, packed)
        eager = LlamaMLP(dim, hidden, eager_swiglu, packed)
        eager.load_state_dict(fused.state_dict())
        blocks[name] = (fused, eager)
    fused = GeluMLP(dim, hidden, lambda x: fused_acts.gelu(x, "tanh"))
    eager = GeluMLP(dim, hidden, lambda x: F.gelu(x, approximate="tanh"))
    eager.load_state_dict(fused.state_dict())
    blocks["gelu_mlp"] = (fused, eager)
    return blocks


def saved_bytes(block, x):
    """Bytes autograd keeps for backward (each storage once), over one forward."""
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(x)
    return sum(seen.values())


def peak_bytes(block, x, device):
    if device != "cuda":
        return math.nan
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    block(x).sum().backward()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def cpu_lacks_matmul(dtype):
    """True where oneDNN has no kernel for this 16-bit dtype on this CPU (for
    bfloat16: no AVX-512 or AMX). torch then falls back to a generic loop,
    about 70× slower than float32 (one 512×1024×2816 bfloat16 matmul took 3 s
    on an AVX2 Zen 3), and an FFN block is mostly matmul."""
    check = {
        torch.bfloat16: torch.ops.mkldnn._is_mkldnn_bf16_supported,
        torch.float16: torch.ops.mkldnn._is_mkldnn_fp16_supported,
    }.get(dtype)
    return check is not None and not check()


def bench_ffn(tokens, dim, hidden, dtype, device, timer, args):
    rows = []
    for name, (fused, eager) in ffn_blocks(dim, hidden).items():
        fused.to(device=device, dtype=dtype)
        eager.to(device=device, dtype=dtype)
        x = torch.randn(tokens, dim, device=device, dtype=dtype)
        xs = {k: x.clone().requires_grad_() for k in ("fused", "eager")}
        blocks = {"fused": fused, "eager": eager}
        problem = check_against_eager(fused, eager, [x], dtype)

        def step(k):
            def run():
                blocks[k].zero_grad(set_to_none=True)
                blocks[k](xs[k]).sum().backward()

            return run

        medians = (
            {}
            if problem
            else interleaved_medians(
                {k: step(k) for k in blocks}, timer, args.warmup, args.min_reps, args.max_reps, args.budget
            )[0]
        )
        for k, block in blocks.items():
            row = Row(
                "ffn",
                device,
                str(dtype).removeprefix("torch."),
                name,
                "fwdbwd",
                [tokens, dim, hidden],
                tokens * hidden,
                k,
            )
            if problem:
                row.error = f"wrong result, not timed: {problem}"
            else:
                row.median_ms = medians[k] * 1e3
                row.speedup_vs_eager = medians["eager"] / medians[k]
            row.saved_mb = saved_bytes(block, xs[k]) / 2**20
            row.peak_mb = peak_bytes(block, xs[k], device) / 2**20
            rows.append(row)
    return rows


# ------------------------------------------------------------------ output
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
    ffn_rows = [r for r in rows if r.kind == "ffn"]
    if ffn_rows:
        lines += [
            "",
            "| FFN block | dtype | tokens×dim×hidden | fused ms | eager ms | × eager | saved MB fused | saved MB eager | peak MB fused | peak MB eager |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        groups = {}
        for r in ffn_rows:
            groups.setdefault((r.op, r.dtype, tuple(r.shape)), {})[r.candidate] = r
        for (name, dtype, shape), by in groups.items():
            f, e = by["fused"], by["eager"]
            lines.append(
                "| "
                + " | ".join(
                    [
                        name,
                        dtype,
                        "×".join(map(str, shape)),
                        fmt(f.median_ms, ".2f"),
                        fmt(e.median_ms, ".2f"),
                        fmt(f.speedup_vs_eager, ".2f"),
                        fmt(f.saved_mb, ".1f"),
                        fmt(e.saved_mb, ".1f"),
                        fmt(f.peak_mb, ".1f"),
                        fmt(e.peak_mb, ".1f"),
                    ]
                )
                + " |"
            )
    return "\n".join(lines)


def geomean_lines(op_rows):
    """Geometric-mean speedups over all cells, then per op (over its dtypes and sizes)."""
    fused = [r for r in op_rows if r.candidate == "fused"]

    def summary(rows, vs):
        values = [v for v in (getattr(r, f"speedup_vs_{vs}") for r in rows) if not math.isnan(v)]
        if not values:
            return None
        return math.exp(sum(map(math.log, values)) / len(values)), min(values), len(values)

    lines = []
    for mode in MODES:
        for vs in ("eager", "compile"):
            s = summary([r for r in fused if r.mode == mode], vs)
            if s:
                lines.append(
                    f"Geometric mean speedup, {mode}, fused vs {vs}: {s[0]:.2f}× over {s[2]} cells (min {s[1]:.2f}×)"
                )
    per_op = []
    for mode in MODES:
        for op in dict.fromkeys(r.op for r in fused):
            rows = [r for r in fused if r.op == op and r.mode == mode]
            cells = [summary(rows, vs) for vs in ("eager", "compile")]
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


# --------------------------------------------------------------------- CLI
def parse_size(text):
    """'1M', '2^22', '4096x11008' or a plain count -> (rows, cols)."""
    text = text.strip().lower()
    if "x" in text:
        rows, cols = (int(v) for v in text.split("x"))
        return rows, cols
    if text.startswith("2^"):
        numel = 2 ** int(text[2:])
    elif text[-1] in "km":
        numel = int(float(text[:-1]) * (1 << (10 if text[-1] == "k" else 20)))
    else:
        numel = int(text)
    cols = math.gcd(numel, 4096)
    return numel // cols, cols


DEFAULTS = {
    # device -> (sizes, ffn shapes as tokens×dim×hidden)
    "cpu": (["2^20", "2^22", "2^24"], [(512, 1024, 2816)]),
    "cuda": (
        ["2^20", "2^22", "2^24", "2^26", "2^28", "4096x11008", "8192x14336"],
        [(4096, 4096, 11008), (8192, 4096, 14336)],
    ),
}
QUICK = {"cpu": (["2^16"], [(64, 128, 352)]), "cuda": (["2^20", "2^26"], [(1024, 1024, 2816)])}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated: float32,bfloat16,float16")
    p.add_argument("--ops", default=",".join(OPS), help=f"comma-separated from {OPS}")
    p.add_argument("--modes", default="fwd,fwdbwd", help=f"comma-separated from {MODES}")
    p.add_argument("--sizes", default=None, help="comma-separated: 2^22, 4M, 4096x11008 (activation elements)")
    p.add_argument("--no-ffn", action="store_true", help="skip the FFN blocks")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile candidate")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repetitions: a smoke run")
    p.add_argument(
        "--fresh-memory",
        action="store_true",
        help="CPU: keep glibc's default malloc, which maps large outputs afresh (page faults)",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--min-reps", type=int, default=7)
    p.add_argument("--max-reps", type=int, default=100)
    p.add_argument("--budget", type=float, default=0.4, help="seconds of timing per cell")
    p.add_argument("--out", default=None, help="folder for results.json, results.md and PNG plots")
    args = p.parse_args(argv)
    if args.quick:
        args.min_reps, args.max_reps, args.budget, args.warmup = 3, 5, 0.05, 1
    return args


def progress(items, desc):
    try:
        from tqdm import tqdm

        return tqdm(items, desc=desc, file=sys.stderr)
    except ImportError:
        return items


def run(args):
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    timer = Timer(device)
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    ops = args.ops.split(",")
    unknown = set(ops) - set(OPS)
    if unknown:
        raise SystemExit(f"unknown ops {sorted(unknown)}; choose from {OPS}")
    modes = args.modes.split(",")
    sizes, ffn_shapes = (QUICK if args.quick else DEFAULTS)[device]
    shapes = [parse_size(s) for s in (args.sizes.split(",") if args.sizes else sizes)]

    largest = max(r * c for r, c in shapes) * 4
    # Room for every candidate's inputs, outputs and intermediates at the largest size.
    warm_memory = device == "cpu" and not args.fresh_memory and keep_freed_memory_mapped(max(32 * largest, 256 << 20))
    copy_bps = copy_bandwidth(device, max(largest, 64 << 20), timer)
    info = machine_info(device, threads)
    if device == "cpu":
        info["memory"] = "warm (glibc heap, no mmap)" if warm_memory else "glibc default (fresh pages)"
    rows = []
    cells = [(op, dtype, shape) for dtype in dtypes for op in ops for shape in shapes]
    for op, dtype, (r, c) in progress(cells, "ops"):
        rows += bench_op(op, r, c, dtype, device, modes, timer, copy_bps, args)
    if not args.no_ffn:
        skipped = [d for d in dtypes if device == "cpu" and cpu_lacks_matmul(d)]
        if skipped:
            info["ffn"] = (
                f"{', '.join(str(d).removeprefix('torch.') for d in skipped)} skipped (no oneDNN matmul on this CPU)"
            )
        for dtype in progress([d for d in dtypes if d not in skipped], "ffn"):
            for tokens, dim, hidden in ffn_shapes:
                rows += bench_ffn(tokens, dim, hidden, dtype, device, timer, args)
    return rows, info, copy_bps / 1e9


def main(argv=None):
    args = parse_args(argv)
    rows, info, copy_gbps = run(args)
    table = render_tables(rows, info, copy_gbps)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(
            json.dumps({"machine": info, "copy_gbps": copy_gbps, "rows": [asdict(r) for r in rows]}, indent=1)
        )
        (out / "results.md").write_text(table + "\n")
        for path in plot(rows, copy_gbps, out, info):
            print(f"wrote {path}")
        print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return rows


if __name__ == "__main__":
    main()
