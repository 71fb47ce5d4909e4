"""Eager and float64 references for every activation.

The float64 references use forms that stay accurate in the tails (erfc rather
than 1 + erf, sigmoid(−x) rather than 1 − sigmoid(x)), so they can judge
eager PyTorch as well as fused_acts.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

import fused_acts

BETA = math.sqrt(2 / math.pi)
KAPPA = 0.044715


def _gelu_tanh_parts(x):
    two_u = 2 * BETA * (x + KAPPA * x**3)
    return torch.sigmoid(two_u), torch.sigmoid(-two_u), 2 * BETA * (1 + 3 * KAPPA * x * x)


QUICK_GELU_BETA = 1.702


def ref_forward(name, x):
    x = x.double()
    if name == "silu":
        return x * torch.sigmoid(x)
    if name == "quick_gelu":
        return x * torch.sigmoid(QUICK_GELU_BETA * x)
    if name == "relu_squared":
        return torch.relu(x) ** 2
    if name == "gelu":
        return x * 0.5 * torch.special.erfc(-x / math.sqrt(2))
    if name == "gelu_tanh":
        return x * _gelu_tanh_parts(x)[0]
    if name == "mish":
        return x * torch.tanh(F.softplus(x))
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "relu":
        return torch.relu(x)
    raise ValueError(name)


def _derivative_terms(name, x):
    """f'(x) as its two terms: a CDF-like one and x times a density-like one."""
    x = x.double()
    if name == "silu":
        return torch.sigmoid(x), x * torch.sigmoid(x) * torch.sigmoid(-x)
    if name == "quick_gelu":
        u = QUICK_GELU_BETA * x
        return torch.sigmoid(u), u * torch.sigmoid(u) * torch.sigmoid(-u)
    if name == "relu_squared":
        return 2 * torch.relu(x), torch.zeros_like(x)
    if name == "gelu":
        pdf = torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return 0.5 * torch.special.erfc(-x / math.sqrt(2)), x * pdf
    if name == "gelu_tanh":
        s, one_minus_s, du = _gelu_tanh_parts(x)
        return s, x * s * one_minus_s * du
    if name == "mish":
        sp = F.softplus(x)
        return torch.tanh(sp), x * torch.sigmoid(x) / torch.cosh(sp) ** 2
    if name == "sigmoid":
        return torch.sigmoid(x) * torch.sigmoid(-x), torch.zeros_like(x)
    if name == "relu":
        return (x > 0).to(x.dtype), torch.zeros_like(x)
    raise ValueError(name)


def ref_derivative(name, x):
    first, second = _derivative_terms(name, x)
    return first + second


def ref_derivative_terms(name, x):
    """The sum of the magnitudes of the derivative's terms. Every derivative
    here crosses zero where its terms cancel (SiLU's near x = −1.28, GELU's
    near −0.75); there any formula's relative error is unbounded, so
    gradients are judged in ulps of this."""
    first, second = _derivative_terms(name, x)
    return first.abs() + second.abs()


def rounded_once(fn, *xs):
    """fn(*xs) computed in float for 16-bit xs and rounded once to their dtype."""
    dtype = xs[0].dtype
    if dtype in (torch.bfloat16, torch.float16):
        return fn(*(x.float() for x in xs)).to(dtype)
    return fn(*xs)


def clamp(x, min=None, max=None):
    """torch.clamp with the gradient 0 at a limit itself, the minimum-norm
    subgradient that torch 2.14's clamp gives, on any torch (older releases
    passed the gradient there)."""
    inside = torch.ones_like(x, dtype=torch.bool)
    if min is not None:
        inside &= x > min
    if max is not None:
        inside &= x < max
    return torch.where(inside, x, x.clamp(min, max).detach())


def deepseek_v4_gate(gate, up, limit=7.0):
    """DeepSeek-V4's clamped SwiGLU (transformers' DeepseekV4MLP), on separate halves."""
    return F.silu(clamp(gate, max=limit)) * clamp(up, min=-limit, max=limit)


def gpt_oss_gate(gate, up, alpha=1.702, limit=7.0):
    """GPT-OSS's _apply_gate (transformers' GptOssExperts), on separate halves."""
    gate = clamp(gate, max=limit)
    up = clamp(up, min=-limit, max=limit)
    glu = gate * torch.sigmoid(gate * alpha)
    return (up + 1) * glu


class Case(NamedTuple):
    """One activation as the tests exercise it: fused_acts' function, eager
    PyTorch's, and the op family (csrc/op_list.h) it runs."""

    fused: Callable
    eager: Callable
    family: str


# The unary activations, by their name in ref_forward.
UNARY = {
    "silu": Case(fused_acts.silu, F.silu, "silu"),
    "gelu": Case(fused_acts.gelu, F.gelu, "gelu"),
    "gelu_tanh": Case(
        lambda x, **quantized: fused_acts.gelu(x, "tanh", **quantized), lambda x: F.gelu(x, approximate="tanh"), "gelu"
    ),
    "mish": Case(fused_acts.mish, F.mish, "mish"),
    # transformers' QuickGELU, x * sigmoid(1.702 * x), but in float and rounded
    # once, as ATen's own activation kernels are: in a 16-bit dtype those
    # three ops round three times, and the gradient near its zero crossing
    # then differs from any single rounding by an ulp of its terms.
    "quick_gelu": Case(
        lambda x, **quantized: fused_acts.swish(x, QUICK_GELU_BETA, **quantized),
        lambda x: rounded_once(lambda t: t * torch.sigmoid(QUICK_GELU_BETA * t), x),
        "swish",
    ),
    "relu_squared": Case(fused_acts.relu_squared, lambda x: torch.square(F.relu(x)), "relu_squared"),
}

# The gated activations: fused(gate, up=None) (None: gate is packed gate‖up), eager(gate, up).
# Every fused function takes the ops' keyword arguments (packings, out_dtype, ...).
GATED = {
    "swiglu": Case(fused_acts.swiglu, lambda g, u: F.silu(g) * u, "swiglu"),
    "geglu": Case(fused_acts.geglu, lambda g, u: F.gelu(g) * u, "geglu"),
    "geglu_tanh": Case(
        lambda g, u=None, **kwargs: fused_acts.geglu(g, u, approximate="tanh", **kwargs),
        lambda g, u: F.gelu(g, approximate="tanh") * u,
        "geglu",
    ),
    # GPT-OSS's gate, rounded once as quick_gelu is: its five 16-bit ops
    # round five times, off by several ulps from any single rounding.
    "clamped_swiglu": Case(fused_acts.clamped_swiglu, lambda g, u: rounded_once(gpt_oss_gate, g, u), "clamped_swiglu"),
    # A limit that the inputs (normal × 3) cross on both sides, often.
    "clamped_swiglu_limit_1": Case(
        lambda g, u=None, **kwargs: fused_acts.clamped_swiglu(g, u, alpha=1.5, limit=1.0, **kwargs),
        lambda g, u: rounded_once(lambda g, u: gpt_oss_gate(g, u, alpha=1.5, limit=1.0), g, u),
        "clamped_swiglu",
    ),
    # DeepSeek-V4's form: no alpha, no offset; eager's own two roundings.
    "clamped_swiglu_deepseek_v4": Case(
        lambda g, u=None, **kwargs: fused_acts.clamped_swiglu(g, u, alpha=1.0, limit=2.0, up_offset=0.0, **kwargs),
        lambda g, u: deepseek_v4_gate(g, u, limit=2.0),
        "clamped_swiglu",
    ),
    # glu(value, gate), packed value first by default, as F.glu: called here
    # as every gated Case is, gate first, its packings named for gate and up.
    # Eager is F.glu's single rounding: in a 16-bit dtype, torch.sigmoid's
    # rounded output loses 1 − s as s → 1, and with it the gate's gradient.
    "glu": Case(
        lambda g, u=None, interleaved=False, up_first=False, **quantized: (
            fused_acts.glu(g, interleaved=interleaved, up_first=up_first, **quantized)
            if u is None
            else fused_acts.glu(u, g, **quantized)
        ),
        lambda g, u: rounded_once(lambda g, u: u * torch.sigmoid(g), g, u),
        "glu",
    ),
    "reglu": Case(fused_acts.reglu, lambda g, u: F.relu(g) * u, "reglu"),
}

# The activation that each gated op applies to its gate, where a unary op applies it too.
GATED_ACTIVATION = {"swiglu": "silu", "geglu": "gelu", "geglu_tanh": "gelu_tanh", "glu": "sigmoid", "reglu": "relu"}


def ref_gated(name, gate, up):
    """A GATED activation in float64: act(gate) * up, or GPT-OSS's clamped form."""
    gate, up = gate.double(), up.double()
    if name in GATED_ACTIVATION:
        return ref_forward(GATED_ACTIVATION[name], gate) * up
    return GATED[name].eager(gate, up)


def every_16_bit_pattern(dtype):
    """All 65536 values of a 16-bit dtype, nan and inf included."""
    return torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)


# The packed layouts, by name: the packed ops' keyword arguments.
PACKINGS = {
    "packed": {},
    "up_first": {"up_first": True},
    "interleaved": {"interleaved": True},
    "interleaved_up_first": {"interleaved": True, "up_first": True},
}


def split_packed(x, interleaved=False, up_first=False):
    """gate and up from a packed x: gate‖up, or alternating; up first where up_first."""
    first, second = (x[..., 0::2], x[..., 1::2]) if interleaved else x.chunk(2, dim=-1)
    return (second, first) if up_first else (first, second)


def pack(gate, up, interleaved=False, up_first=False):
    """split_packed's inverse."""
    first, second = (up, gate) if up_first else (gate, up)
    return torch.stack([first, second], -1).flatten(-2) if interleaved else torch.cat([first, second], dim=-1)


# The largest finite magnitude of each quantized dtype.
QMAX = {torch.float8_e4m3fn: 448.0, torch.float8_e5m2: 57344.0, torch.int8: 127.0}


def _power_of_two_ceil(s):
    """The smallest power of two >= s, for positive normal s; inf and nan pass."""
    mantissa, exponent = torch.frexp(s)
    ceil = torch.where(mantissa == 0.5, s, torch.ldexp(torch.ones_like(s), exponent))
    return torch.where(s.isfinite(), ceil, s)


def ref_quantize(h, out_dtype, granularity=None, scale=None, scale_dtype=torch.float32):
    """The definition of a quantized output (docs/design.md), in plain torch:
    (q, s) with s = max(amax, 1e-12) / qmax per row, per group of the last
    dim or per tensor (or a given s), and q = cast(clamp(h / s, ±qmax)).
    Every division is elementwise between tensors of one shape, which ATen
    computes as IEEE division (a scalar divisor could take a reciprocal)."""
    qmax = QMAX[out_dtype]
    h32 = h.float()
    cols = h.shape[-1] if h.dim() else 1
    rows = h32.reshape(math.prod(h.shape[:-1]), cols)
    per_tensor = scale is not None or granularity == "tensor"
    group = cols if granularity in (None, "row", "tensor") or per_tensor else granularity
    if per_tensor:
        groups = rows.reshape(1, -1)
    elif group == 0:  # a row of no elements: one empty group
        groups = rows.reshape(rows.shape[0], 1, 0)
    else:
        groups = rows.reshape(rows.shape[0], cols // group, group)
    if scale is not None:
        s = scale.reshape(1).float().expand(groups.shape[:-1]).contiguous()
    else:
        amax = groups.abs().amax(-1) if groups.shape[-1] else torch.zeros(groups.shape[:-1], device=h.device)
        s = torch.maximum(amax, torch.full_like(amax, 1e-12)) / torch.full_like(amax, qmax)
        if scale_dtype == torch.float8_e8m0fnu:
            s = _power_of_two_ceil(s)
    y = groups / s.unsqueeze(-1).expand(groups.shape).contiguous()
    y = y.clamp(-qmax, qmax)
    q = (y.round() if out_dtype == torch.int8 else y).to(out_dtype).reshape(h.shape)
    if per_tensor or h.dim() == 0:
        scale_shape = ()
    else:
        scale_shape = (*h.shape[:-1], 1 if granularity in (None, "row") else cols // group)
    return q, s.to(scale_dtype).reshape(scale_shape)


# Each monitored activation's saturation interval as docs/design.md
# tabulates it: g is saturated where g <= lo or g > hi. Keyed by op family
# and params; swish's and clamped SwiGLU's follow from their params.
INF = float("inf")
SILU_TAIL = -9.0


def _f32(value):
    return torch.tensor(value, dtype=torch.float64).float().item()


def _swish_tail(beta):
    if beta > 0:
        return _f32(SILU_TAIL / beta), INF
    if beta < 0:
        return -INF, _f32(SILU_TAIL / beta)
    return -INF, INF


def saturation(family, params=()):
    if family in ("silu", "swiglu", "mish"):
        return SILU_TAIL, INF
    if family in ("gelu", "geglu"):
        return -4.0, INF
    if family in ("relu_squared", "reglu"):
        return 0.0, INF
    if family == "glu":
        return -7.0, 7.0
    if family == "swish":
        return _swish_tail(params[0])
    if family == "clamped_swiglu":
        lo, hi = _swish_tail(params[0])
        return lo, min(hi, _f32(params[1]))
    raise ValueError(family)


HISTOGRAM_RANGE = 8.0


def ref_monitor(gate, h, family, params=(), bins=0):
    """A monitored forward's statistics (csrc/monitor.h) of one call, in plain
    torch: [6, C] float64 (rows, active, saturated, amax, sum, sumsq) and the
    gate's histogram. g and h in their opmath dtype, as the kernels see them."""
    opmath = torch.float64 if h.dtype == torch.float64 else torch.float32
    channels = h.shape[-1] if h.dim() else 1
    g = gate.to(opmath).reshape(-1, channels)
    v = h.to(opmath).reshape(-1, channels)
    lo, hi = saturation(family, params)
    stats = torch.zeros(6, channels, dtype=torch.float64)
    stats[0] = g.shape[0]
    stats[1] = (g > 0).sum(0)
    stats[2] = ((g <= lo) | (g > hi)).sum(0)
    if g.shape[0]:
        stats[3] = v.abs().amax(0).double()
    stats[4] = v.double().sum(0)
    stats[5] = (v.double() ** 2).sum(0)
    g = g.flatten()
    g = g[~g.isnan()]
    position = (g + HISTOGRAM_RANGE) * (bins / (2 * HISTOGRAM_RANGE))
    index = position.floor().clamp(0, max(bins - 1, 0)).long()
    histogram = torch.bincount(index, minlength=bins).double()[:bins]
    return stats, histogram
