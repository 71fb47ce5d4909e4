"""How eager code spells each activation of _activations.py, in an fx
graph: activation_of(node) says whether a node computes one, and which
(F.silu(x), x * torch.sigmoid(x), an activation module, relu(x) squared,
a GELU written out as its formula, ...), whatever the code's names.
_recognize.py finds the sites around them."""

import math
import operator

import torch
import torch.nn.functional as F
from torch import fx

from ._activation_modules import module_activation
from ._activations import Act


def is_call_of(node, functions=(), methods=()):
    if node.op == "call_function":
        return node.target in functions
    return node.op == "call_method" and node.target in methods


def arg_of(node, index, names, default=None):
    """An argument given by position or by one of its names."""
    if len(node.args) > index:
        return node.args[index]
    for name in (names,) if isinstance(names, str) else names:
        if name in node.kwargs:
            return node.kwargs[name]
    return default


_MULS = ((operator.mul, torch.mul, torch.Tensor.mul), ("mul",))


def mul_factors(node):
    """(a, b) where node is a * b of two graph values, else None."""
    if is_call_of(node, *_MULS) and len(node.args) == 2 and not node.kwargs:
        return node.args
    return None


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def clamp_of(node):
    """(x, min, max) where node is x clamped (clamp, clip, clamp_max,
    clamp_min; a bound None or a number), else None."""
    if not isinstance(node, fx.Node):
        return None
    x = arg_of(node, 0, ("input", "self"))
    if is_call_of(node, (torch.clamp, torch.clip), ("clamp", "clip")):
        bounds = arg_of(node, 1, "min"), arg_of(node, 2, "max")
    elif is_call_of(node, (torch.clamp_max,), ("clamp_max",)):
        bounds = None, arg_of(node, 1, "max")
    elif is_call_of(node, (torch.clamp_min,), ("clamp_min",)):
        bounds = arg_of(node, 1, "min"), None
    else:
        return None
    if not isinstance(x, fx.Node) or not all(b is None or _is_number(b) for b in bounds):
        return None
    return x, *bounds


def plus_constant(node):
    """(x, c) where node is x + c for a finite number c (either order), else None."""
    if not isinstance(node, fx.Node):
        return None
    if not (is_call_of(node, (operator.add, torch.add), ("add",)) and len(node.args) == 2 and not node.kwargs):
        return None
    for x, c in (node.args, node.args[::-1]):
        if isinstance(x, fx.Node) and _is_number(c) and math.isfinite(c):
            return x, c
    return None


def activation_of(node, modules):
    """(act, x, inner) where node computes act(x) and inner are the nodes
    between x and node, which node alone must use; else None."""
    if not isinstance(node, fx.Node):
        return None
    if node.op == "call_module":
        act = module_activation(modules.get(node.target))
        if act is None or len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], fx.Node):
            return None
        return act, node.args[0], ()
    x = arg_of(node, 0, ("input", "self"))
    if not isinstance(x, fx.Node) or "out" in node.kwargs:
        return None
    inplace = arg_of(node, 1, "inplace", False)
    if is_call_of(node, (F.silu,)) and not inplace:
        return Act("silu"), x, ()
    if is_call_of(node, (F.mish,)) and not inplace:
        return Act("mish"), x, ()
    if is_call_of(node, (F.gelu,)):
        approximate = arg_of(node, 1, "approximate", "none")
        return (Act("gelu", (approximate,)), x, ()) if approximate in ("none", "tanh") else None
    if is_call_of(node, (torch.sigmoid, F.sigmoid, torch.special.expit), ("sigmoid",)) and len(node.args) == 1:
        return Act("sigmoid"), x, ()
    if is_call_of(node, (torch.relu, F.relu), ("relu",)) and not (node.target is F.relu and inplace):
        return Act("relu"), x, ()
    return _relu_squared(node, modules) or _swish(node, modules) or _hand_written(node)


def _relu_squared(node, modules):
    """relu(x) squared: torch.square, .square(), ** 2, pow(., 2) or r * r."""
    if is_call_of(node, (torch.square,), ("square",)) and len(node.args) == 1:
        base = node.args[0]
    elif is_call_of(node, (operator.pow, torch.pow), ("pow",)) and len(node.args) == 2 and node.args[1] == 2:
        base = node.args[0]
    elif mul_factors(node) and node.args[0] is node.args[1]:
        base = node.args[0]
    else:
        return None
    found = activation_of(base, modules)
    if found is None or found[0].name != "relu" or len(base.users) != 1:
        return None
    return Act("relu_squared"), found[1], (base,)


def _swish(node, modules):
    """x * sigmoid(beta * x), in any order: SiLU at beta = 1."""
    factors = mul_factors(node)
    if factors is None:
        return None
    for x, s in (factors, factors[::-1]):
        found = activation_of(s, modules)
        if found is None or found[0].name != "sigmoid" or len(s.users) != 1:
            continue
        z = found[1]
        if z is x:
            return Act("silu"), x, (s,)
        scaled = mul_factors(z)
        if scaled is None or len(z.users) != 1:
            continue
        for beta, y in (scaled, scaled[::-1]):
            if y is x and _is_number(beta) and beta != 0:
                return (Act("silu") if beta == 1 else Act("swish", (float(beta),))), x, (s, z)
    return None


# Pure elementwise ops that a formula written out by hand is made of.
_ELEMENTWISE_FUNCTIONS = {
    operator.mul, operator.add, operator.sub, operator.truediv, operator.neg, operator.pow,
    torch.mul, torch.add, torch.sub, torch.div, torch.pow, torch.neg, torch.square, torch.reciprocal,
    torch.tanh, torch.erf, torch.exp, torch.sqrt, torch.rsqrt, torch.sigmoid, torch.special.erf,
}  # fmt: skip
_ELEMENTWISE_METHODS = {"mul", "add", "sub", "div", "neg", "pow", "square", "reciprocal", "tanh", "erf", "exp"}
_ELEMENTWISE_METHODS |= {"sqrt", "rsqrt", "sigmoid"}
_FORMULA_NODES = 32

# Activations that code writes out as formulas, by their float64 function.
_FORMULAS = {
    Act("gelu", ("none",)): lambda x: F.gelu(x),
    Act("gelu", ("tanh",)): lambda x: F.gelu(x, approximate="tanh"),
}
# Where a formula is one of them: its float64 values at these points are
# within this relative distance of the activation's (constants rounded to
# float32 are off by about 1e-8; tanh-GELU is 1e-3 from erf-GELU).
_PROBE = torch.cat([torch.linspace(-8.0, 8.0, 161, dtype=torch.float64), torch.tensor([-30.0, 30.0, 1e-3, -1e-3])])
_SAME_FUNCTION_RTOL = 1e-6


def _is_elementwise(node):
    if node.op == "call_function":
        return node.target in _ELEMENTWISE_FUNCTIONS
    return node.op == "call_method" and node.target in _ELEMENTWISE_METHODS


def _formula(node):
    """(x, nodes) where node is an elementwise formula of one graph value x
    and numbers (nodes: node and the formula's other nodes, in graph order),
    else None."""
    nodes, leaves, todo = set(), set(), [node]
    while todo:
        n = todo.pop()
        if n in nodes:
            continue
        if not _is_elementwise(n) or n.kwargs or len(nodes) == _FORMULA_NODES:
            return None
        nodes.add(n)
        for arg in n.args:
            if isinstance(arg, fx.Node) and _is_elementwise(arg):
                todo.append(arg)
            elif isinstance(arg, fx.Node):
                leaves.add(arg)
            elif not _is_number(arg):
                return None
    if len(leaves) != 1 or len(nodes) < 3:
        return None
    order = {n: i for i, n in enumerate(node.graph.nodes)}
    return next(iter(leaves)), sorted(nodes, key=order.__getitem__)


def _evaluate(x_node, nodes, x):
    values = {x_node: x}
    for n in nodes:
        args = [values[a] if isinstance(a, fx.Node) else a for a in n.args]
        values[n] = n.target(*args) if n.op == "call_function" else getattr(args[0], n.target)(*args[1:])
    return values[nodes[-1]]


def same_function(fn, backward=False):
    """The activation that fn computes (and, with backward, whose derivative
    its gradient is), by their float64 values at probe points; else None."""
    x = _PROBE.clone().requires_grad_(backward)
    try:
        y = fn(x)
        grad = torch.autograd.grad(y.sum(), x)[0] if backward else None
    except Exception:
        return None
    for act, reference in _FORMULAS.items():
        expected = reference(x)
        if not _close(y, expected):
            continue
        if backward and not _close(grad, torch.autograd.grad(expected.sum(), x)[0]):
            continue
        return act
    return None


def _close(a, b):
    return (
        isinstance(a, torch.Tensor)
        and a.shape == b.shape
        and bool(((a - b).abs() <= _SAME_FUNCTION_RTOL * (1 + b.abs())).all())
    )


def _hand_written(node):
    """An activation written out as its formula, such as BLOOM's tanh-GELU
    x * 0.5 * (1.0 + torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x))):
    the same function (docs/design.md) as one of _FORMULAS."""
    found = _formula(node)
    if found is None:
        return None
    x, nodes = found
    with torch.no_grad():
        act = same_function(lambda probe: _evaluate(x, nodes, probe.detach()))
    return None if act is None else (act, x, tuple(n for n in nodes if n is not node))
