"""Activation statistics from the fused forward's own pass:
``fused_acts.monitor(model)``. docs/design.md defines each statistic and
each activation's saturation threshold."""

import math
from dataclasses import dataclass

import torch

from . import _op_call
from . import nn as fnn
from ._checks import MAX_HISTOGRAM_BINS, NUM_STATS
from ._patching import is_patched, patch_unpatched, restore_patched

__all__ = ["monitor", "Monitor", "SiteStats", "HISTOGRAM_RANGE"]

_OPS = torch.ops.fused_acts
_ROWS, _ACTIVE, _SATURATED, _AMAX, _SUM, _SUMSQ = range(NUM_STATS)  # csrc/monitor.h's MonitorStat

HISTOGRAM_RANGE = (-8.0, 8.0)
"""The gate values that the histogram's bins span; the outer bins also take what lies beyond."""


@dataclass(frozen=True)
class SiteStats:
    """One site's statistics, per channel (the last dim of the activation's
    output h), over every row seen. The activation's input g is the gate, for
    a gated op."""

    activation: str
    """The fused op and its params: "swiglu", "gelu(tanh)"."""
    rows: int
    """Rows (tokens) seen."""
    active: torch.Tensor
    """int64: rows where g > 0, that is, where the activation's output is."""
    saturated: torch.Tensor
    """int64: rows where g lies where the activation's derivative is below 1e-3 in magnitude."""
    amax: torch.Tensor
    """float64: max |h| (exactly, as h is stored)."""
    sum: torch.Tensor
    """float64: the sum of h."""
    sumsq: torch.Tensor
    """float64: the sum of h²."""
    histogram: torch.Tensor | None
    """int64: g's count per bin over HISTOGRAM_RANGE, where the monitor has bins."""

    @property
    def channels(self):
        return self.active.numel()

    @property
    def active_fraction(self):
        """Per channel."""
        return self.active / max(self.rows, 1)

    @property
    def dead(self):
        """Per channel: never active, over rows > 0."""
        return (self.active == 0) & (self.rows > 0)

    @property
    def saturated_fraction(self):
        """Over every element."""
        return self.saturated.sum().item() / max(self.rows * self.channels, 1)

    @property
    def mean(self):
        """Per channel."""
        return self.sum / max(self.rows, 1)

    @property
    def rms(self):
        """Per channel."""
        return (self.sumsq / max(self.rows, 1)).sqrt()


class _Accumulators:
    """One fused op's running statistics at a site, on its device."""

    def __init__(self, activation, channels, device, bins):
        self.activation = activation
        self.stats = torch.zeros(NUM_STATS, channels, dtype=torch.float64, device=device)
        self.histogram = torch.zeros(bins, dtype=torch.float64, device=device)

    def read(self):
        stats = self.stats.cpu()
        rows = int(stats[_ROWS, 0].item()) if stats.shape[1] else 0
        histogram = self.histogram.cpu().long() if self.histogram.numel() else None
        return SiteStats(
            self.activation,
            rows,
            stats[_ACTIVE].long(),
            stats[_SATURATED].long(),
            stats[_AMAX].clone(),
            stats[_SUM].clone(),
            stats[_SUMSQ].clone(),
            histogram,
        )


def _activation_label(name, params):
    family = name.removesuffix("_packed")
    return f"{family}({', '.join(map(str, params))})" if params else family


class _Site:
    """A module that runs fused ops: what its forward's fused calls add to."""

    def __init__(self, name, bins):
        self.name, self.bins = name, bins
        self.accumulators = {}

    def call(self, name, args):
        """torch.ops.fused_acts.<name>(*args), monitored."""
        x = args[0]
        if type(x) is not torch.Tensor:  # a DTensor (tensor parallelism) or another subclass
            return getattr(_OPS, name)(*args)
        packed = name.endswith("_packed")
        # After the tensors (x, or gate and up), and before a packed op's layout flags.
        if packed:
            params = args[1:-2]
        else:
            params = args[2:] if len(args) > 1 and isinstance(args[1], torch.Tensor) else args[1:]
        channels = (x.shape[-1] // 2 if packed else x.shape[-1]) if x.dim() else 1
        key = (name.removesuffix("_packed"), params, channels, x.device)
        acc = self.accumulators.get(key)
        if acc is None:
            acc = self.accumulators[key] = _Accumulators(_activation_label(name, params), channels, x.device, self.bins)
        return getattr(_OPS, f"{name}_monitored")(*args, stats=acc.stats, histogram=acc.histogram)


def _is_site(module):
    """Whether module runs fused ops of its own: patched, or one of fused_acts.nn's."""
    return is_patched(module) or type(module).__module__ == fnn.__name__


def _compiled(module):
    return isinstance(module, torch._dynamo.eval_frame.OptimizedModule) or (
        getattr(module, "_compiled_call_impl", None) is not None
    )


class Monitor:
    """Statistics of every fused activation site of a model, computed by the
    fused forward kernels as they store their outputs: on device, with no
    host sync per call, accumulated across calls until read. Use it as a
    context manager (``with fused_acts.monitor(model) as mon``); sites that
    are not patched are patched inside it and restored after.

    Each site runs eagerly (torch.compiler.disable): under torch.compile the
    rest of the model is compiled, each site a graph break. A recomputed
    forward (activation checkpointing) is counted again."""

    def __init__(self, model, bins=0):
        if isinstance(bins, bool) or not isinstance(bins, int) or not 0 <= bins <= MAX_HISTOGRAM_BINS:
            raise ValueError(f"monitor: bins must be an int from 0 to {MAX_HISTOGRAM_BINS}, got {bins!r}")
        self.model, self.bins = model, bins
        self._sites = {}
        self._entered = None

    def __enter__(self):
        if self._entered is not None:
            raise RuntimeError("monitor: this monitor is active already")
        if any(_compiled(m) for m in self.model.modules()):
            raise RuntimeError(
                "monitor: the model is compiled already, and its compiled code would run without the monitor; "
                "monitor the module itself (compiled_model._orig_mod), and compile it inside the monitor if you need to"
            )
        patched = patch_unpatched(self.model)
        wrapped = []
        for name, module in self.model.named_modules():
            if _is_site(module):
                site = self._sites.setdefault(name, _Site(name, self.bins))
                wrapped.append((module, vars(module).get("forward")))
                module.forward = _monitored_forward(site, module.forward)
        self._entered = patched, wrapped
        return self

    def __exit__(self, *exc):
        patched, wrapped = self._entered
        self._entered = None
        for module, forward in wrapped:
            if forward is None:
                del module.forward
            else:
                module.forward = forward
        restore_patched(patched)
        return False

    def reset(self):
        """Forget every statistic so far."""
        for site in self._sites.values():
            site.accumulators.clear()

    @property
    def stats(self):
        """{site: SiteStats}, by the qualified name of the module that runs the
        fused op (a second op at the same site, of another activation, width
        or device, under "name#2", ...). Reading them waits for the device."""
        stats = {}
        for name, site in self._sites.items():
            for k, acc in enumerate(site.accumulators.values()):
                stats[name if k == 0 else f"{name}#{k + 1}"] = acc.read()
        return stats

    def report(self, active_below=0.1, dead_above=1):
        """A table, one row per site, then warnings where a site's active
        fraction is under active_below or its dead channels exceed dead_above."""
        header = ("site", "activation", "rows", "channels", "active %", "dead", "saturated %", "amax", "mean", "rms")
        rows, warnings = [], []
        for name, s in self.stats.items():
            elements = max(s.rows * s.channels, 1)
            active = s.active.sum().item() / elements
            dead = int(s.dead.sum())
            rows.append(
                (
                    name,
                    s.activation,
                    f"{s.rows}",
                    f"{s.channels}",
                    f"{100 * active:.1f}",
                    f"{dead}",
                    f"{100 * s.saturated_fraction:.1f}",
                    f"{s.amax.max().item() if s.channels else 0.0:.4g}",
                    f"{s.sum.sum().item() / elements:.4g}",
                    f"{math.sqrt(s.sumsq.sum().item() / elements):.4g}",
                )
            )
            if s.rows and active < active_below:
                warnings.append(f"{name}: {100 * active:.1f}% active, under {100 * active_below:g}%")
            if dead > dead_above:
                warnings.append(f"{name}: {dead} dead channels (never active) of {s.channels}")
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
        lines = [
            "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
            for r in (header, *rows)
        ]
        lines += [f"warning: {w}" for w in warnings]
        return "\n".join(lines)

    def plot(self, path=None):
        """Per site: the active fraction and amax per channel (outlier
        channels stand out), and the gate's histogram where the monitor has
        bins. Saved to path if given; returns the matplotlib figure."""
        try:
            import matplotlib

            if path is not None:
                matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError as error:
            raise ImportError("monitor.plot needs matplotlib: pip install 'fused_acts[bench]'") from error
        stats = self.stats
        columns = 3 if self.bins else 2
        fig, axes = plt.subplots(
            max(len(stats), 1), columns, figsize=(4.2 * columns, 2.2 * max(len(stats), 1)), squeeze=False
        )
        for row, (name, s) in zip(axes, stats.items()):
            channels = range(s.channels)
            row[0].plot(channels, s.active_fraction.numpy(), lw=0.6)
            row[0].set(ylim=(0, 1), ylabel="active fraction", title=f"{name} ({s.activation})")
            row[1].plot(channels, s.amax.numpy(), lw=0.6, color="tab:red")
            row[1].set(ylabel="amax", title="amax per channel")
            if self.bins:
                lo, hi = HISTOGRAM_RANGE
                edges = torch.linspace(lo, hi, self.bins + 1)
                row[2].stairs(s.histogram.numpy(), edges.numpy(), fill=True)
                row[2].set(title="gate histogram", xlabel="gate")
        for ax in axes[-1][:2]:
            ax.set_xlabel("channel")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


def _monitored_forward(site, forward):
    def monitored_forward(*args, **kwargs):
        outer = _op_call.site
        _op_call.site = site
        try:
            return forward(*args, **kwargs)
        finally:
            _op_call.site = outer

    return torch.compiler.disable(monitored_forward)


def monitor(model: torch.nn.Module, *, bins: int = 0) -> Monitor:
    """A Monitor of model's fused activations (see Monitor): use it as
    ``with fused_acts.monitor(model) as mon:``. bins: the gate's histogram
    per site, that many bins over HISTOGRAM_RANGE (0: none; each bin count
    costs a scattered add per element)."""
    return Monitor(model, bins)
