"""The activation monitor's cost: a patched site's forward inside
fused_acts.monitor against the same forward outside it, and against the
unpatched module with the tutorials' hooks (check_dead_neurons'
``(out > 0).sum().item()``, check_saturation's ``(out.abs() > 0.9).float()
.mean().item()``, and a SmoothQuant-style per-channel amax), in inference
mode."""

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

import fused_acts

from . import cases
from .quantized import per_call_medians, timed_rows

SIZES = [(1, 4096), (32, 14336), (1024, 4096)]  # the last: 2^22 elements
QUICK_SIZES = [(1, 256), (8, 512)]
CANDIDATES = ["fused", "monitored", "eager", "eager_hooks"]


class PackedSwiGLU(nn.Module):
    """A hand-written SwiGLU on gate‖up, which patch() fuses."""

    def forward(self, x):
        gate, up = x.chunk(2, dim=-1)
        return F.silu(gate) * up


# patch() swaps an activation module in its parent: the GELU has one.
MODULES = {"swiglu_packed": PackedSwiGLU, "gelu": lambda: nn.Sequential(nn.GELU())}
OPS = list(MODULES)


def add_tutorial_hooks(module):
    """The hooks practitioners register on an activation module: a pass and a host sync each."""
    seen = {"active": [], "saturated": [], "amax": None}

    def hook(mod, args, out):
        seen["active"].append((out > 0).sum().item())
        seen["saturated"].append((out.abs() > 0.9).float().mean().item())
        amax = out.abs().reshape(-1, out.shape[-1]).amax(0)
        seen["amax"] = amax if seen["amax"] is None else torch.maximum(seen["amax"], amax)

    module.register_forward_hook(hook)
    return module


def bench_monitor(op, rows, cols, dtype, device, timer, args):
    """Rows for one op and shape: each candidate of CANDIDATES."""
    inputs = cases.make_inputs(op, rows, cols, dtype, device)
    eager = MODULES[op]().to(device)
    fused, monitored, hooked = (copy.deepcopy(eager) for _ in range(3))
    fused_acts.patch(fused)
    fused_acts.patch(monitored)
    modules = {"fused": fused, "monitored": monitored, "eager": eager, "eager_hooks": add_tutorial_hooks(hooked)}
    with torch.inference_mode(), fused_acts.monitor(monitored) as mon:
        problem = None if torch.equal(monitored(*inputs), fused(*inputs)) else "monitored output differs from fused"
        medians = {} if problem else per_call_medians(modules, inputs, rows * cols, timer, args)
    seen_rows = sum(s.rows for s in mon.stats.values())
    out_rows = timed_rows("monitor", device, dtype, op, "fwd", (rows, cols), CANDIDATES, medians, problem)
    for row in out_rows if not problem else []:
        name = row.candidate
        row.extra = {
            "vs_fused": medians[name] / medians["fused"],
            "vs_eager_hooks": medians["eager_hooks"] / medians[name],
        }
        if name == "monitored":
            row.extra["rows_seen"] = seen_rows
    return out_rows


def lines(monitor_rows):
    """The monitor's table: µs per call of each candidate, the monitored
    forward's cost over the plain fused one, and eager+hooks' over it."""
    if not monitor_rows:
        return []
    header = ["op", "dtype", "shape", "µs " + " / ".join(CANDIDATES), "monitor's cost", "× eager+hooks"]
    out = ["## Activation monitor", ""]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups = {}
    for r in monitor_rows:
        groups.setdefault((r.op, r.dtype, tuple(r.shape)), {})[r.candidate] = r
    ratios = []
    for (op, dtype, shape), by in groups.items():
        m = by["monitored"]
        if m.error:
            out.append(f"| {op} | {dtype} | {'×'.join(map(str, shape))} | {m.error} | | |")
            continue
        times = " / ".join(f"{by[c].median_ms * 1e3:.1f}" for c in CANDIDATES)
        ratios.append((m.extra["vs_fused"], m.extra["vs_eager_hooks"]))
        cells = [op, dtype, "×".join(map(str, shape)), times, f"{ratios[-1][0] - 1:+.0%}", f"{ratios[-1][1]:.1f}"]
        out.append("| " + " | ".join(cells) + " |")
    if ratios:
        over, under = zip(*ratios)
        out += [
            "",
            f"The monitor's cost over the fused forward: geometric mean {geomean(over) - 1:+.0%}, max "
            f"{max(over) - 1:+.0%}; × eager+hooks: geometric mean {geomean(under):.1f}, min {min(under):.1f}",
        ]
    return out + [
        "",
        "Inference mode. monitored: the fused forward inside fused_acts.monitor, its statistics gathered in the "
        "same pass; monitor's cost: its time over the plain fused forward's; × eager+hooks: the time of eager "
        "with forward hooks computing the same statistics ÷ monitored's.",
        "",
    ]


def geomean(values):
    return math.exp(sum(map(math.log, values)) / len(values))
