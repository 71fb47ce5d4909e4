"""Calling a fused op, monitored or not: the one place every fused call goes
through (ops.py's functions, and the sites that patch and the compile
backend install). While a monitored site's forward runs, `site` is it
(_monitor.py), and the call runs the op's monitored twin through
site.call(op name, args); outside a monitor, the `site is None` check is all
it costs."""

import torch

_OPS = torch.ops.fused_acts

site = None


def call(name, args):
    """torch.ops.fused_acts.<name>(*args), through the monitored site if one runs."""
    if site is not None:
        return site.call(name, args)
    return getattr(_OPS, name)(*args)


def gated(op, gate, up=None):
    """act(gate) * up as one fused op, a GatedOp (up=None: gate is packed as op says)."""
    if up is None:
        return call(f"{op.family}_packed", (gate, *op.params, op.interleaved, op.up_first))
    return call(op.family, (gate, up, *op.params))
