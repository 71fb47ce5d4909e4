"""One call to put the fused activations into a model, and one to take them out.

patch(model) replaces, in place:
- activation modules whose function is exactly one of ours: torch.nn.GELU,
  SiLU and Mish, and transformers' GELU (erf), gelu_new, gelu_pytorch_tanh,
  gelu_fast, SiLU/swish, Mish, quick_gelu and relu2 activations;
- the activation step of gated FFNs whose forward is, statement for
  statement, one of the forms below (Llama's, Phi-3's packed gate_up_proj,
  and Llama 4's), which then runs as one fused op. The forward's source is
  compared, not the class name: over a hundred transformers architectures
  share these forms (Mistral, Qwen, Gemma, DeepSeek, OLMo, Granite, GLM, ...);
- the gate of MoE experts whose _apply_gate (transformers 5's experts
  implementations call it on the packed gate_up projection) is, in the same
  way, transformers' default (Mixtral, Qwen-MoE, DeepSeek, OLMoE, ...) or
  GPT-OSS's clamped form, interleaved or not, which then runs as one packed
  op. An experts class's own eager loop (experts_implementation="eager")
  is left as it is, but for its activation module.

Anything else (clipped GELUs, a forward that differs in any way)
is left alone: a lookalike with a different function would silently change
the model. So is an activation module with hooks, which would stop firing.
"""

import ast
import functools
import inspect
import math
import textwrap
from collections import Counter

from torch import nn

from . import nn as fnn
from . import ops
from ._recompute import gated, gated_down, has_hooks, packed_gated_down

__all__ = ["patch", "unpatch"]

# transformers' activation classes (by name, so transformers stays optional)
# whose function is exactly erf-GELU, tanh-GELU, SiLU or Mish.
_HF_ACTIVATIONS = {
    "GELUActivation": "gelu",
    "NewGELUActivation": "gelu_tanh",
    "PytorchGELUTanh": "gelu_tanh",  # gelu_pytorch_tanh in older releases
    "GELUTanh": "gelu_tanh",  # gelu_pytorch_tanh in newer releases
    "FastGELUActivation": "gelu_tanh",
    "SiLUActivation": "silu",
    "MishActivation": "mish",
    "QuickGELUActivation": "quick_gelu",
    "ReLUSquaredActivation": "relu_squared",
}

# Gated FFN forwards, each exactly down_proj(act(gate) * up), as source: a
# module whose forward parses to one of them (its input's name, annotations
# and docstring aside) is patched. Value: the activation's attribute, and
# whether gate and up come packed from one gate_up_proj.
_GATED_FORMS = {
    """
def forward(self, x):
    down_proj = self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))
    return down_proj
""": ("act_fn", False),
    """
def forward(self, x):
    return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))
""": ("act_fn", False),
    """
def forward(self, x):
    down_proj = self.activation_fn(self.gate_proj(x)) * self.up_proj(x)
    return self.down_proj(down_proj)
""": ("activation_fn", False),
    """
def forward(self, x):
    up_states = self.gate_up_proj(x)
    gate, up_states = up_states.chunk(2, dim=-1)
    up_states = up_states * self.activation_fn(gate)
    return self.down_proj(up_states)
""": ("activation_fn", True),
}

# MoE experts' _apply_gate(gate_up), as source, matched as the forms above
# are. Value: what it computes, "act_fn" (act_fn(gate) * up on gate‖up) or
# GPT-OSS's clamped SwiGLU, and whether gate and up are interleaved.
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


def _activation_kind(module):
    """The activation module computes, where it is exactly one of ours ('gelu',
    'gelu_tanh', 'silu', 'mish', 'quick_gelu', 'relu_squared'), else None. A
    module with hooks is None too: replacing it, or fusing it into its MLP,
    would silently stop them firing."""
    if has_hooks(module):
        return None
    if isinstance(module, (nn.GELU, fnn.GELU)):
        return "gelu" if module.approximate == "none" else "gelu_tanh"
    if isinstance(module, (nn.SiLU, fnn.SiLU)):
        return "silu"
    if isinstance(module, (nn.Mish, fnn.Mish)):
        return "mish"
    if type(module).__module__.startswith("transformers."):
        return _HF_ACTIVATIONS.get(type(module).__name__)
    return None


def _fused_activation(kind):
    return {
        "gelu": lambda: fnn.GELU("none"),
        "gelu_tanh": lambda: fnn.GELU("tanh"),
        "silu": fnn.SiLU,
        "mish": fnn.Mish,
        "quick_gelu": fnn.QuickGELU,
        "relu_squared": fnn.ReLUSquared,
    }[kind]()


def _gated_label(kind):
    return {"silu": "SwiGLU", "clamped_swiglu": "ClampedSwiGLU"}.get(kind, "GeGLU")


@functools.cache
def _forward_signature(cls):
    return inspect.signature(cls.forward)


def _input(module, args, kwargs):
    """The forms take one input, whatever its name, and a caller may pass it by
    that name (mlp(hidden_states=h)). Any other call fails with the error
    that the original forward gives."""
    if len(args) == 1 and not kwargs:
        return args[0]
    base = module._fused_acts_base
    try:
        bound = _forward_signature(base).bind(module, *args, **kwargs)
    except TypeError as error:
        raise TypeError(f"{base.__name__}.forward(): {error}") from None
    return list(bound.arguments.values())[1]


def _separate_forward(self, *args, **kwargs):
    x = _input(self, args, kwargs)
    gate, up = self.gate_proj(x), self.up_proj(x)
    return gated_down(self._fused_acts_kind, self.down_proj, gate, up, self._fused_acts_recompute)


def _packed_forward(self, *args, **kwargs):
    x = _input(self, args, kwargs)
    return packed_gated_down(self._fused_acts_kind, self.gate_up_proj, self.down_proj, x, self._fused_acts_recompute)


def _fused_experts_gate(self, gate_up):
    if self._fused_acts_kind == "clamped_swiglu":
        return ops.clamped_swiglu(gate_up, alpha=self.alpha, limit=self.limit, interleaved=self._fused_acts_interleaved)
    return gated(self._fused_acts_kind, gate_up)


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


# By the method they recognise: its normalized source -> its form's value.
_NORMALIZED = {
    "forward": {_normalized(source): form for source, form in _GATED_FORMS.items()},
    "_apply_gate": {_normalized(source): form for source, form in _EXPERT_GATE_FORMS.items()},
}


def _form(cls, name):
    """What cls's method `name` computes, where its source is one of the forms we know, else None."""
    method = getattr(cls, name, None)
    return _method_form(getattr(method, "__func__", method), name)


@functools.cache
def _method_form(method, name):
    try:
        source = inspect.getsource(method)
    except (OSError, TypeError):
        return None
    return _NORMALIZED[name].get(_normalized(source))


_PATCHED_CLASSES = {}


def _patched_class(cls, name, method):
    """A subclass of cls whose method `name` is the fused one. Swapping the
    instance's class (rather than binding a method to it) survives deepcopy
    and pickling, and isinstance checks still see the original class."""
    if cls not in _PATCHED_CLASSES:
        _PATCHED_CLASSES[cls] = type(f"Fused{cls.__name__}", (cls,), {name: method, "_fused_acts_base": cls})
    return _PATCHED_CLASSES[cls]


_FUSED_GATES = ("silu", "gelu", "gelu_tanh")


def _patch_gated_mlp(module, recompute):
    """Route a gated FFN's activation step through one fused op; returns its
    count label, or None where the module's forward is not one we know or
    the module is patched already (then only recompute is updated)."""
    cls = type(module)
    if "_fused_acts_base" in cls.__dict__:
        module._fused_acts_recompute = recompute
        return None
    form = _form(cls, "forward")
    if form is None:
        return None
    activation, packed = form
    kind = _activation_kind(getattr(module, activation, None))
    if kind not in _FUSED_GATES:
        return None
    module._fused_acts_kind = kind
    module._fused_acts_recompute = recompute
    module._fused_acts_label = _gated_label(kind)
    module.__class__ = _patched_class(cls, "forward", _packed_forward if packed else _separate_forward)
    return module._fused_acts_label


def _patch_experts_gate(module):
    """Route MoE experts' gate through one fused packed op; returns its count
    label, or None where the module has no _apply_gate we know, or its
    activation or params are not ones we fuse."""
    cls = type(module)
    if "_fused_acts_base" in cls.__dict__:
        return None
    form = _form(cls, "_apply_gate")
    if form is None:
        return None
    kind, interleaved = form
    if kind == "act_fn":
        kind = _activation_kind(getattr(module, "act_fn", None))
        if kind not in _FUSED_GATES:
            return None
    elif not _clamped_swiglu_params(getattr(module, "alpha", None), getattr(module, "limit", None)):
        return None
    module._fused_acts_kind = kind
    module._fused_acts_interleaved = interleaved
    module._fused_acts_label = f"{_gated_label(kind)}Experts"
    module.__class__ = _patched_class(cls, "_apply_gate", _fused_experts_gate)
    return module._fused_acts_label


def _clamped_swiglu_params(alpha, limit):
    """Whether alpha and limit are ones clamped_swiglu takes (else eager's gate stays)."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (alpha, limit))
    return numbers and math.isfinite(alpha) and limit > 0


def patch(model: nn.Module, recompute: bool = False) -> dict:
    """Swap in fused activations, in place. Returns what was replaced, counted
    by kind ("GELU", "SiLU", "Mish", "QuickGELU", "ReLUSquared", "SwiGLU",
    "GeGLU", and for MoE experts' gates "SwiGLUExperts", "GeGLUExperts",
    "ClampedSwiGLUExperts"). Patching twice changes nothing more; unpatch()
    undoes it.

    recompute: the fused gated FFNs keep only their input and gate and up
    (or gate‖up) for backward, not the activation's output h, which their
    backward recomputes (one more elementwise pass) for down_proj's weight
    gradient. Where down_proj is not a plain nn.Linear (a DTensor under
    tensor parallelism, a hook, a quantized layer), h is saved as usual."""
    counts = Counter()
    for module in model.modules():
        label = _patch_gated_mlp(module, recompute) or _patch_experts_gate(module)
        if label:
            counts[label] += 1
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, (fnn.GELU, fnn.SiLU, fnn.Swish, fnn.Mish, fnn.ReLUSquared)):
                continue
            kind = _activation_kind(child)
            if kind is None:
                continue
            fused = _fused_activation(kind)
            fused.train(child.training)
            object.__setattr__(fused, _ORIGINAL, child)
            setattr(parent, child_name, fused)
            counts[type(fused).__name__] += 1
    return dict(counts)


def unpatch(model: nn.Module) -> dict:
    """Restore everything patch() replaced, in place. Returns the counts restored."""
    counts = Counter()
    for parent in list(model.modules()):
        base = type(parent).__dict__.get("_fused_acts_base")
        if base is not None:
            counts[parent._fused_acts_label] += 1
            parent.__class__ = base
            for attr in [name for name in vars(parent) if name.startswith("_fused_acts_")]:
                delattr(parent, attr)
        for child_name, child in list(parent.named_children()):
            original = getattr(child, _ORIGINAL, None)
            if original is not None:
                setattr(parent, child_name, original)
                counts[type(child).__name__] += 1
    return dict(counts)
