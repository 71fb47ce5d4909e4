"""Drop-in modules for the fused activations."""

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from ._activations import GatedOp
from ._checks import check_approximate, check_finite, check_positive
from ._fused_calls import runs_fused
from ._recompute import packed_gated_down


class GELU(nn.Module):
    """Fused ``torch.nn.GELU``."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        check_approximate(type(self).__name__, approximate)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(nn.Module):
    """Fused ``torch.nn.SiLU``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.silu(x)


class Swish(nn.Module):
    """``x * sigmoid(beta * x)``; ``Swish(1.0)`` is ``torch.nn.SiLU``."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        check_finite(type(self).__name__, "beta", beta)
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.swish(x, self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


class QuickGELU(Swish):
    """``x * sigmoid(1.702 * x)``, CLIP's GELU approximation."""

    def __init__(self):
        super().__init__(1.702)

    def extra_repr(self) -> str:
        return ""


class ReLUSquared(nn.Module):
    """``relu(x) ** 2``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.relu_squared(x)


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
        check_approximate(type(self).__name__, approximate)
        self.approximate = approximate

    def forward(self, gate: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
        return ops.geglu(gate, up, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class GLU(nn.Module):
    """``value * sigmoid(gate)``; ``forward(x)`` alone is ``torch.nn.GLU(dim=-1)``:
    x's last dim packed value‖gate (see :func:`fused_acts.glu`)."""

    def forward(self, value: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        return ops.glu(value, gate)


class ReGLU(nn.Module):
    """``relu(gate) * up``; ``forward(x)`` alone takes a packed gate‖up."""

    def forward(self, gate: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
        return ops.reglu(gate, up)


class ClampedSwiGLU(nn.Module):
    """GPT-OSS's clamped SwiGLU (:func:`fused_acts.clamped_swiglu`);
    ``forward(x)`` alone takes a packed x, interleaved as GPT-OSS's experts
    store it where ``interleaved=True``."""

    def __init__(self, alpha: float = 1.702, limit: float = 7.0, interleaved: bool = False, up_offset: float = 1.0):
        super().__init__()
        name = type(self).__name__
        check_finite(name, "alpha", alpha)
        check_positive(name, "limit", limit)
        check_finite(name, "up_offset", up_offset)
        self.alpha, self.limit, self.interleaved, self.up_offset = alpha, limit, interleaved, up_offset

    def forward(self, gate: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
        return ops.clamped_swiglu(
            gate, up, alpha=self.alpha, limit=self.limit, up_offset=self.up_offset, interleaved=self.interleaved
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, limit={self.limit}, up_offset={self.up_offset}, interleaved={self.interleaved}"


def _reread_constants(module, incompatible_keys):
    module._read_constants()


def _inverse_softplus(y, dtype):
    return torch.log(torch.expm1(torch.tensor(y, dtype=dtype))).unsqueeze(0)


class XIELU(nn.Module):
    """xIELU (:func:`fused_acts.xielu`), with transformers' ``XIELUActivation``
    parameters and buffers, by name: trainable ``alpha_p`` and ``alpha_n``
    (the coefficients are ``softplus(alpha_p)`` and ``beta + softplus(alpha_n)``,
    computed as transformers computes them), and ``beta`` and ``eps``. Its
    result is eager's formula's, in the dtype eager's promotes to; a call
    that eager would broadcast (a 0-dim x) or widen (x narrower than the
    parameters) runs eager's formula."""

    def __init__(self, alpha_p_init=0.8, alpha_n_init=0.8, beta=0.5, eps=-1e-6, dtype=torch.float32):
        super().__init__()
        self._hold(
            nn.Parameter(_inverse_softplus(alpha_p_init, dtype)),
            nn.Parameter(_inverse_softplus(alpha_n_init - beta, dtype)),
            torch.tensor(beta, dtype=dtype),
            torch.tensor(eps, dtype=dtype),
        )

    @classmethod
    def sharing(cls, module: nn.Module) -> "XIELU":
        """An XIELU holding module's own parameters and buffers (the same
        tensors: an optimizer's references stay valid)."""
        fused = cls.__new__(cls)
        nn.Module.__init__(fused)
        fused._hold(module.alpha_p, module.alpha_n, module.beta, module.eps)
        fused.train(module.training)
        return fused

    def _hold(self, alpha_p, alpha_n, beta, eps):
        self.alpha_p, self.alpha_n = alpha_p, alpha_n
        self.register_buffer("beta", beta)
        self.register_buffer("eps", eps)
        self._read_constants()
        self.register_load_state_dict_post_hook(_reread_constants)

    def _read_constants(self):
        # The op takes beta and eps as numbers: read once, not per call (a GPU
        # sync). A meta module's are read at its first call once materialized.
        if self.beta.is_meta or self.eps.is_meta:
            self._beta = self._eps = None
        else:
            self._beta, self._eps = float(self.beta), float(self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._beta is None:
            self._read_constants()
        alpha_p = F.softplus(self.alpha_p)
        alpha_n = self.beta + F.softplus(self.alpha_n)
        if x.dim() == 0 or not runs_fused(x) or torch.promote_types(x.dtype, alpha_p.dtype) != x.dtype:
            return torch.where(
                x > 0,
                alpha_p * x * x + self.beta * x,
                (torch.expm1(torch.min(x, self.eps)) - x) * alpha_n + self.beta * x,
            )
        return ops.xielu(x, alpha_p, alpha_n, self._beta, self._eps)

    def extra_repr(self) -> str:
        return f"beta={self._beta}, eps={self._eps}"


class SwiGLUFFN(nn.Module):
    """LLaMA-style FFN, ``down_proj(silu(gate) * up)``, with gate and up from
    one packed projection ``gate_up_proj`` (weight ``[2·hidden_dim, dim]``,
    gate rows first) and the fused packed SwiGLU in between.

    Checkpoints with separate ``gate_proj``/``up_proj``/``down_proj`` load
    through :meth:`load_separate_state_dict`. With ``recompute=True`` the
    backward recomputes silu(gate) * up instead of keeping it (see
    ``fused_acts.patch``). For tensor parallelism, use
    ``fused_acts.tensor_parallel.swiglu_ffn_plan()``: a plain
    ``ColwiseParallel`` on ``gate_up_proj`` would split gate from up, and is
    refused.
    """

    def __init__(self, dim: int, hidden_dim: int, bias: bool = False, recompute: bool = False):
        super().__init__()
        self.dim, self.hidden_dim, self.recompute = dim, hidden_dim, recompute
        self.gate_up_proj = nn.Linear(dim, 2 * hidden_dim, bias=bias)
        self.down_proj = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if type(self.gate_up_proj.weight) is not nn.Parameter:  # a DTensor, say
            from .tensor_parallel import check_packed_weight

            check_packed_weight(type(self).__name__, self.gate_up_proj.weight)
        return packed_gated_down(GatedOp("swiglu"), self.gate_up_proj, self.down_proj, x, self.recompute)

    @staticmethod
    def pack_state_dict(state_dict: dict, prefix: str = "") -> dict:
        """A separate gate/up/down state dict (keys ``{prefix}gate_proj.weight``
        and so on) in this module's packed layout, without the prefix."""
        packed = {}
        for param in ("weight", "bias"):
            gate, up = state_dict.get(f"{prefix}gate_proj.{param}"), state_dict.get(f"{prefix}up_proj.{param}")
            if (gate is None) != (up is None):
                raise KeyError(
                    f"{prefix}gate_proj.{param} and {prefix}up_proj.{param} must both be present or both absent"
                )
            if gate is not None:
                packed[f"gate_up_proj.{param}"] = torch.cat([gate, up], dim=0)
            down = state_dict.get(f"{prefix}down_proj.{param}")
            if down is not None:
                packed[f"down_proj.{param}"] = down
        return packed

    def load_separate_state_dict(self, state_dict: dict, prefix: str = "", strict: bool = True):
        """Load weights saved by a separate gate_proj/up_proj/down_proj FFN
        (a LlamaMLP, say): gate and up are concatenated into gate_up_proj."""
        return self.load_state_dict(self.pack_state_dict(state_dict, prefix), strict=strict)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden_dim={self.hidden_dim}" + (", recompute=True" if self.recompute else "")
