"""The public functional API. The ops themselves are
``torch.ops.fused_acts.*``: schemas, kernels and autograd in csrc/, fake
kernels, vmap and DTensor sharding rules in this package's _fake, _vmap and
_sharding."""

import torch

from . import _fake, _sharding, _vmap  # noqa: F401  (register the ops' Python parts)

__all__ = ["gelu", "silu", "swish", "mish", "relu_squared", "swiglu", "geglu"]

_ops = torch.ops.fused_acts


def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """Same as ``torch.nn.functional.gelu``: "none" is the erf form, "tanh" the tanh approximation."""
    return _ops.gelu(x, approximate)


def silu(x: torch.Tensor) -> torch.Tensor:
    """Same as ``torch.nn.functional.silu``."""
    return _ops.silu(x)


def swish(x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """``x * sigmoid(beta * x)``. ``swish(x, 1.0)`` is :func:`silu` bit for bit;
    ``swish(x, 1.702)`` is QuickGELU (CLIP)."""
    return _ops.swish(x, beta)


def relu_squared(x: torch.Tensor) -> torch.Tensor:
    """``relu(x) ** 2`` (Primer; Nemotron's and nanochat's ``relu2``)."""
    return _ops.relu_squared(x)


def mish(x: torch.Tensor) -> torch.Tensor:
    """Same as ``torch.nn.functional.mish``."""
    return _ops.mish(x)


def swiglu(gate: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """``silu(gate) * up``. With one tensor, its last dim is a packed gate‖up
    (the output of a fused projection): neither half is copied, forward or
    backward, and the gradient comes back as one packed tensor."""
    if up is None:
        return _ops.swiglu_packed(gate)
    return _ops.swiglu(gate, up)


def geglu(gate: torch.Tensor, up: torch.Tensor | None = None, approximate: str = "none") -> torch.Tensor:
    """``gelu(gate, approximate) * up``, separate or packed as for :func:`swiglu`."""
    if up is None:
        return _ops.geglu_packed(gate, approximate)
    return _ops.geglu(gate, up, approximate)
