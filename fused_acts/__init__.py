"""Fused CPU and CUDA kernels for transformer FFN activations."""

from . import nn
from .integrations import patch, unpatch
from .ops import clamped_swiglu, geglu, gelu, mish, relu_squared, silu, swiglu, swish

__all__ = [
    "gelu",
    "silu",
    "swish",
    "mish",
    "relu_squared",
    "swiglu",
    "geglu",
    "clamped_swiglu",
    "nn",
    "patch",
    "unpatch",
]
__version__ = "0.1.0"
