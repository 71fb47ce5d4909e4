"""The run's plots, each for one question:
- speedup.png: how much faster is fused than eager and than torch.compile,
  per op, dtype and size? A heatmap per workload and rival, each cell
  annotated with its ratio.
- bandwidth.png: how close does each op come to memory bandwidth? A panel per
  op, a line per dtype, against the copy's bandwidth.
The monitor's plot is fused_acts.monitor's own (ActivationMonitor.plot)."""

import math
import sys

from .cases import MODES, OPS

DTYPE_ORDER = ("float32", "bfloat16", "float16", "float64")


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)", file=sys.stderr)
        return None
    return plt


def _ordered_dtypes(rows):
    present = {r.dtype for r in rows}
    return [d for d in DTYPE_ORDER if d in present] + sorted(present - set(DTYPE_ORDER))


def _size_label(shape):
    return "×".join(map(str, shape))


def speedup_heatmaps(plt, fused, title):
    """A heatmap per (workload, rival): rows op and dtype, columns the sizes;
    the colour is the ratio on a log scale centred on 1 (blue faster, red slower)."""
    from matplotlib.colors import LogNorm

    workloads = [m for m in MODES if any(r.workload == m for r in fused)]
    rivals = [vs for vs in ("eager", "compile") if any(not math.isnan(getattr(r, f"speedup_vs_{vs}")) for r in fused)]
    sizes = sorted({tuple(r.shape) for r in fused}, key=math.prod)
    labels = [
        (op, dtype)
        for op in OPS
        for dtype in _ordered_dtypes(fused)
        if any(r.op == op and r.dtype == dtype for r in fused)
    ]
    cell = {(r.op, r.dtype, tuple(r.shape), r.workload): r for r in fused}
    panels = [(m, vs) for m in workloads for vs in rivals]
    grids = {
        (m, vs): [
            [getattr(cell[key], f"speedup_vs_{vs}") if key in cell else math.nan for key in row]
            for row in ([(op, dtype, size, m) for size in sizes] for op, dtype in labels)
        ]
        for m, vs in panels
    }
    finite = [v for grid in grids.values() for row in grid for v in row if v > 0 and math.isfinite(v)]
    spread = max(2.0, *(max(v, 1 / v) for v in finite)) if finite else 2.0
    norm = LogNorm(1 / spread, spread)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(1.2 + 2.4 * len(panels), 1.2 + 0.22 * len(labels)), squeeze=False, sharey=True
    )
    for ax, (m, vs) in zip(axes[0], panels):
        grid = grids[(m, vs)]
        image = ax.imshow(grid, cmap="RdBu", norm=norm, aspect="auto")
        for y, row in enumerate(grid):
            for x, v in enumerate(row):
                if math.isfinite(v):
                    dark = abs(math.log(v)) > 0.6 * math.log(spread)
                    ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if dark else "black")
        ax.set_xticks(range(len(sizes)), [_size_label(s) for s in sizes], fontsize=7, rotation=30)
        ax.set_title(f"{m}: × {'torch.compile' if vs == 'compile' else vs}", fontsize=9)
    axes[0][0].set_yticks(range(len(labels)), [f"{op} {dtype}" for op, dtype in labels], fontsize=7)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.6, label="rival's time ÷ fused's (> 1: fused is faster)")
    fig.suptitle(f"fused_acts speedup per op, dtype and size — {title}", fontsize=10)
    return fig


def bandwidth_panels(plt, fused, copy_gbps, title):
    """A panel per op: forward GB/s against elements, a line per dtype, and the copy's line."""
    forward = [r for r in fused if r.workload == "fwd"] or fused
    ops = [op for op in OPS if any(r.op == op for r in forward)]
    dtypes = _ordered_dtypes(forward)
    colours = dict(zip(dtypes, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")))
    columns = min(4, len(ops))
    rows = math.ceil(len(ops) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(3 * columns, 2.2 * rows + 0.8), squeeze=False, sharex=True, sharey=True
    )
    for ax in axes.flat[len(ops) :]:
        ax.set_visible(False)
    for ax, op in zip(axes.flat, ops):
        for dtype in dtypes:
            cells = sorted((r for r in forward if r.op == op and r.dtype == dtype), key=lambda r: r.numel)
            if cells:
                ax.plot(
                    [r.numel for r in cells], [r.gbps for r in cells], marker="o", color=colours[dtype], label=dtype
                )
        ax.axhline(copy_gbps, color="black", linestyle="--", linewidth=0.8, label="copy")
        ax.set_xscale("log", base=2)
        ax.set_title(op, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("elements", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("GB/s", fontsize=8)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
    workload = forward[0].workload
    fig.suptitle(
        f"fused_acts {workload} bandwidth (the bytes each op must move ÷ time) against a copy's — {title}", fontsize=10
    )
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return fig


def plot(rows, copy_gbps, out_dir, info):
    """speedup.png and bandwidth.png in out_dir, from the per-op rows; the paths written."""
    fused = [r for r in rows if r.kind == "op" and r.candidate == "fused" and not r.error]
    plt = _pyplot() if fused else None
    if plt is None:
        return []
    title = info.get("gpu") or info.get("cpu", "")
    paths = []
    for name, fig in (
        ("speedup.png", speedup_heatmaps(plt, fused, title)),
        ("bandwidth.png", bandwidth_panels(plt, fused, copy_gbps, title)),
    ):
        path = out_dir / name
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths
