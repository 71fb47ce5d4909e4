"""The public functional API. The ops themselves are
``torch.ops.fused_acts.*``: schemas, kernels and autograd in csrc/, fake
kernels, vmap and DTensor sharding rules in this package's _fake, _vmap and
_sharding."""

import torch

from . import _fake, _sharding, _vmap  # noqa: F401  (register the ops' Python parts)

__all__ = ["gelu", "silu", "swish", "mish", "relu_squared", "swiglu", "geglu", "clamped_swiglu", "glu", "reglu"]

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


def _unpacked(op, interleaved, up_first):
    for name, value in (("interleaved", interleaved), ("up_first", up_first)):
        if value:
            raise ValueError(f"{op}: {name} applies to one packed tensor, but up was given too")


def swiglu(
    gate: torch.Tensor, up: torch.Tensor | None = None, *, interleaved: bool = False, up_first: bool = False
) -> torch.Tensor:
    """``silu(gate) * up``. With one tensor, its last dim is packed: gate‖up
    (the output of a fused projection), up‖gate with ``up_first=True``, or
    with ``interleaved=True`` gate and up alternating, as GPT-OSS stores them
    (up at the even elements with ``up_first=True``). Neither half is copied,
    forward or backward, and the gradient comes back as one tensor, packed alike."""
    if up is None:
        return _ops.swiglu_packed(gate, interleaved, up_first)
    _unpacked("swiglu", interleaved, up_first)
    return _ops.swiglu(gate, up)


def geglu(
    gate: torch.Tensor,
    up: torch.Tensor | None = None,
    approximate: str = "none",
    *,
    interleaved: bool = False,
    up_first: bool = False,
) -> torch.Tensor:
    """``gelu(gate, approximate) * up``, separate or packed as for :func:`swiglu`."""
    if up is None:
        return _ops.geglu_packed(gate, approximate, interleaved, up_first)
    _unpacked("geglu", interleaved, up_first)
    return _ops.geglu(gate, up, approximate)


def clamped_swiglu(
    gate: torch.Tensor,
    up: torch.Tensor | None = None,
    *,
    alpha: float = 1.702,
    limit: float = 7.0,
    interleaved: bool = False,
    up_first: bool = False,
) -> torch.Tensor:
    """GPT-OSS's gated activation: with ``g = gate.clamp(max=limit)``,
    ``(up.clamp(-limit, limit) + 1) * g * sigmoid(alpha * g)``. Separate or
    packed as for :func:`swiglu`; GPT-OSS's experts pack it interleaved.
    Gradients are eager's clamp's, the limits themselves passing."""
    if up is None:
        return _ops.clamped_swiglu_packed(gate, alpha, limit, interleaved, up_first)
    _unpacked("clamped_swiglu", interleaved, up_first)
    return _ops.clamped_swiglu(gate, up, alpha, limit)


def glu(
    value: torch.Tensor, gate: torch.Tensor | None = None, *, interleaved: bool = False, up_first: bool = True
) -> torch.Tensor:
    """``value * sigmoid(gate)``, the original GLU. With one tensor, its last
    dim is packed in ``F.glu``'s order, value‖gate (``up_first=True``, the
    value being the op's up); ``up_first=False`` takes gate‖value, and
    ``interleaved=True`` alternating elements, the value's first unless
    ``up_first=False``. ``glu(x)`` is ``F.glu(x, dim=-1)``."""
    if gate is None:
        return _ops.glu_packed(value, interleaved, up_first)
    _unpacked("glu", interleaved, not up_first)
    return _ops.glu(gate, value)


def reglu(
    gate: torch.Tensor, up: torch.Tensor | None = None, *, interleaved: bool = False, up_first: bool = False
) -> torch.Tensor:
    """``relu(gate) * up`` (ReGLU), separate or packed as for :func:`swiglu`."""
    if up is None:
        return _ops.reglu_packed(gate, interleaved, up_first)
    _unpacked("reglu", interleaved, up_first)
    return _ops.reglu(gate, up)
