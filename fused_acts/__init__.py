"""Fused CPU and CUDA kernels for transformer FFN activations."""

from . import nn
from .integrations import patch, unpatch
from .ops import geglu, gelu, mish, silu, swiglu

__all__ = ["gelu", "silu", "mish", "swiglu", "geglu", "nn", "patch", "unpatch"]
__version__ = "0.1.0"
