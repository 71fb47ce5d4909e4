"""One call to put the fused activations into a model, and one to take them out.

patch(model) replaces, in place:
- activation modules whose function is exactly one of ours: torch.nn.GELU,
  SiLU and Mish, and transformers' GELU (erf), gelu_new, gelu_pytorch_tanh,
  gelu_fast, SiLU/swish, Mish, quick_gelu and relu2 activations; and
  transformers' xIELU (Apertus), by a module holding its parameters;
- every module's forward that computes a fused activation, recognised by
  its computation (_recognize.py) on the forward's torch.fx trace, with its
  submodules as leaves: act(gate) * up (SwiGLU, GeGLU, GLU, ReGLU, GPT-OSS's
  and DeepSeek-V4's clamped SwiGLUs, separate or the halves of one tensor), F.glu, and the
  activations called as functions or written out as their formula (BLOOM's
  tanh-GELU). The module then runs that trace with the fused ops in, which
  fall back to eager's own computation wherever an input would make them
  differ (a broadcast, a dtype promotion). The trace is specialised to the
  call (_traced.py): *args and **kwargs empty, a branch on the input's
  device type taken as a call on that device type takes it (diffusers'
  FeedForward). A forward that still does not trace (data-dependent control
  flow) is left as it is; its submodules are still visited;
- the gate of MoE experts: transformers 5's experts call _apply_gate on the
  packed gate_up projection from a forward that does not trace; the method
  itself is traced and rewritten in the same way.

Anything else is left alone: a lookalike with a different function would
silently change the model. So is an activation module with hooks, or in
place, which would stop firing or writing, and a forward that runs a custom
autograd.Function that is not, forward and backward, an activation we fuse.

A traced forward is fixed to what it did at patch() time where it read
plain Python values: the module's non-tensor attributes, and arguments
left at their defaults (a call that passes another value runs the original
forward). It is traced in training and in eval mode, and runs the trace of
its mode.
"""

from collections import Counter

from torch import nn

from ._patching import ORIGINAL, called_children, is_patched, patch_module, swap_activations, unpatch_module

__all__ = ["patch", "unpatch"]


def patch(model: nn.Module, recompute: bool = False) -> dict:
    """Swap in fused activations, in place. Returns what was replaced, counted
    by kind: "GELU", "SiLU", "Mish", "QuickGELU", "Swish", "ReLUSquared",
    "XIELU" for activations; "SwiGLU", "GeGLU", "GLU", "ReGLU",
    "ClampedSwiGLU" for gated products; and
    for MoE experts' gates "SwiGLUExperts", "GeGLUExperts",
    "ClampedSwiGLUExperts". An activation module swapped in a module whose
    forward does not trace, so that patch cannot tell whether it runs, is
    counted apart, as "SiLU (unverified)". Patching twice changes nothing
    more; unpatch() undoes it.

    recompute: the fused gated products that feed a plain nn.Linear (the
    down projection) keep only their inputs, gate and up (or gate‖up), for
    backward, not the activation's output h, which their backward recomputes
    (one more elementwise pass) for the projection's weight gradient. Where
    it is not a plain nn.Linear (a DTensor under tensor parallelism, a hook,
    a quantized layer), h is saved as usual."""
    counts = Counter()
    for module in model.modules():
        counts.update(patch_module(module, recompute))
    called = {}  # parent -> the children its traced methods call, traced once
    for parent, name, fused in swap_activations(model):
        if parent not in called:
            called[parent] = called_children(parent)
        label = type(fused).__name__
        counts[label if name in called[parent] else f"{label} (unverified)"] += 1
    return dict(counts)


def unpatch(model: nn.Module) -> dict:
    """Restore everything patch() replaced, in place. Returns the counts restored."""
    counts = Counter()
    for parent in list(model.modules()):
        if is_patched(parent):
            counts.update(unpatch_module(parent))
        for child_name, child in list(parent.named_children()):
            original = getattr(child, ORIGINAL, None)
            if original is not None:
                setattr(parent, child_name, original)
                counts[type(child).__name__] += 1
    return dict(counts)
