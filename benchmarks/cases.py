"""One entry per benchmarked op: fused_acts' function, eager PyTorch's, the
inputs it takes and the minimum bytes it must move; and the candidates each
cell times."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import fused_acts


@dataclass(frozen=True)
class Case:
    fused: Callable
    eager: Callable
    inputs: str  # "unary" (x), "gated" (gate, up) or "packed" (one tensor holding gate and up)


def eager_swiglu(gate, up):
    return F.silu(gate) * up


def eager_geglu(gate, up):
    return F.gelu(gate) * up


def eager_gpt_oss_gate(gate_up, alpha=1.702, limit=7.0):
    """GPT-OSS's experts' _apply_gate, as transformers writes it."""
    gate, up = gate_up[..., ::2], gate_up[..., 1::2]
    gate = gate.clamp(min=None, max=limit)
    up = up.clamp(min=-limit, max=limit)
    glu = gate * torch.sigmoid(gate * alpha)
    return (up + 1) * glu


def eager_deepseek_v4_gate(gate, up, limit=10.0):
    """DeepSeek-V4's clamped SwiGLU (its experts' _apply_gate, on the halves), as transformers writes it."""
    return F.silu(gate.clamp(max=limit)) * up.clamp(min=-limit, max=limit)


def eager_glu(gate, value):
    return value * torch.sigmoid(gate)


def eager_reglu(gate, up):
    return F.relu(gate) * up


_XIELU_COEFFICIENTS = {}


def xielu_coefficients(device, dtype):
    """Apertus's initial coefficients, through their softplus (0.8 and 0.8), 0-dim, and its eps,
    made once per device and dtype (a dict, which torch.compile traces, not a functools cache)."""
    key = (device, dtype)
    if key not in _XIELU_COEFFICIENTS:
        _XIELU_COEFFICIENTS[key] = tuple(torch.tensor(v, device=device, dtype=dtype) for v in (0.8, 0.8, -1e-6))
    return _XIELU_COEFFICIENTS[key]


def fused_xielu(x):
    alpha_p, alpha_n, _ = xielu_coefficients(x.device, x.dtype)
    return fused_acts.xielu(x, alpha_p, alpha_n)


def eager_xielu(x):
    """transformers' XIELUActivation._xielu_python, past the softplus of its parameters."""
    alpha_p, alpha_n, eps = xielu_coefficients(x.device, x.dtype)
    return torch.where(x > 0, alpha_p * x * x + 0.5 * x, (torch.expm1(torch.min(x, eps)) - x) * alpha_n + 0.5 * x)


def packed(eager_gated):
    """eager_gated on the halves of one gate‖up tensor, as a fused projection's output is split."""
    return lambda x: eager_gated(*x.chunk(2, dim=-1))


CASES = {
    "gelu": Case(fused_acts.gelu, F.gelu, "unary"),
    "gelu_tanh": Case(lambda x: fused_acts.gelu(x, "tanh"), lambda x: F.gelu(x, approximate="tanh"), "unary"),
    "silu": Case(fused_acts.silu, F.silu, "unary"),
    "quick_gelu": Case(lambda x: fused_acts.swish(x, 1.702), lambda x: x * torch.sigmoid(1.702 * x), "unary"),
    "mish": Case(fused_acts.mish, F.mish, "unary"),
    "relu_squared": Case(fused_acts.relu_squared, lambda x: torch.square(F.relu(x)), "unary"),
    "xielu": Case(fused_xielu, eager_xielu, "unary"),
    "swiglu": Case(fused_acts.swiglu, eager_swiglu, "gated"),
    "swiglu_packed": Case(fused_acts.swiglu, packed(eager_swiglu), "packed"),
    "geglu": Case(fused_acts.geglu, eager_geglu, "gated"),
    "geglu_packed": Case(fused_acts.geglu, packed(eager_geglu), "packed"),
    "glu": Case(lambda gate, value: fused_acts.glu(value, gate), eager_glu, "gated"),
    "glu_packed": Case(fused_acts.glu, lambda x: F.glu(x, dim=-1), "packed"),
    "reglu": Case(fused_acts.reglu, eager_reglu, "gated"),
    "clamped_swiglu_deepseek_v4": Case(
        lambda x: fused_acts.clamped_swiglu(x, alpha=1.0, limit=10.0, up_offset=0.0),
        packed(eager_deepseek_v4_gate),
        "packed",
    ),
    "clamped_swiglu_interleaved": Case(
        lambda x: fused_acts.clamped_swiglu(x, interleaved=True), eager_gpt_oss_gate, "packed"
    ),
}
OPS = list(CASES)
MODES = ["fwd", "bwd", "fwdbwd"]


def liger_fn(op):
    """Liger-Kernel's fused SwiGLU, where it is installed (it needs CUDA and triton)."""
    if op not in ("swiglu", "swiglu_packed"):
        return None
    try:
        from liger_kernel.ops.swiglu import LigerSiLUMulFunction
    except Exception:
        return None
    if op == "swiglu":
        return LigerSiLUMulFunction.apply
    return packed(LigerSiLUMulFunction.apply)


def candidates(op, device, use_compile):
    """name -> function for one cell: fused, eager, and torch.compile of eager, Liger where they apply."""
    case = CASES[op]
    cands = {"fused": case.fused, "eager": case.eager}
    if use_compile:
        # F.gelu, F.silu and F.mish are builtins, which dynamo runs through one
        # shared wrapper frame: without a reset, its recompile limit is soon
        # hit and "compile" silently falls back to eager.
        torch._dynamo.reset()
        cands["compile"] = torch.compile(case.eager, dynamic=True)
    if device == "cuda" and liger_fn(op) is not None:
        cands["liger"] = liger_fn(op)
    return cands


def make_inputs(op, rows, cols, dtype, device):
    """The op's inputs for an activation of shape (rows, cols)."""
    gen = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape):
        return (torch.randn(*shape, generator=gen) * 2).to(device=device, dtype=dtype)

    kind = CASES[op].inputs
    if kind == "gated":
        return [rand(rows, cols), rand(rows, cols)]
    if kind == "packed":
        return [rand(rows, 2 * cols)]
    return [rand(rows, cols)]


def min_bytes(op, numel, itemsize, mode):
    """Each input read once and each output written once."""
    gated = CASES[op].inputs != "unary"
    fwd = (3 if gated else 2) * numel * itemsize
    bwd = (5 if gated else 3) * numel * itemsize
    return {"fwd": fwd, "bwd": bwd, "fwdbwd": fwd + bwd}[mode]
