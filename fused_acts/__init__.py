"""Fused CPU and CUDA kernels for transformer FFN activations."""

from . import nn
from .ops import geglu, gelu, mish, silu, swiglu

__all__ = ["gelu", "silu", "mish", "swiglu", "geglu", "nn"]
__version__ = "0.1.0"
