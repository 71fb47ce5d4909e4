"""Fused CPU and CUDA kernels for transformer FFN activations."""

from . import nn
from .integrations import patch, unpatch
from .ops import geglu, gelu, mish, relu_squared, silu, swiglu, swish

__all__ = ["gelu", "silu", "swish", "mish", "relu_squared", "swiglu", "geglu", "nn", "patch", "unpatch"]
__version__ = "0.1.0"
