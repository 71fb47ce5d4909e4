"""The public functional API. The ops themselves are
``torch.ops.fused_acts.*``: schemas, kernels and autograd in csrc/, fake
kernels, vmap and DTensor sharding rules in this package's _fake, _vmap and
_sharding."""

from typing import NamedTuple

import torch

from . import _fake, _op_call, _sharding, _vmap  # noqa: F401  (_fake, _sharding, _vmap register the ops' Python parts)
from ._checks import check_same

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
]

_ops = torch.ops.fused_acts


class Quantized(NamedTuple):
    """An op's output quantized: ``data`` in ``out_dtype`` and its ``scale``,
    so that ``data * scale`` approximates the output (docs/design.md defines
    both to the bit). ``scale`` has one element per row (``h.shape[:-1] +
    (1,)``), per group (``h.shape[:-1] + (h.shape[-1] // G,)``), or is 0-dim
    per tensor."""

    data: torch.Tensor
    scale: torch.Tensor


def _format(op, granularity, scale):
    """The schema's group_size and per_tensor for a call's granularity ("row",
    a group size or "tensor") and static scale."""
    if scale is not None:
        if granularity not in (None, "tensor"):
            raise ValueError(
                f"{op}: a static scale is one scale for the tensor, so granularity must be 'tensor' or left out, "
                f"got {granularity!r}"
            )
        return 0, True
    if granularity is None or granularity == "row":
        return 0, False
    if granularity == "tensor":
        return 0, True
    if isinstance(granularity, bool) or not isinstance(granularity, int) or granularity <= 0:
        raise ValueError(f"{op}: granularity must be 'row', 'tensor' or a positive int, got {granularity!r}")
    return granularity, False


def _call(op, base, args, out_dtype, granularity, scale, scale_dtype):
    """torch.ops.fused_acts.<base>(*args), or with out_dtype its _quantized
    twin as a Quantized; op names the function in messages."""
    if out_dtype is None:
        # The plain call, checked inline: it is on every call's path.
        if granularity is None and scale is None and scale_dtype is torch.float32:
            return _op_call.call(base, args)
        raise ValueError(f"{op}: granularity, scale and scale_dtype describe a quantized output; give out_dtype too")
    return _quantized(getattr(_ops, f"{base}_quantized"), op, args, out_dtype, granularity, scale, scale_dtype)


def _quantized(quantized_op, op, args, out_dtype, granularity, scale, scale_dtype):
    group_size, per_tensor = _format(op, granularity, scale)
    data, scale = quantized_op(
        *args, out_dtype=out_dtype, group_size=group_size, per_tensor=per_tensor, scale_dtype=scale_dtype, scale=scale
    )
    return Quantized(data, scale)


_QUANTIZED_DOC = """

    With ``out_dtype`` (``torch.float8_e4m3fn``, ``torch.float8_e5m2`` or
    ``torch.int8``) it returns :class:`Quantized` ``(data, scale)`` from the
    same pass, bit for bit ``quantize(op(...), ...)``: ``granularity`` "row"
    (the default), a group size ``G`` of the last dim, or "tensor"; ``scale``
    a static float32 scale (per tensor); ``scale_dtype`` ``torch.float32`` or
    ``torch.float8_e8m0fnu`` (power-of-two scales). A quantized output has no
    gradient: call it under ``torch.no_grad()`` or ``torch.inference_mode()``."""


def _documents_quantized(fn):
    fn.__doc__ += _QUANTIZED_DOC
    return fn


def quantize(
    x: torch.Tensor,
    *,
    out_dtype: torch.dtype,
    granularity: str | int | None = None,
    scale: torch.Tensor | None = None,
    scale_dtype: torch.dtype = torch.float32,
) -> Quantized:
    """``x`` quantized, in one pass for row and group scales: the definition
    (docs/design.md) that every op's ``out_dtype`` meets bit for bit, and the
    quantizer of any float tensor, such as a GEMM's input. The arguments are
    the ops' (see :func:`silu`)."""
    return _quantized(_ops.quantize, "quantize", (x,), out_dtype, granularity, scale, scale_dtype)


@_documents_quantized
def gelu(
    x: torch.Tensor,
    approximate: str = "none",
    *,
    out_dtype=None,
    granularity=None,
    scale=None,
    scale_dtype=torch.float32,
):
    """Same as ``torch.nn.functional.gelu``: "none" is the erf form, "tanh" the tanh approximation."""
    return _call("gelu", "gelu", (x, approximate), out_dtype, granularity, scale, scale_dtype)


@_documents_quantized
def silu(x: torch.Tensor, *, out_dtype=None, granularity=None, scale=None, scale_dtype=torch.float32):
    """Same as ``torch.nn.functional.silu``."""
    return _call("silu", "silu", (x,), out_dtype, granularity, scale, scale_dtype)


@_documents_quantized
def swish(
    x: torch.Tensor, beta: float = 1.0, *, out_dtype=None, granularity=None, scale=None, scale_dtype=torch.float32
):
    """``x * sigmoid(beta * x)``. ``swish(x, 1.0)`` is :func:`silu` bit for bit;
    ``swish(x, 1.702)`` is QuickGELU (CLIP)."""
    return _call("swish", "swish", (x, beta), out_dtype, granularity, scale, scale_dtype)


@_documents_quantized
def relu_squared(x: torch.Tensor, *, out_dtype=None, granularity=None, scale=None, scale_dtype=torch.float32):
    """``relu(x) ** 2`` (Primer; Nemotron's and nanochat's ``relu2``)."""
    return _call("relu_squared", "relu_squared", (x,), out_dtype, granularity, scale, scale_dtype)


@_documents_quantized
def mish(x: torch.Tensor, *, out_dtype=None, granularity=None, scale=None, scale_dtype=torch.float32):
    """Same as ``torch.nn.functional.mish``."""
    return _call("mish", "mish", (x,), out_dtype, granularity, scale, scale_dtype)


def _unpacked(op, interleaved, up_first):
    for name, value in (("interleaved", interleaved), ("up_first", up_first)):
        if value:
            raise ValueError(f"{op}: {name} applies to one packed tensor, but up was given too")


def _gated(op, gate, up, params, interleaved, up_first, out_dtype, granularity, scale, scale_dtype):
    """op's separate (up given) or packed call, quantized with out_dtype."""
    if up is None:
        base, args = f"{op}_packed", (gate, *params, interleaved, up_first)
    else:
        base, args = op, (gate, up, *params)
    return _call(op, base, args, out_dtype, granularity, scale, scale_dtype)


@_documents_quantized
def swiglu(
    gate: torch.Tensor,
    up: torch.Tensor | None = None,
    *,
    interleaved: bool = False,
    up_first: bool = False,
    out_dtype=None,
    granularity=None,
    scale=None,
    scale_dtype=torch.float32,
):
    """``silu(gate) * up``. With one tensor, its last dim is packed: gate‖up
    (the output of a fused projection), up‖gate with ``up_first=True``, or
    with ``interleaved=True`` gate and up alternating, as GPT-OSS stores them
    (up at the even elements with ``up_first=True``). Neither half is copied,
    forward or backward, and the gradient comes back as one tensor, packed alike."""
    if up is not None:
        _unpacked("swiglu", interleaved, up_first)
    return _gated("swiglu", gate, up, (), interleaved, up_first, out_dtype, granularity, scale, scale_dtype)


@_documents_quantized
def geglu(
    gate: torch.Tensor,
    up: torch.Tensor | None = None,
    approximate: str = "none",
    *,
    interleaved: bool = False,
    up_first: bool = False,
    out_dtype=None,
    granularity=None,
    scale=None,
    scale_dtype=torch.float32,
):
    """``gelu(gate, approximate) * up``, separate or packed as for :func:`swiglu`."""
    if up is not None:
        _unpacked("geglu", interleaved, up_first)
    params = (approximate,)
    return _gated("geglu", gate, up, params, interleaved, up_first, out_dtype, granularity, scale, scale_dtype)


@_documents_quantized
def clamped_swiglu(
    gate: torch.Tensor,
    up: torch.Tensor | None = None,
    *,
    alpha: float = 1.702,
    limit: float = 7.0,
    up_offset: float = 1.0,
    interleaved: bool = False,
    up_first: bool = False,
    out_dtype=None,
    granularity=None,
    scale=None,
    scale_dtype=torch.float32,
):
    """GPT-OSS's gated activation: with ``g = gate.clamp(max=limit)``,
    ``(up.clamp(-limit, limit) + up_offset) * g * sigmoid(alpha * g)``.
    DeepSeek-V4's is ``alpha=1.0, up_offset=0.0``: ``silu(g) * up.clamp(-limit, limit)``.
    Separate or packed as for :func:`swiglu`; GPT-OSS's experts pack it
    interleaved. Gradients are eager's clamp's: 0 past a limit and at it."""
    if up is not None:
        _unpacked("clamped_swiglu", interleaved, up_first)
    params = (alpha, limit, up_offset)
    return _gated("clamped_swiglu", gate, up, params, interleaved, up_first, out_dtype, granularity, scale, scale_dtype)


@_documents_quantized
def glu(
    value: torch.Tensor,
    gate: torch.Tensor | None = None,
    *,
    interleaved: bool = False,
    up_first: bool = True,
    out_dtype=None,
    granularity=None,
    scale=None,
    scale_dtype=torch.float32,
):
    """``value * sigmoid(gate)``, the original GLU. With one tensor, its last
    dim is packed in ``F.glu``'s order, value‖gate (``up_first=True``, the
    value being the op's up); ``up_first=False`` takes gate‖value, and
    ``interleaved=True`` alternating elements, the value's first unless
    ``up_first=False``. ``glu(x)`` is ``F.glu(x, dim=-1)``."""
    if gate is None:
        return _gated("glu", value, None, (), interleaved, up_first, out_dtype, granularity, scale, scale_dtype)
    _unpacked("glu", interleaved, not up_first)
    # The op takes (gate, up): check here, so that messages name glu's own arguments in its order.
    check_same("glu", "value", value, "gate", gate)
    return _gated("glu", gate, value, (), False, False, out_dtype, granularity, scale, scale_dtype)


@_documents_quantized
def reglu(
    gate: torch.Tensor,
    up: torch.Tensor | None = None,
    *,
    interleaved: bool = False,
    up_first: bool = False,
    out_dtype=None,
    granularity=None,
    scale=None,
    scale_dtype=torch.float32,
):
    """``relu(gate) * up`` (ReGLU), separate or packed as for :func:`swiglu`."""
    if up is not None:
        _unpacked("reglu", interleaved, up_first)
    return _gated("reglu", gate, up, (), interleaved, up_first, out_dtype, granularity, scale, scale_dtype)


def xielu(
    x: torch.Tensor, alpha_p: torch.Tensor, alpha_n: torch.Tensor, beta: float = 0.5, eps: float = -1e-6
) -> torch.Tensor:
    """xIELU (Apertus): ``alpha_p * x**2 + beta * x`` where ``x > 0``, else
    ``alpha_n * (expm1(min(x, eps)) - x) + beta * x``. ``alpha_p`` and
    ``alpha_n`` are one-element tensors, the coefficients as the formula uses
    them (transformers' ``XIELUActivation`` keeps their inverse softplus, see
    :class:`fused_acts.nn.XIELU`); the backward gives their gradients too,
    summed in the pass that gives x's. The output has x's shape and dtype.
    Not differentiable twice."""
    return _ops.xielu(x, alpha_p, alpha_n, beta, eps)
