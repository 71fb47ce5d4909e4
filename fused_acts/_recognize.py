"""Finds fused_acts' activations in an fx graph by what the graph computes,
whatever the code's names, and rewrites each site into a call of
_fused_calls.py, which runs the fused op where the inputs allow it and
eager's own computation where they don't. patch() runs it on each module's
traced forward (submodules as leaves); the compile backend on each graph
that dynamo captures.

The sites, in the order they are taken:
1. a gated product act(a) * b, where act has a gated op family (SiLU, GELU,
   sigmoid, ReLU) and its output feeds only that product. a and b may be
   separate tensors, or the two halves of one tensor (chunk, split or
   slices; gate‖up, up‖gate or interleaved), which becomes the packed op,
   read in place. In a module's forward, a product that only feeds a
   submodule becomes down_proj(product), for recompute=True.
2. F.glu and nn.GLU: the packed GLU, value first.
3. any other activation with a fused unary op, called as a function (an
   activation module is replaced by patch() itself; the backend takes it
   here).
An activation in place (inplace=True) is never a site; neither is a
product whose activation is also used elsewhere (it must still be computed).
"""

import math
import operator
from collections import Counter

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.experimental.symbolic_shapes import statically_known_true, sym_eq

from . import _fused_calls
from ._activation_modules import QUICK_GELU_BETA
from ._activations import ACTIVATIONS, Act, gated_op
from ._recompute import has_hooks
from ._spellings import activation_of, arg_of, clamp_of, is_call_of, mul_factors, plus_constant


def _example(node):
    """The example tensor that dynamo recorded for node, if any."""
    value = node.meta.get("example_value", node.meta.get("val"))
    return value if isinstance(value, torch.Tensor) else None


def _width(node, modules):
    """node's last dim where the graph says it: an nn.Linear's output."""
    if node.op == "call_module" and type(modules.get(node.target)) is nn.Linear:
        return modules[node.target].out_features
    return None


def _cannot_match(gate, up, modules):
    """Whether gate and up are known not to be one shape and dtype, or to
    broadcast: up is a module's own tensor (a per-channel scale, say), or one
    is an nn.Linear's output of width 1 (Qwen-MoE's shared-expert gate). No
    fused op then; otherwise _fused_calls checks at run time."""
    if gate.op == "get_attr" or up.op == "get_attr":
        return True
    widths = {_width(gate, modules), _width(up, modules)} - {None}
    if 1 in widths or len(widths) > 1:
        return True
    a, b = _example(gate), _example(up)
    if a is None or b is None:
        return False
    return a.dtype != b.dtype or not statically_known_true(sym_eq(a.shape, b.shape))


def _half(node):
    """(x, halves, index, nodes) where node is the first (index 0) or second
    half of x, split as halves says (_fused_calls.py), by nodes; else None."""
    if not (isinstance(node, fx.Node) and node.op == "call_function" and node.target is operator.getitem):
        return None
    source, index = node.args
    if not isinstance(source, fx.Node):
        return None
    if index in (0, 1) and not isinstance(index, bool):
        x = arg_of(source, 0, ("input", "self", "tensor"))
        if is_call_of(source, (torch.chunk,), ("chunk",)) and arg_of(source, 1, "chunks") == 2:
            return x, ("chunk", arg_of(source, 2, "dim", 0)), index, (node, source)
        if is_call_of(source, (torch.split,), ("split",)):
            size = arg_of(source, 1, ("split_size_or_sections", "split_size"))
            return x, ("split", size, arg_of(source, 2, "dim", 0)), index, (node, source)
        return None
    if not (isinstance(index, tuple) and len(index) == 2 and index[0] is Ellipsis and isinstance(index[1], slice)):
        return None
    start, stop, step = index[1].start, index[1].stop, index[1].step
    if step in (None, 1) and start is None and stop is not None:
        return source, ("slice", stop), 0, (node,)
    if step in (None, 1) and start is not None and stop is None:
        return source, ("slice", start), 1, (node,)
    if step == 2 and stop is None and start in (None, 0, 1):
        return source, ("step",), int(start or 0), (node,)
    return None


def _halves_of(gate, up):
    """(x, halves, up_first, nodes) where gate and up are the two halves of one x."""
    gate_half, up_half = _half(gate), _half(up)
    if gate_half is None or up_half is None:
        return None
    if gate_half[0] is not up_half[0] or gate_half[1] != up_half[1] or gate_half[2] == up_half[2]:
        return None
    return gate_half[0], gate_half[1], up_half[2] == 0, (*gate_half[3], *up_half[3])


class _Rewriter:
    def __init__(self, graph, modules, module_sites):
        self.graph, self.modules, self.module_sites = graph, modules, module_sites
        self.counts = Counter()
        self.dead = set()

    def eager_module(self, node):
        """The activation module that node calls, for the eager fallback: a get_attr of it."""
        return self.graph.get_attr(node.target) if node.op == "call_module" else None

    def replace(self, old, fn, args, label, consumed):
        with self.graph.inserting_before(old):
            new = self.graph.call_function(fn, tuple(args(self)))
        old.replace_all_uses_with(new)
        self.dead.update((old, *consumed))
        self.counts[label] += 1

    def only_used_by(self, node, allowed):
        return all(user in allowed for user in node.users)

    def gated(self, mul):
        factors = mul_factors(mul)
        if factors is None or activation_of(mul, self.modules) is not None:  # a swish
            return
        clamped = self.clamped_swiglu(factors)
        if clamped is not None:
            return self.emit_gated(mul, *clamped)
        for act_node, up in (factors, factors[::-1]):
            found = activation_of(act_node, self.modules)
            if found is None or not isinstance(up, fx.Node) or up is act_node:
                continue
            act, gate, inner = found
            if gated_op(act) is None or len(act_node.users) != 1 or any(len(n.users) != 1 for n in inner):
                continue
            if _cannot_match(gate, up, self.modules):
                continue
            return self.emit_gated(mul, act, act_node, gate, up, inner)

    def clamped_swiglu(self, factors):
        """The clamped SwiGLUs, however named: GPT-OSS's,
        (clamp(u, -limit, limit) + 1) * swish_alpha(clamp(g, max=limit)), with
        any constant for the 1, and DeepSeek-V4's,
        silu(clamp(g, max=limit)) * clamp(u, -limit, limit). (act, act_node,
        g, u, inner), else None."""
        for act_node, up_side in (factors, factors[::-1]):
            offset = plus_constant(up_side)
            clamped_up, up_offset = offset if offset is not None else (up_side, 0.0)
            up_bounds = clamp_of(clamped_up)
            found = activation_of(act_node, self.modules)
            if up_bounds is None or found is None or found[0].name not in ("silu", "swish"):
                continue
            act, clamped_gate, act_inner = found
            gate_bounds = clamp_of(clamped_gate)
            if gate_bounds is None or gate_bounds[1] is not None:
                continue
            up, low, limit = up_bounds
            gate = gate_bounds[0]
            alpha = act.params[0] if act.params else 1.0
            if limit != gate_bounds[2] or low != -limit or not (0 < limit < math.inf) or not math.isfinite(alpha):
                continue
            up_nodes = (up_side, clamped_up) if offset is not None else (clamped_up,)
            inner = (*act_inner, clamped_gate, *up_nodes)
            single_use = (act_node, *act_inner, *up_nodes)
            if any(len(n.users) != 1 for n in single_use) or not self.only_used_by(clamped_gate, single_use):
                continue
            if _cannot_match(gate, up, self.modules):
                continue
            name = "clamped_silu" if act.name == "silu" else "clamped_swish"
            return Act(name, (float(alpha), float(limit), float(up_offset))), act_node, gate, up, inner
        return None

    def emit_gated(self, mul, act, act_node, gate, up, inner):
        consumed = (act_node, *inner)
        # A clamped form's eager is its formula: its module would see the unclamped gate.
        clamped = ACTIVATIONS[act.name].up is not None
        eager = lambda r: None if clamped else r.eager_module(act_node)  # noqa: E731
        down = next(iter(mul.users)) if len(mul.users) == 1 else None
        if not (self.module_sites and down is not None and self._is_call_of(down, mul)):
            down = None
        halves = _halves_of(gate, up)
        if halves is None:
            op = gated_op(act)
            if down is None:
                args = lambda r: (op, act, gate, up, eager(r))  # noqa: E731
                return self.replace(mul, _fused_calls.gated_product, args, op.label, consumed)
            args = lambda r: (op, act, r.module(down), gate, up, r.recompute_flag(), eager(r))  # noqa: E731
            return self.replace(down, _fused_calls.down_of_gated, args, op.label, (mul, *consumed))
        x, how, up_first, split_nodes = halves
        op = gated_op(act, interleaved=how[0] == "step", up_first=up_first)
        consumed = (*consumed, *split_nodes)
        if down is None:
            args = lambda r: (op, act, x, how, eager(r))  # noqa: E731
            return self.replace(mul, _fused_calls.packed_product, args, op.label, consumed)
        site = {mul, *consumed}
        projected = (
            self._is_call_of(x, x.args[0] if x.args else None)
            and self.only_used_by(x, site)
            and all(self.only_used_by(n, site) for n in split_nodes)
        )
        if not projected:
            args = lambda r: (op, act, r.module(down), x, how, r.recompute_flag(), eager(r))  # noqa: E731
            return self.replace(down, _fused_calls.down_of_packed, args, op.label, (mul, *consumed))
        args = lambda r: (  # noqa: E731
            op,
            act,
            r.module(x),
            r.module(down),
            x.args[0],
            how,
            r.recompute_flag(),
            eager(r),
        )
        return self.replace(down, _fused_calls.down_of_projected, args, op.label, (mul, *consumed, x))

    def module(self, call):
        """A get_attr of the submodule that call calls."""
        return self.graph.get_attr(call.target)

    def recompute_flag(self):
        return self.graph.get_attr("_fused_acts_recompute")

    @staticmethod
    def _is_call_of(node, arg):
        """Whether node calls a submodule on arg alone."""
        return node.op == "call_module" and node.args == (arg,) and not node.kwargs and isinstance(arg, fx.Node)

    def glu(self, node):
        if is_call_of(node, (F.glu,)):
            x, dim, eager = arg_of(node, 0, "input"), arg_of(node, 1, "dim", -1), None
        elif node.op == "call_module" and type(self.modules.get(node.target)) is nn.GLU and len(node.args) == 1:
            module = self.modules[node.target]
            if has_hooks(module):
                return
            x, dim, eager = node.args[0], module.dim, node
        else:
            return
        if isinstance(x, fx.Node) and not node.kwargs.keys() - {"input", "dim"}:
            op = gated_op(Act("sigmoid"), up_first=True)
            args = lambda r: (op, Act("sigmoid"), x, ("glu", dim), eager and r.eager_module(eager))  # noqa: E731
            self.replace(node, _fused_calls.packed_product, args, op.label, ())

    def unary(self, node):
        if node.op == "call_module" and self.module_sites:
            return
        found = activation_of(node, self.modules)
        if found is None:
            return
        act, x, inner = found
        if ACTIVATIONS[act.name].unary is None or any(len(n.users) != 1 for n in inner):
            return
        self.replace(node, _fused_calls.unary, lambda r: (act, x), _unary_label(act), inner)

    def erase_dead(self):
        for node in reversed(list(self.graph.nodes)):
            if node in self.dead and not node.users:
                self.graph.erase_node(node)
        self.dead.clear()

    def run(self):
        for visit in (self.gated, self.glu):
            for node in list(self.graph.nodes):
                if node not in self.dead:
                    visit(node)
            self.erase_dead()
        for node in list(self.graph.nodes):
            if node not in self.dead:
                self.unary(node)
        self.erase_dead()
        return self.counts


def _unary_label(act):
    if act.name == "swish" and act.params == (QUICK_GELU_BETA,):
        return "QuickGELU"
    return ACTIVATIONS[act.name].label


def rewrite(graph, modules, module_sites=False):
    """Rewrites every site in graph, in place; returns their counts by label.
    modules: the graph's submodules by target. module_sites: the graph is a
    module's forward (patch()): activation modules stay (patch() replaces
    them), and a product that only feeds a submodule is fused with it, which
    reads the module's _fused_acts_recompute."""
    return _Rewriter(graph, modules, module_sites).run()
