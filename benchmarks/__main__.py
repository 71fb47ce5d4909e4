"""The command line: python -m benchmarks --help."""

import argparse
import dataclasses
import math
import os
import sys

import torch

from . import __doc__ as DESCRIPTION
from . import ffn, model, monitor, per_call, quantized
from .cases import MODES, OPS
from .measure import bench_op
from .report import machine_info, render_tables, write_results
from .timing import Timer, copy_bandwidth, keep_freed_memory_mapped


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
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cuda = torch.cuda.is_available()
    p.add_argument(
        "--device",
        default="cuda" if cuda else "cpu",
        choices=["cpu", "cuda"],
        help=f"default: cuda when a GPU is available, else cpu (here: {'cuda' if cuda else 'cpu'})",
    )
    p.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated: float32,bfloat16,float16")
    p.add_argument("--ops", default=",".join(OPS), help=f"comma-separated from {OPS}")
    p.add_argument("--modes", default="fwd,fwdbwd", help=f"comma-separated from {MODES}")
    p.add_argument("--sizes", default=None, help="comma-separated: 2^22, 4M, 4096x11008 (activation elements)")
    p.add_argument("--no-ffn", action="store_true", help="skip the FFN blocks")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile candidate")
    p.add_argument("--no-per-call", action="store_true", help="skip the per-call cost at decode sizes")
    p.add_argument(
        "--no-quantized", action="store_true", help=f"skip the quantized outputs (fused act+quant) of {quantized.OPS}"
    )
    p.add_argument("--no-monitor", action="store_true", help=f"skip the activation monitor's cost on {monitor.OPS}")
    p.add_argument("--no-model", action="store_true", help="skip the whole models")
    p.add_argument("--models", default=",".join(model.MODELS), help=f"comma-separated from {model.MODELS}")
    p.add_argument(
        "--model-compile",
        action="store_true",
        help=f"also time the models under torch.compile ({', '.join(model.COMPILED)}): minutes of compiling each",
    )
    for field in dataclasses.fields(model.Shape):
        flag = field.name.replace("_", "-")
        cpu, gpu = (getattr(model.DEFAULT_SHAPES[d], field.name) for d in ("cpu", "cuda"))
        p.add_argument(f"--model-{flag}", type=int, default=None, help=f"default {cpu} on cpu, {gpu} on cuda")
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
    """Every cell the arguments ask for: (rows, machine info, copy GB/s)."""
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
    # The FFN blocks and the models are mostly matmul: they skip the dtypes this CPU has none for.
    no_matmul = [d for d in dtypes if device == "cpu" and ffn.cpu_lacks_matmul(d)]
    matmul_dtypes = [d for d in dtypes if d not in no_matmul]
    no_matmul_note = (
        ", ".join(str(d).removeprefix("torch.") for d in no_matmul) + " skipped (no oneDNN matmul on this CPU)"
    )
    if not args.no_ffn:
        if no_matmul:
            info["ffn"] = no_matmul_note
        for dtype in progress(matmul_dtypes, "ffn"):
            for tokens, dim, hidden in ffn_shapes:
                rows += ffn.bench_ffn(tokens, dim, hidden, dtype, device, timer, args)
    if not args.no_per_call:
        calls = [(op, dtype, shape) for dtype in dtypes for op in ops for shape in per_call.SIZES]
        for op, dtype, (r, c) in progress(calls, "per call"):
            rows += per_call.bench_per_call(op, r, c, dtype, device, timer, args)
    if not args.no_quantized:
        sizes = quantized.QUICK_SIZES if args.quick else quantized.SIZES
        quantized_ops = [op for op in quantized.OPS if op in ops]
        cells = [(o, f, d, s) for d in dtypes for o in quantized_ops for f in quantized.FORMATS for s in sizes]
        for op, fmt, dtype, (r, c) in progress(cells, "quantized"):
            rows += quantized.bench_quantized(op, r, c, fmt, dtype, device, timer, args)
    if not args.no_monitor:
        sizes = monitor.QUICK_SIZES if args.quick else monitor.SIZES
        cells = [(o, d, s) for d in dtypes for o in monitor.OPS if o in ops for s in sizes]
        for op, dtype, (r, c) in progress(cells, "monitor"):
            rows += monitor.bench_monitor(op, r, c, dtype, device, timer, args)
    if not args.no_model:
        if no_matmul:
            info["model"] = no_matmul_note
        rows += run_models(args, matmul_dtypes, timer, info)
    return rows, info, copy_bps / 1e9


def model_shape(args):
    """The models' shape: the device's default (or --quick's), with the --model-* options given."""
    shape = model.QUICK_SHAPE if args.quick else model.DEFAULT_SHAPES[args.device]
    given = {f.name: getattr(args, f"model_{f.name}") for f in dataclasses.fields(shape)}
    return dataclasses.replace(shape, **{k: v for k, v in given.items() if v is not None})


def run_models(args, dtypes, timer, info):
    names = args.models.split(",")
    unknown = set(names) - set(model.MODELS)
    if unknown:
        raise SystemExit(f"unknown models {sorted(unknown)}; choose from {model.MODELS}")
    try:
        import transformers  # noqa: F401
    except ImportError:
        info["model"] = "skipped (pip install transformers)"
        return []
    shape = model_shape(args)
    rows = []
    for dtype in progress(dtypes, "model"):
        for name in names:
            rows += model.bench_model(name, shape, dtype, args.device, timer, args)
    return rows


def main(argv=None):
    args = parse_args(argv)
    rows, info, copy_gbps = run(args)
    table = render_tables(rows, info, copy_gbps)
    print(table)
    if args.out:
        write_results(args.out, rows, info, copy_gbps, table)
    return rows


if __name__ == "__main__":
    main()
