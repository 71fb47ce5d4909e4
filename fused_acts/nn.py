"""Drop-in modules for the fused activations."""

import torch
from torch import nn

from . import ops


def _check_approximate(approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")


class GELU(nn.Module):
    """Fused ``torch.nn.GELU``."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        _check_approximate(approximate)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(nn.Module):
    """Fused ``torch.nn.SiLU``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.silu(x)


class Mish(nn.Module):
    """Fused ``torch.nn.Mish``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.mish(x)


class SwiGLU(nn.Module):
    """``silu(gate) * up``; ``forward(x)`` alone takes a packed gate‖up."""

    def forward(self, gate: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
        return ops.swiglu(gate, up)


class GeGLU(nn.Module):
    """``gelu(gate, approximate) * up``; ``forward(x)`` alone takes a packed gate‖up."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        _check_approximate(approximate)
        self.approximate = approximate

    def forward(self, gate: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
        return ops.geglu(gate, up, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"
