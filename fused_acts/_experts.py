"""MoE experts whose gate patch fuses: transformers 5's experts call
_apply_gate(gate_up) on the packed gate_up projection, from a forward that
does not trace. The method itself is traced (_traced.py) and its gate
recognised by its computation, as any forward's: act_fn(gate) * up,
GPT-OSS's clamped SwiGLU (MiniMax's under other names), a float32 SwiGLU
(Beam), gate and up halves or interleaved. It then runs as one packed op,
counted as "<label>Experts"."""

from ._traced import fused_methods


def experts_gate_methods(module):
    """The fused _apply_gate and counts for MoE experts whose gate computes
    fused activations, else None."""
    found = fused_methods(module, "_apply_gate")
    if found is None:
        return None
    methods, counts = found
    return methods, {f"{label}Experts": count for label, count in counts.items()}
