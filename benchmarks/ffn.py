"""Transformer FFN blocks, forward+backward: what users run, timed with the
bytes each keeps for backward and, on CUDA, its peak memory. The fused blocks
are fused_acts' own: SwiGLUFFN, and eager blocks put through fused_acts.patch;
with compile, also the eager block under torch.compile (Inductor) and under
torch.compile(backend="fused_acts")."""

import copy
import math

import torch
from torch import nn

import fused_acts
from fused_acts.nn import SwiGLUFFN
from fused_acts.testing import saved_bytes

from .measure import Row, check_against_eager
from .timing import interleaved_medians


class LlamaMLP(nn.Module):
    """Llama's gated FFN, forward as transformers writes it (so patch fuses it)."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)
        self.act_fn = nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class PackedMLP(nn.Module):
    """The eager twin of SwiGLUFFN (Phi-3's form): one gate_up_proj, split, silu(gate) * up."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.gate_up_proj = nn.Linear(dim, 2 * hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(nn.functional.silu(gate) * up)


def patched(eager, recompute=False):
    fused = copy.deepcopy(eager)
    fused_acts.patch(fused, recompute=recompute)
    return fused


def compiled(eager, use_compile):
    """The compiled candidates of an eager block, sharing its weights."""
    if not use_compile:
        return {}
    return {"compile": torch.compile(eager), "compile_fused_acts": torch.compile(eager, backend="fused_acts")}


def ffn_blocks(dim, hidden, use_compile=False):
    """name -> {candidate: block}, sharing weights: fused, eager, for the
    gated blocks the fused block that recomputes its activation in backward,
    and the compiled ones."""
    llama = LlamaMLP(dim, hidden)
    packed_fused = SwiGLUFFN(dim, hidden)
    packed_recompute = SwiGLUFFN(dim, hidden, recompute=True)
    packed_eager = PackedMLP(dim, hidden)
    packed_recompute.load_state_dict(packed_fused.state_dict())
    packed_eager.load_state_dict(packed_fused.state_dict())
    gelu = nn.Sequential(nn.Linear(dim, hidden), nn.GELU("tanh"), nn.Linear(hidden, dim))
    torch._dynamo.reset()
    return {
        "llama_mlp": {
            "fused": patched(llama),
            "recompute": patched(llama, recompute=True),
            "eager": llama,
            **compiled(llama, use_compile),
        },
        "llama_mlp_packed": {
            "fused": packed_fused,
            "recompute": packed_recompute,
            "eager": packed_eager,
            **compiled(packed_eager, use_compile),
        },
        "gelu_mlp": {"fused": patched(gelu), "eager": gelu, **compiled(gelu, use_compile)},
    }


def peak_memory(step, device):
    """CUDA: the bytes step() allocates at its peak, above what was allocated before; nan elsewhere."""
    if device != "cuda":
        return math.nan
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def cpu_lacks_matmul(dtype):
    """True where oneDNN has no kernel for this 16-bit dtype on this CPU (for
    bfloat16: no AVX-512 or AMX). torch then falls back to a generic loop,
    about 70× slower than float32 (one 512×1024×2816 bfloat16 matmul took 3 s
    on an AVX2 Zen 3), and an FFN block is mostly matmul."""
    check = {
        torch.bfloat16: torch.ops.mkldnn._is_mkldnn_bf16_supported,
        torch.float16: torch.ops.mkldnn._is_mkldnn_fp16_supported,
    }.get(dtype)
    return check is not None and not check()


def bench_ffn(tokens, dim, hidden, dtype, device, timer, args):
    """Rows for every block at one shape and dtype: a row per candidate, forward+backward."""
    rows = []
    for name, candidates in ffn_blocks(dim, hidden, not args.no_compile).items():
        blocks = {k: block.to(device=device, dtype=dtype) for k, block in candidates.items()}
        x = torch.randn(tokens, dim, device=device, dtype=dtype)
        xs = {k: x.clone().requires_grad_() for k in blocks}
        problems = [
            check_against_eager(block, blocks["eager"], [x], dtype) for k, block in blocks.items() if k != "eager"
        ]
        problem = next((p for p in problems if p), None)

        def step(block, x):
            def run():
                block.zero_grad(set_to_none=True)
                block(x).sum().backward()

            return run

        steps = {k: step(blocks[k], xs[k]) for k in blocks}
        medians = (
            {}
            if problem
            else interleaved_medians(steps, timer, args.warmup, args.min_reps, args.max_reps, args.budget)[0]
        )
        for k, block in blocks.items():
            dtype_name = str(dtype).removeprefix("torch.")
            row = Row("ffn", device, dtype_name, name, "fwdbwd", [tokens, dim, hidden], tokens * hidden, k)
            if problem:
                row.error = f"wrong result, not timed: {problem}"
            else:
                row.median_ms = medians[k] * 1e3
                row.speedup_vs_eager = medians["eager"] / medians[k]
            # Saved-tensor hooks see a compiled graph's own saving, not what it keeps.
            row.saved_mb = math.nan if k.startswith("compile") else saved_bytes(block, xs[k]) / 2**20
            row.peak_mb = peak_memory(steps[k], device) / 2**20
            rows.append(row)
    return rows
