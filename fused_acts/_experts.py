"""MoE experts whose gate patch fuses: transformers 5's experts call
_apply_gate(gate_up) on the packed gate_up projection from a forward that
does not trace, so the gate is recognised by its method's source (its
input's name, annotations and docstring aside): transformers' default
(act_fn(gate) * up on gate‖up) or GPT-OSS's clamped SwiGLU, interleaved or
not. It then runs as one packed op."""

import ast
import functools
import inspect
import math
import textwrap

from . import ops
from ._activation_modules import module_activation
from ._activations import GatedOp, gated_op
from ._op_call import gated

# Each form's source -> what it computes, "act_fn" or GPT-OSS's clamped
# SwiGLU, and whether gate and up are interleaved.
_EXPERT_GATE_FORMS = {
    """
def _apply_gate(self, x):
    gate, up = x.chunk(2, dim=-1)
    return self.act_fn(gate) * up
""": ("act_fn", False),
    """
def _apply_gate(self, x):
    gate, up = x[..., ::2], x[..., 1::2]
    gate = gate.clamp(min=None, max=self.limit)
    up = up.clamp(min=-self.limit, max=self.limit)
    glu = gate * torch.sigmoid(gate * self.alpha)
    gated_output = (up + 1) * glu
    return gated_output
""": ("clamped_swiglu", True),
    """
def _apply_gate(self, x):
    gate, up = x.chunk(2, dim=-1)
    gate = gate.clamp(min=None, max=self.limit)
    up = up.clamp(min=-self.limit, max=self.limit)
    glu = gate * torch.sigmoid(gate * self.alpha)
    gated_output = (up + 1) * glu
    return gated_output
""": ("clamped_swiglu", False),
}


def _fused_experts_gate(self, gate_up):
    if self._fused_acts_kind == "clamped_swiglu":
        return ops.clamped_swiglu(gate_up, alpha=self.alpha, limit=self.limit, interleaved=self._fused_acts_interleaved)
    return gated(self._fused_acts_op, gate_up)


def _normalized(source):
    """ast.dump of a method(self, input) with the input renamed x, the
    method named f, and its annotations and docstring dropped; None for any
    other signature or a decorated one."""
    try:
        fn = ast.parse(textwrap.dedent(source)).body[0]
    except (SyntaxError, IndexError):
        return None
    if not isinstance(fn, ast.FunctionDef) or fn.decorator_list:
        return None
    args = fn.args
    if len(args.args) != 2 or args.posonlyargs or args.vararg or args.kwonlyargs or args.kwarg or args.defaults:
        return None
    if fn.body and isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant):
        fn.body = fn.body[1:]  # a docstring
    name = args.args[1].arg
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and node.id == name:
            node.id = "x"
    args.args[1].arg = "x"
    fn.name = "f"
    for arg in args.args:
        arg.annotation = None
    fn.returns = None
    return ast.dump(fn)


_EXPERT_GATES = {_normalized(source): form for source, form in _EXPERT_GATE_FORMS.items()}


@functools.cache
def _experts_gate_form(cls):
    """What cls's _apply_gate computes, where its source is one of the forms we know, else None."""
    method = getattr(cls, "_apply_gate", None)
    try:
        source = inspect.getsource(getattr(method, "__func__", method))
    except (OSError, TypeError):
        return None
    return _EXPERT_GATES.get(_normalized(source))


def experts_gate_methods(module):
    """The fused _apply_gate and counts for MoE experts whose gate is a form
    we know, with an activation or params we fuse; else None."""
    form = _experts_gate_form(type(module))
    if form is None:
        return None
    kind, interleaved = form
    if kind == "act_fn":
        act = module_activation(getattr(module, "act_fn", None))
        op = act and gated_op(act, interleaved=interleaved)
        if op is None or op.family not in ("swiglu", "geglu"):
            return None
        module._fused_acts_op = op
    elif _clamped_swiglu_params(getattr(module, "alpha", None), getattr(module, "limit", None)):
        op = GatedOp("clamped_swiglu")
    else:
        return None
    module._fused_acts_kind = kind
    module._fused_acts_interleaved = interleaved
    return {"_apply_gate": _fused_experts_gate}, {f"{op.label}Experts": 1}


def _clamped_swiglu_params(alpha, limit):
    """Whether alpha and limit are ones clamped_swiglu takes (else eager's gate stays)."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (alpha, limit))
    return numbers and math.isfinite(alpha) and limit > 0
