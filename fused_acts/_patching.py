"""Patching one module: its own computation, by swapping its class for a
subclass with the fused methods (a traced forward, _traced.py, or an
experts' gate, _experts.py); an activation module, by swapping it for its
fused twin. And back."""

from . import nn as fnn
from ._activation_modules import QUICK_GELU_BETA, fused_with_parameters, module_activation
from ._activations import ACTIVATIONS
from ._experts import experts_gate_methods
from ._traced import called_modules, fused_methods

# The attribute of a fused activation module that holds the module it replaced.
ORIGINAL = "_fused_acts_original"

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
    patch_module(module, recompute)
    return module


def is_patched(module):
    """Whether patch() fused module's own computation."""
    return "_fused_acts_base" in type(module).__dict__


def patch_module(module, recompute):
    """Patch one module's own computation; returns its counts (empty where
    there is nothing to fuse, or it is patched already: then only recompute
    is updated)."""
    if is_patched(module):
        module._fused_acts_recompute = recompute
        return {}
    found = fused_methods(module) or experts_gate_methods(module)
    if found is None:
        return {}
    methods, counts = found
    module._fused_acts_recompute = recompute
    module._fused_acts_counts = counts
    module.__class__ = _patched_class(type(module), methods)
    return counts


def unpatch_module(module):
    """Restore a patched module's own class; returns its counts."""
    counts = module._fused_acts_counts
    module.__class__ = type(module)._fused_acts_base
    for attr in [name for name in vars(module) if name.startswith("_fused_acts_")]:
        delattr(module, attr)
    return counts


def _fused_module(act):
    """The fused module for an activation module computing act, or None."""
    if ACTIVATIONS[act.name].unary is None:
        return None
    if act.name == "gelu":
        return fnn.GELU(*act.params)
    if act.name == "swish":
        return fnn.QuickGELU() if act.params == (QUICK_GELU_BETA,) else fnn.Swish(*act.params)
    return {"silu": fnn.SiLU, "mish": fnn.Mish, "relu_squared": fnn.ReLUSquared}[act.name]()


def swap_activations(model):
    """Replace each activation module that has a fused twin by it; returns
    the swaps, as (parent, name, fused module)."""
    swaps = []
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if getattr(child, ORIGINAL, None) is not None:
                continue
            act = module_activation(child)
            fused = (act and _fused_module(act)) or fused_with_parameters(child)
            if fused is None or type(fused) is type(child):
                continue
            fused.train(child.training)
            object.__setattr__(fused, ORIGINAL, child)
            setattr(parent, child_name, fused)
            swaps.append((parent, child_name, fused))
    return swaps


def called_children(parent):
    """The names of the children that parent's forward (or an MoE experts'
    _apply_gate) is known to call: the method traces, and calls them."""
    return set().union(*(called_modules(parent, method) or () for method in ("forward", "_apply_gate")))


def patch_unpatched(model):
    """patch(model) for what is not patched yet, leaving patched modules as
    they are (their recompute too); returns what restore_patched() undoes."""
    modules = [m for m in model.modules() if not is_patched(m) and patch_module(m, recompute=False)]
    return modules, swap_activations(model)


def restore_patched(patched):
    """Undo what patch_unpatched() did."""
    modules, swaps = patched
    for module in modules:
        unpatch_module(module)
    for parent, child_name, fused in swaps:
        if getattr(parent, child_name, None) is fused:
            setattr(parent, child_name, getattr(fused, ORIGINAL))
