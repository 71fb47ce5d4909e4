"""How eager code spells each activation of _activations.py, in an fx
graph: activation_of(node) says whether a node computes one, and which
(F.silu(x), x * torch.sigmoid(x), an activation module, relu(x) squared,
...), whatever the code's names. _recognize.py finds the sites around
them."""

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
    return _relu_squared(node, modules) or _swish(node, modules)


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
