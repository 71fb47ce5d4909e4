"""Whole models: what patch does for a transformers causal LM, built from its
config with random weights (nothing to download). Per candidate: a training
step (forward with the loss, backward), the bytes it keeps for backward and,
on CUDA, its peak memory; a prefill; greedy decode with the KV cache, in
tokens per second, and whether its tokens are eager's."""

import inspect
import math
from dataclasses import dataclass

import torch

from .ffn import patched, peak_memory, saved_bytes
from .measure import Row, tolerances
from .timing import interleaved_medians

MODELS = ["llama", "qwen3_moe", "gpt_oss"]
CANDIDATES = ["eager", "patch", "patch_recompute"]
COMPILED = ["compile", "compile_patch", "compile_fused_acts"]


@dataclass
class Shape:
    """A model's size and its workload: what --model-* sets."""

    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    experts: int
    experts_per_token: int
    batch: int
    seq: int
    prompt: int
    decode_tokens: int

    @property
    def expert_intermediate(self):
        """An MoE model's expert width: a quarter of the dense one, as Qwen3-30B-A3B's is."""
        return self.intermediate // 4

    def describe(self, name):
        ffn = (
            f"{self.experts} experts of {self.expert_intermediate}, top {self.experts_per_token}"
            if name != "llama"
            else f"intermediate {self.intermediate}"
        )
        return (
            f"{self.layers} layers, hidden {self.hidden}, {ffn}, vocab {self.vocab}; "
            f"train {self.batch}×{self.seq} tokens, prefill 1×{self.seq}, "
            f"greedy decode of {self.decode_tokens} tokens after a {self.prompt}-token prompt"
        )


DEFAULT_SHAPES = {
    "cpu": Shape(2, 1024, 2816, 8192, 16, 4, 8, 2, 2, 128, 16, 16),
    "cuda": Shape(4, 2048, 8192, 32768, 16, 4, 16, 2, 4, 1024, 128, 32),
}
QUICK_SHAPE = Shape(2, 64, 128, 256, 4, 2, 4, 2, 2, 16, 4, 4)


def config(name, s):
    import transformers

    common = dict(
        vocab_size=s.vocab,
        hidden_size=s.hidden,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.kv_heads,
    )
    if name == "llama":
        return transformers.LlamaConfig(**common, intermediate_size=s.intermediate)
    if name == "qwen3_moe":
        return transformers.Qwen3MoeConfig(
            **common,
            intermediate_size=s.intermediate,
            moe_intermediate_size=s.expert_intermediate,
            num_experts=s.experts,
            num_experts_per_tok=s.experts_per_token,
            head_dim=s.hidden // s.heads,
        )
    if name == "gpt_oss":
        return transformers.GptOssConfig(
            **common,
            intermediate_size=s.expert_intermediate,
            num_local_experts=s.experts,
            num_experts_per_tok=s.experts_per_token,
            head_dim=s.hidden // s.heads,
            sliding_window=max(1, s.seq // 2),
            layer_types=["sliding_attention", "full_attention"] * (s.layers // 2) + ["full_attention"] * (s.layers % 2),
        )
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def build(name, shape, dtype, device):
    import transformers

    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config(name, shape)).to(device=device, dtype=dtype)


def candidates(eager, use_compile):
    """name -> model, all with eager's weights; the compiled ones wrap eager or its patched copy."""
    models = {"eager": eager, "patch": patched(eager), "patch_recompute": patched(eager, recompute=True)}
    if use_compile:
        torch._dynamo.reset()
        models["compile"] = torch.compile(eager)
        models["compile_patch"] = torch.compile(models["patch"])
        models["compile_fused_acts"] = torch.compile(eager, backend="fused_acts")
    return models


def train_step(model, ids):
    def run():
        model.zero_grad(set_to_none=True)
        model(ids, labels=ids).loss.backward()

    return run


def prefill(model, ids):
    def run():
        with torch.inference_mode():
            model(ids, use_cache=True, logits_to_keep=1)

    return run


def cache_argument(model):
    """The KV cache's name in model's forward and output: cache from transformers 5.25, past_key_values before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def greedy(model, prompt, steps, cache):
    """steps greedy tokens after prompt, with the KV cache: the prompt's prefill, then a call per token."""
    with torch.inference_mode():
        out = model(prompt, use_cache=True, logits_to_keep=1)
        tokens = [out.logits[:, -1:].argmax(-1)]
        for _ in range(steps - 1):
            out = model(tokens[-1], use_cache=True, **{cache: out[cache]})
            tokens.append(out.logits[:, -1:].argmax(-1))
    return torch.cat(tokens, 1)


def first_difference(tokens, reference):
    """None where the greedy tokens are eager's, else the index of the first that is not."""
    differs = (tokens != reference).flatten().nonzero()
    return None if differs.numel() == 0 else int(differs[0])


def loss_problems(models, ids, dtype):
    """candidate -> what differs, for each one whose training loss is not eager's within the dtype's tolerance."""
    rtol, _ = tolerances(dtype)
    with torch.no_grad():
        losses = {k: float(m(ids, labels=ids).loss) for k, m in models.items()}
    ref = losses["eager"]
    return {k: f"loss {v:.6g}, eager's {ref:.6g}" for k, v in losses.items() if not math.isclose(v, ref, rel_tol=rtol)}


def bench_model(name, shape, dtype, device, timer, args):
    """Rows for one model at one dtype: a row per candidate and measure (train, prefill, decode)."""
    eager = build(name, shape, dtype, device)
    models = candidates(eager, args.model_compile)
    gen = torch.Generator().manual_seed(1)
    train_ids = torch.randint(0, shape.vocab, (shape.batch, shape.seq), generator=gen).to(device)
    prefill_ids = train_ids[:1]
    prompt = train_ids[:1, : shape.prompt]
    problems = loss_problems(models, train_ids, dtype)
    timed = {k: m for k, m in models.items() if k not in problems}
    cache = cache_argument(eager)
    reference = greedy(eager, prompt, shape.decode_tokens, cache)
    tokens = {k: greedy(m, prompt, shape.decode_tokens, cache) for k, m in timed.items()}
    # A model step takes long: one warm-up round, which compiles, is enough.
    reps = dict(warmup=1, min_reps=args.min_reps, max_reps=args.max_reps, budget_s=args.budget)
    medians = {
        "train": interleaved_medians({k: train_step(m, train_ids) for k, m in timed.items()}, timer, **reps)[0],
        "prefill": interleaved_medians({k: prefill(m, prefill_ids) for k, m in timed.items()}, timer, **reps)[0],
        "decode": interleaved_medians(
            {k: lambda m=m: greedy(m, prompt, shape.decode_tokens, cache) for k, m in timed.items()}, timer, **reps
        )[0],
    }
    dtype_name = str(dtype).removeprefix("torch.")
    sizes = [shape.layers, shape.hidden, shape.intermediate, shape.vocab]
    numel = {"train": shape.batch * shape.seq, "prefill": shape.seq, "decode": shape.decode_tokens}
    rows = []
    for k, model in models.items():
        for measure, by in medians.items():
            row = Row("model", device, dtype_name, name, measure, sizes, numel[measure], k)
            rows.append(row)
            if k in problems:
                row.error = f"wrong result, not timed: {problems[k]}"
                continue
            row.median_ms = by[k] * 1e3
            row.speedup_vs_eager = by["eager"] / by[k]
            if measure == "train":
                # Saved-tensor hooks see a compiled graph's own saving, not what it keeps.
                if not k.startswith("compile"):
                    row.saved_mb = saved_bytes(model, train_ids, labels=train_ids) / 2**20
                row.peak_mb = peak_memory(train_step(model, train_ids), device) / 2**20
            if measure == "decode":
                row.extra = {
                    "tokens_per_s": shape.decode_tokens / by[k],
                    "first_token_unlike_eager": first_difference(tokens[k], reference),
                    "shape": shape.describe(name),
                }
    return rows
