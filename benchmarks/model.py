"""Whole models: what patch does for a transformers causal LM, built from its
config with random weights (nothing to download). Per candidate: a training
step (forward with the loss, backward), the bytes it keeps for backward and,
on CUDA, its peak memory; a prefill; greedy decode with the KV cache, in
tokens per second, and whether its tokens are eager's."""

import dataclasses
import inspect
import math
from dataclasses import dataclass

import torch

from fused_acts.testing import Sizes, saved_bytes, tiny_config

from .ffn import patched, peak_memory
from .measure import Row, tolerances
from .tables import fmt
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
    """name's transformers config at shape s's sizes."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
    # Shape names its sizes as Sizes does; positions stay the config's default.
    shared = {f.name: getattr(s, f.name) for f in dataclasses.fields(Sizes) if f.name != "positions"}
    sizes = Sizes(**shared, positions=None)
    return tiny_config(name, sizes, **({"sliding_window": max(1, s.seq // 2)} if name == "gpt_oss" else {}))


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


def lines(model_rows):
    """The whole-model table: a line per model, dtype and candidate, with its
    training step, bytes saved for backward, peak (CUDA), prefill and greedy
    decode, each with its ratio to eager (eager's ÷ the candidate's), and
    whether greedy tokens are eager's."""
    if not model_rows:
        return []
    lines = ["## Whole models", "", "transformers models built from their configs, random weights:", ""]
    for name, describe in dict.fromkeys((r.op, r.extra["shape"]) for r in model_rows if "shape" in r.extra):
        lines.append(f"- {name}: {describe}")
    with_peak = any(not math.isnan(r.peak_mb) for r in model_rows)
    header = ["model", "dtype", "candidate", "train ms", "× eager", "saved MB", "× eager"]
    header += (["peak MB"] if with_peak else []) + ["prefill ms", "× eager", "decode tok/s", "× eager"]
    header += ["greedy = eager"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups = {}
    for r in model_rows:
        groups.setdefault((r.op, r.dtype), {}).setdefault(r.candidate, {})[r.workload] = r
    for (name, dtype), by in groups.items():
        eager = by["eager"]
        for candidate, measures in by.items():
            train, prefill, decode = (measures[m] for m in ("train", "prefill", "decode"))
            cells = [name, dtype, candidate, fmt(train.median_ms, ".1f"), fmt(train.speedup_vs_eager, ".3f")]
            cells += [fmt(train.saved_mb, ".1f"), fmt(eager["train"].saved_mb / train.saved_mb, ".2f")]
            cells += [fmt(train.peak_mb, ".0f")] if with_peak else []
            cells += [fmt(prefill.median_ms, ".2f"), fmt(prefill.speedup_vs_eager, ".3f")]
            cells += [fmt(decode.extra.get("tokens_per_s"), ".1f"), fmt(decode.speedup_vs_eager, ".3f")]
            if train.error:
                cells.append(train.error)
            else:
                first = decode.extra["first_token_unlike_eager"]
                cells.append("yes" if first is None else f"no, from token {first}")
            lines.append("| " + " | ".join(cells) + " |")
    return lines + [
        "",
        "train ms: a training step (forward with the loss, then backward); saved MB: the activations autograd "
        "keeps for backward, parameters excluded"
        + ("; peak MB: the step's peak allocation above the model's" if with_peak else "")
        + "; prefill ms: a forward over the prompt; decode tok/s: greedy decoding with the KV cache; "
        "greedy = eager: whether the decoded tokens are eager's.",
        "",
    ]
