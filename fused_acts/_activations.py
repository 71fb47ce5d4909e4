"""The activations that patch() and the compile backend put fused ops in
for, each once: eager's function, the fused unary op, and the gated op
family that computes act(gate) * up. An activation is named with its params,
as an ``Act``: ``Act("gelu", ("tanh",))``. How eager code spells each one
(F.silu, nn.SiLU, x * torch.sigmoid(x), ...) is _spellings.py's concern.

Teaching the recognizer an activation is one entry here, plus its spellings
in _spellings.activation_of where they are new."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F


class Act(NamedTuple):
    name: str
    params: tuple = ()


@dataclass(frozen=True)
class Activation:
    eager: Callable  # eager(x, *params), exactly what eager computes
    unary: str | None  # the fused op; None where eager's own kernel is one pass already
    gated: str | None  # the op family computing act(gate) * up, or None
    label: str  # what patch() counts a unary site as
    up: Callable | None = None  # up(u, *params): what the gated product multiplies by, where not u itself


def _clamped_swish(gate, alpha, limit, up_offset):
    clamped = gate.clamp(max=limit)
    return clamped * torch.sigmoid(clamped * alpha)


def _clamped_silu(gate, alpha, limit, up_offset):
    return F.silu(gate.clamp(max=limit))


def _clamped_up(up, alpha, limit, up_offset):
    clamped = up.clamp(-limit, limit)
    return clamped + up_offset if up_offset else clamped


ACTIVATIONS = {
    "silu": Activation(F.silu, "silu", "swiglu", "SiLU"),
    "gelu": Activation(lambda x, approximate: F.gelu(x, approximate=approximate), "gelu", "geglu", "GELU"),
    "swish": Activation(lambda x, beta: x * torch.sigmoid(beta * x), "swish", None, "Swish"),
    "mish": Activation(F.mish, "mish", None, "Mish"),
    "relu_squared": Activation(lambda x: torch.square(torch.relu(x)), "relu_squared", None, "ReLUSquared"),
    "sigmoid": Activation(torch.sigmoid, None, "glu", "Sigmoid"),
    "relu": Activation(torch.relu, None, "reglu", "ReLU"),
    # The clamped SwiGLUs, params (alpha, limit, up_offset): GPT-OSS's gate,
    # swish_alpha(min(g, limit)), times clamp(u, -limit, limit) + 1; and
    # DeepSeek-V4's, silu(min(g, limit)), times clamp(u, -limit, limit).
    "clamped_swish": Activation(_clamped_swish, None, "clamped_swiglu", "ClampedSwish", _clamped_up),
    "clamped_silu": Activation(_clamped_silu, None, "clamped_swiglu", "ClampedSiLU", _clamped_up),
}

# What patch() counts a fused gated site as, by its op family.
GATED_LABELS = {"swiglu": "SwiGLU", "geglu": "GeGLU", "glu": "GLU", "reglu": "ReGLU", "clamped_swiglu": "ClampedSwiGLU"}


class GatedOp(NamedTuple):
    """One fused gated op: its family and params, and for a packed x, how x
    holds gate and up (csrc/op_list.h)."""

    family: str
    params: tuple = ()
    interleaved: bool = False
    up_first: bool = False

    @property
    def label(self):
        return GATED_LABELS[self.family]


def gated_op(act, interleaved=False, up_first=False):
    """The GatedOp computing act(gate) * up, or None where no family does."""
    family = ACTIVATIONS[act.name].gated
    return None if family is None else GatedOp(family, act.params, interleaved, up_first)
