"""One call to put the fused activations into a model, and one to take them out.

patch(model) replaces, in place:
- activation modules whose function is exactly one of ours: torch.nn.GELU,
  SiLU and Mish, and transformers' GELU (erf), gelu_new, gelu_pytorch_tanh,
  gelu_fast, SiLU/swish, Mish, quick_gelu and relu2 activations;
- every module's forward that computes a fused activation, recognised by
  its computation (_recognize.py) on the forward's torch.fx trace, with its
  submodules as leaves: act(gate) * up (SwiGLU, GeGLU, GLU, ReGLU, separate
  or the halves of one tensor), F.glu, and the activations called as
  functions. The module then runs that trace with the fused ops in, which
  fall back to eager's own computation wherever an input would make them
  differ (a broadcast, a dtype promotion). A forward that does not trace
  (data-dependent control flow, *args or **kwargs) is left as it is; its
  submodules are still visited;
- the gate of MoE experts whose _apply_gate (transformers 5's experts
  implementations call it on the packed gate_up projection, from a forward
  that does not trace) is, as source text, transformers' default (Mixtral,
  Qwen-MoE, DeepSeek, OLMoE, ...) or GPT-OSS's clamped form, interleaved or
  not, which then runs as one packed op.

Anything else is left alone: a lookalike with a different function would
silently change the model. So is an activation module with hooks, or in
place, which would stop firing or writing.

A traced forward is fixed to what it did at patch() time where it read
plain Python values: the module's non-tensor attributes, and arguments
left at their defaults (a call that passes another value runs the original
forward). It is traced in training and in eval mode, and runs the trace of
its mode.
"""

import ast
import functools
import inspect
import math
import textwrap
from collections import Counter

from torch import fx, nn

from . import nn as fnn
from . import ops
from ._activations import ACTIVATIONS, GatedOp, gated_op
from ._recognize import QUICK_GELU_BETA, module_activation, rewrite
from ._recompute import gated

__all__ = ["patch", "unpatch"]

# MoE experts' _apply_gate(gate_up), as source: their forward loops over the
# experts hit, which does not trace, so the gate is matched by its method's
# source, its input's name, annotations and docstring aside. Value: what it
# computes, "act_fn" (act_fn(gate) * up on gate‖up) or GPT-OSS's clamped
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

_ORIGINAL = "_fused_acts_original"


def _fused_module(act):
    """The fused module for an activation module computing act, or None."""
    if ACTIVATIONS[act.name].unary is None:
        return None
    if act.name == "gelu":
        return fnn.GELU(*act.params)
    if act.name == "swish":
        return fnn.QuickGELU() if act.params == (QUICK_GELU_BETA,) else fnn.Swish(*act.params)
    return {"silu": fnn.SiLU, "mish": fnn.Mish, "relu_squared": fnn.ReLUSquared}[act.name]()


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


class _LeafTracer(fx.Tracer):
    """Traces one module's forward, every submodule a leaf (patch visits each itself)."""

    def is_leaf_module(self, module, qualname):
        return True


def _traced_forward(module, defaults):
    """module's forward, traced with its defaulted arguments at their
    defaults and rewritten: (code, counts), or None where it does not trace
    or has nothing to fuse."""
    before = dict(vars(module))
    try:
        graph = _LeafTracer().trace(module, concrete_args=defaults)
    except Exception:
        return None
    finally:
        changed = vars(module).keys() != before.keys() or any(vars(module)[k] is not v for k, v in before.items())
        if changed:  # the forward set an attribute: a side effect the trace would drop
            vars(module).clear()
            vars(module).update(before)
    if changed:
        return None
    counts = rewrite(graph, dict(module.named_modules()), module_sites=True)
    if not counts:
        return None
    graph.lint()
    return graph.python_code(root_module="self"), dict(counts)


def _compiled(code):
    """The function that an fx PythonCode defines."""
    namespace = dict(code.globals)
    exec(compile(code.src, "<fused_acts.patch>", "exec"), namespace)
    return namespace["forward"]


def _signature_parts(cls):
    """(signature, required names, defaults) of cls.forward, its arguments
    after self, or None where it takes *args, **kwargs or keyword-only
    arguments."""
    try:
        signature = inspect.signature(cls.forward)
    except (TypeError, ValueError):
        return None
    parameters = list(signature.parameters.values())[1:]
    if any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters):
        return None
    required = tuple(p.name for p in parameters if p.default is p.empty)
    defaults = {p.name: p.default for p in parameters if p.default is not p.empty}
    return signature, required, defaults


def _at_default(value, default):
    if value is default:
        return True
    return isinstance(default, (bool, int, float, str)) and type(value) is type(default) and value == default


_PATCHED_CLASSES = {}


def _patched_class(cls, methods):
    """A subclass of cls with the fused methods, one per (cls, methods).
    Swapping the instance's class (rather than binding a method to it)
    keeps isinstance checks; deepcopy and pickling rebuild the original class
    and patch it again (_repatched)."""
    key = (cls, tuple(sorted(methods.items(), key=lambda item: item[0])))
    if key not in _PATCHED_CLASSES:
        attributes = {**methods, "_fused_acts_base": cls, "__reduce_ex__": _reduce_ex}
        _PATCHED_CLASSES[key] = type(f"Fused{cls.__name__}", (cls,), attributes)
    return _PATCHED_CLASSES[key]


def _reduce_ex(self, protocol):
    base = type(self)._fused_acts_base
    state = {key: value for key, value in vars(self).items() if not key.startswith("_fused_acts_")}
    return _repatched, (base, state, self._fused_acts_recompute)


def _repatched(base, state, recompute):
    module = base.__new__(base)
    module.__dict__.update(state)
    _patch_module(module, recompute)
    return module


_FUSED_FORWARDS = {}


def _fused_forward(cls, parts, train_code, eval_code):
    """The forward that runs the rewritten trace of the module's mode, one per
    (class, traces)."""
    key = (cls, train_code.src, eval_code.src)
    if key in _FUSED_FORWARDS:
        return _FUSED_FORWARDS[key]
    by_mode = {True: _compiled(train_code), False: _compiled(eval_code)}
    signature, required, defaults = parts

    def forward(self, *args, **kwargs):
        traced = by_mode[self.training]
        if not kwargs and len(args) == len(required):
            return traced(self, *args)
        try:
            bound = signature.bind(self, *args, **kwargs).arguments
        except TypeError:
            return cls.forward(self, *args, **kwargs)  # fails as the original does
        if not all(_at_default(bound[name], default) for name, default in defaults.items() if name in bound):
            return cls.forward(self, *args, **kwargs)
        return traced(self, *(bound[name] for name in required))

    _FUSED_FORWARDS[key] = forward
    return forward


def _patch_forward(module):
    """The fused methods and counts for a module whose forward computes fused
    activations, else None."""
    cls = type(module)
    # torch's and our modules, and activation modules (patch() replaces
    # them), are leaves of their parents' traces.
    if cls.__module__.startswith(("torch.", "fused_acts.")) or module_activation(module) is not None:
        return None
    parts = _signature_parts(cls)
    if parts is None or "forward" in vars(module):
        return None
    training = module.training
    traced = {}
    try:
        for mode in (True, False):
            module.training = mode
            traced[mode] = _traced_forward(module, parts[2])
            if traced[mode] is None:
                return None
    finally:
        module.training = training
    forward = _fused_forward(cls, parts, traced[True][0], traced[False][0])
    return {"forward": forward}, traced[True][1]


def _patch_experts_gate(module):
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


def _patch_module(module, recompute):
    """Patch one module's own computation; returns its counts (empty where
    there is nothing to fuse, or it is patched already: then only recompute
    is updated)."""
    if is_patched(module):
        module._fused_acts_recompute = recompute
        return {}
    found = _patch_forward(module) or _patch_experts_gate(module)
    if found is None:
        return {}
    methods, counts = found
    module._fused_acts_recompute = recompute
    module._fused_acts_counts = counts
    module.__class__ = _patched_class(type(module), methods)
    return counts


def patch(model: nn.Module, recompute: bool = False) -> dict:
    """Swap in fused activations, in place. Returns what was replaced, counted
    by kind: "GELU", "SiLU", "Mish", "QuickGELU", "Swish", "ReLUSquared" for
    activations; "SwiGLU", "GeGLU", "GLU", "ReGLU" for gated products; and
    for MoE experts' gates "SwiGLUExperts", "GeGLUExperts",
    "ClampedSwiGLUExperts". Patching twice changes nothing more; unpatch()
    undoes it.

    recompute: the fused gated products that feed a plain nn.Linear (the
    down projection) keep only their inputs, gate and up (or gate‖up), for
    backward, not the activation's output h, which their backward recomputes
    (one more elementwise pass) for the projection's weight gradient. Where
    it is not a plain nn.Linear (a DTensor under tensor parallelism, a hook,
    a quantized layer), h is saved as usual."""
    counts = Counter()
    for module in model.modules():
        counts.update(_patch_module(module, recompute))
    for _, _, fused in _swap_activations(model):
        counts[type(fused).__name__] += 1
    return dict(counts)


def _swap_activations(model):
    """Replace each activation module that has a fused twin by it; returns
    the swaps, as (parent, name, fused module)."""
    swaps = []
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if getattr(child, _ORIGINAL, None) is not None:
                continue
            act = module_activation(child)
            fused = act and _fused_module(act)
            if fused is None or type(fused) is type(child):
                continue
            fused.train(child.training)
            object.__setattr__(fused, _ORIGINAL, child)
            setattr(parent, child_name, fused)
            swaps.append((parent, child_name, fused))
    return swaps


def is_patched(module):
    """Whether patch() fused module's own computation."""
    return "_fused_acts_base" in type(module).__dict__


def patch_unpatched(model):
    """patch(model) for what is not patched yet, leaving patched modules as
    they are (their recompute too); returns what restore_patched() undoes."""
    modules = [m for m in model.modules() if not is_patched(m) and _patch_module(m, recompute=False)]
    return modules, _swap_activations(model)


def restore_patched(patched):
    """Undo what patch_unpatched() did."""
    modules, swaps = patched
    for module in modules:
        _unpatch_module(module)
    for parent, child_name, fused in swaps:
        if getattr(parent, child_name, None) is fused:
            setattr(parent, child_name, getattr(fused, _ORIGINAL))


def _unpatch_module(module):
    """Restore a patched module's own class; returns its counts."""
    counts = module._fused_acts_counts
    module.__class__ = type(module)._fused_acts_base
    for attr in [name for name in vars(module) if name.startswith("_fused_acts_")]:
        delattr(module, attr)
    return counts


def unpatch(model: nn.Module) -> dict:
    """Restore everything patch() replaced, in place. Returns the counts restored."""
    counts = Counter()
    for parent in list(model.modules()):
        if is_patched(parent):
            counts.update(_unpatch_module(parent))
        for child_name, child in list(parent.named_children()):
            original = getattr(child, _ORIGINAL, None)
            if original is not None:
                setattr(parent, child_name, original)
                counts[type(child).__name__] += 1
    return dict(counts)
