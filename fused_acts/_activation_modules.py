"""The activation modules whose function is one of ours (_activations.py):
torch's, fused_acts', and transformers' activation classes, by name, so
that transformers stays optional."""

import torch
from torch import nn

from . import nn as fnn
from ._activations import Act
from ._recompute import has_hooks

# transformers' activation classes (by name, so transformers stays optional)
# whose function is one of ours.
_HF_ACTIVATIONS = {
    "GELUActivation": Act("gelu", ("none",)),
    "NewGELUActivation": Act("gelu", ("tanh",)),
    "PytorchGELUTanh": Act("gelu", ("tanh",)),  # gelu_pytorch_tanh in older releases
    "GELUTanh": Act("gelu", ("tanh",)),  # gelu_pytorch_tanh in newer releases
    "FastGELUActivation": Act("gelu", ("tanh",)),
    "SiLUActivation": Act("silu"),
    "MishActivation": Act("mish"),
    "QuickGELUActivation": Act("swish", (1.702,)),
    "ReLUSquaredActivation": Act("relu_squared"),
}

QUICK_GELU_BETA = 1.702


def module_activation(module):
    """The Act a module computes, where it is one of ours, else None. A module
    with hooks, or one in place, is None too: replacing it, or fusing it into
    its product, would silently stop its hooks or its write."""
    if not isinstance(module, nn.Module) or has_hooks(module) or getattr(module, "inplace", False):
        return None
    if isinstance(module, (nn.GELU, fnn.GELU)):
        return Act("gelu", (module.approximate,))
    if isinstance(module, (nn.SiLU, fnn.SiLU)):
        return Act("silu")
    if isinstance(module, (nn.Mish, fnn.Mish)):
        return Act("mish")
    if isinstance(module, fnn.Swish):
        return Act("swish", (module.beta,))
    if isinstance(module, fnn.ReLUSquared):
        return Act("relu_squared")
    if type(module) is nn.Sigmoid:
        return Act("sigmoid")
    if type(module) is nn.ReLU:
        return Act("relu")
    if type(module).__module__.startswith("transformers."):
        return _HF_ACTIVATIONS.get(type(module).__name__)
    return None


def fused_with_parameters(module):
    """The fused twin of an activation module with parameters, holding the
    same parameters and buffers, or None: transformers' XIELUActivation
    (Apertus), without hooks. Its CUDA extension path, where installed, is
    the same function."""
    if not (type(module).__module__.startswith("transformers.") and type(module).__name__ == "XIELUActivation"):
        return None
    tensors = [getattr(module, name, None) for name in ("alpha_p", "alpha_n", "beta", "eps")]
    # As transformers defines it: one-element parameters and 0-dim buffers, else left alone.
    if has_hooks(module) or not all(isinstance(t, torch.Tensor) and t.numel() == 1 for t in tensors):
        return None
    return fnn.XIELU.sharing(module)
