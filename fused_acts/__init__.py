"""Fused CPU and CUDA kernels for transformer FFN activations."""

from . import nn
from ._compile import compile_backend
from ._monitor import Monitor, SiteStats, monitor
from .integrations import patch, unpatch
from .ops import (
    Quantized,
    clamped_swiglu,
    geglu,
    gelu,
    glu,
    mish,
    quantize,
    reglu,
    relu_squared,
    silu,
    swiglu,
    swish,
    xielu,
)

__all__ = [
    "gelu",
    "silu",
    "swish",
    "mish",
    "relu_squared",
    "swiglu",
    "geglu",
    "clamped_swiglu",
    "glu",
    "reglu",
    "xielu",
    "quantize",
    "Quantized",
    "nn",
    "patch",
    "unpatch",
    "compile_backend",
    "monitor",
    "Monitor",
    "SiteStats",
]
__version__ = "0.1.0"
