"""One call to put the fused activations into a model, and one to take them out.

patch(model) replaces, in place:
- activation modules whose function is exactly one of ours: torch.nn.GELU,
  SiLU and Mish, and transformers' GELU (erf), gelu_new, gelu_pytorch_tanh,
  gelu_fast, SiLU/swish and Mish activations;
- the activation step of known gated FFNs, which then runs as one fused op:
  gate_proj/up_proj/down_proj + act_fn (Llama, Mistral, Qwen2, Qwen3, Gemma)
  and the packed gate_up_proj of Phi-3.

Anything else (QuickGELU, clipped GELUs, unknown MLP classes) is left alone:
a lookalike with a different function would silently change the model.
"""

from collections import Counter

from torch import nn

from . import nn as fnn
from . import ops

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
}

# Gated FFN classes whose forward is exactly
#   down_proj(act_fn(gate_proj(x)) * up_proj(x))
_SEPARATE_GATED_MLPS = {"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP", "GemmaMLP"}
# ... or, packed: down_proj(up * activation_fn(gate)) with gate, up = gate_up_proj(x).chunk(2, -1)
_PACKED_GATED_MLPS = {"Phi3MLP"}

_ORIGINAL = "_fused_acts_original"


def _activation_kind(module):
    """'gelu', 'gelu_tanh', 'silu' or 'mish' where module computes exactly that, else None."""
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
    return {"gelu": lambda: fnn.GELU("none"), "gelu_tanh": lambda: fnn.GELU("tanh"),
            "silu": fnn.SiLU, "mish": fnn.Mish}[kind]()


def _gated(kind, gate, up=None):
    """act_kind(gate) * up as one fused op (up=None: gate is packed gate‖up)."""
    if kind == "silu":
        return ops.swiglu(gate, up)
    return ops.geglu(gate, up, "tanh" if kind == "gelu_tanh" else "none")


def _gated_label(kind):
    return "SwiGLU" if kind == "silu" else "GeGLU"


def _separate_forward(self, x):
    return self.down_proj(_gated(self._fused_acts_kind, self.gate_proj(x), self.up_proj(x)))


def _packed_forward(self, x):
    return self.down_proj(_gated(self._fused_acts_kind, self.gate_up_proj(x)))


_PATCHED_CLASSES = {}


def _patched_class(cls, forward):
    """A subclass of cls whose forward is the fused one. Swapping the instance's
    class (rather than binding a forward to it) survives deepcopy and pickling,
    and isinstance checks still see the original class."""
    if cls not in _PATCHED_CLASSES:
        _PATCHED_CLASSES[cls] = type(f"Fused{cls.__name__}", (cls,), {"forward": forward, "_fused_acts_base": cls})
    return _PATCHED_CLASSES[cls]


def _patch_gated_mlp(module):
    """Route a known gated FFN's activation step through one fused op; returns
    its count label, or None where the module is not one we know to be safe."""
    cls = type(module)
    if "_fused_acts_base" in cls.__dict__:
        return None
    if cls.__name__ in _SEPARATE_GATED_MLPS and all(hasattr(module, a) for a in ("gate_proj", "up_proj", "down_proj")):
        kind, forward = _activation_kind(getattr(module, "act_fn", None)), _separate_forward
    elif cls.__name__ in _PACKED_GATED_MLPS and all(hasattr(module, a) for a in ("gate_up_proj", "down_proj")):
        kind, forward = _activation_kind(getattr(module, "activation_fn", None)), _packed_forward
    else:
        return None
    if kind not in ("silu", "gelu", "gelu_tanh"):
        return None
    module._fused_acts_kind = kind
    module.__class__ = _patched_class(cls, forward)
    return _gated_label(kind)


def patch(model: nn.Module) -> dict:
    """Swap in fused activations, in place. Returns what was replaced, counted
    by kind ("GELU", "SiLU", "Mish", "SwiGLU", "GeGLU"). Patching twice
    changes nothing more; unpatch() undoes it."""
    counts = Counter()
    for module in model.modules():
        label = _patch_gated_mlp(module)
        if label:
            counts[label] += 1
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, (fnn.GELU, fnn.SiLU, fnn.Mish)):
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
            counts[_gated_label(parent._fused_acts_kind)] += 1
            parent.__class__ = base
            del parent._fused_acts_kind
        for child_name, child in list(parent.named_children()):
            original = getattr(child, _ORIGINAL, None)
            if original is not None:
                setattr(parent, child_name, original)
                counts[type(child).__name__] += 1
    return dict(counts)
