"""The benchmark harness on tiny sizes: correctness gating, row fields, JSON
output and --quick. It measures; nothing here asserts a speed."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import __main__ as bench
from benchmarks import cases, ffn, measure, model, quantized


def test_quick_run_writes_rows_json_and_table(tmp_path, capsys):
    rows = bench.main(
        [
            "--quick",
            "--no-compile",
            "--ops",
            "silu,swiglu_packed",
            "--dtypes",
            "float32",
            "--sizes",
            "8x64",
            "--out",
            str(tmp_path),
        ]
    )
    table = capsys.readouterr().out
    op_rows = [r for r in rows if r.kind == "op"]
    assert {(r.op, r.workload, r.candidate) for r in op_rows} == {
        (op, mode, cand)
        for op in ("silu", "swiglu_packed")
        for mode in ("fwd", "fwdbwd")
        for cand in ("fused", "eager")
    }
    for r in op_rows:
        assert r.shape == [8, 64] and r.numel == 512 and r.dtype == "float32" and not r.error
        assert r.median_ms > 0 and r.gbps > 0 and r.pct_of_copy > 0 and r.speedup_vs_eager > 0
        assert math.isnan(r.speedup_vs_compile)
    ffn_rows = [r for r in rows if r.kind == "ffn"]
    assert {r.op for r in ffn_rows} == {"llama_mlp", "llama_mlp_packed", "gelu_mlp"}
    assert all(not r.error and r.median_ms > 0 for r in ffn_rows)
    saved = {(r.op, r.candidate): r.saved_mb for r in ffn_rows}
    for block in ("llama_mlp", "llama_mlp_packed"):
        # silu(gate) is never saved, and with recompute neither is h.
        assert saved[block, "recompute"] < saved[block, "fused"] < saved[block, "eager"]
    assert ("gelu_mlp", "recompute") not in saved
    call_rows = [r for r in rows if r.kind == "call"]
    assert {(r.op, r.workload, r.candidate, tuple(r.shape)) for r in call_rows} == {
        (op, mode, cand, shape)
        for op in ("silu", "swiglu_packed")
        for mode in ("inference_mode", "no_grad", "fwdbwd")
        for cand in ("fused", "eager")
        for shape in ((1, 4096), (32, 14336))
    }
    assert all(r.median_ms > 0 and not r.error for r in call_rows)
    assert "| silu | float32 | 1×4096 |" in table.split("Per call")[1]
    quant_rows = [r for r in rows if r.kind == "quant"]
    assert {(r.op, r.out_format, r.candidate, tuple(r.shape)) for r in quant_rows} == {
        ("swiglu_packed", fmt, cand, shape)
        for fmt in quantized.FORMATS
        for cand in ("fused", "eager")
        for shape in quantized.QUICK_SIZES
    }
    assert all(r.median_ms > 0 and r.speedup_vs_eager > 0 and not r.error for r in quant_rows)
    assert "| swiglu_packed | float32 | 8×512 | fp8_e4m3_group32_e8m0 |" in table.split("Quantized outputs")[1]
    check_model_rows([r for r in rows if r.kind == "model"], table)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["machine"]["torch"] == torch.__version__ and data["copy_gbps"] > 0
    assert len(data["rows"]) == len(rows)
    assert set(data["rows"][0]) >= {"op", "workload", "candidate", "median_ms", "gbps"}
    assert "| silu | float32 | 8×64 | fwd |" in table.split("## Per op")[1]
    assert "- fwd, fused vs eager:" in table.split("### Geometric means")[1]
    sections = [line for line in table.splitlines() if line.startswith("## ")]
    names = ("Whole models", "Per op", "FFN blocks", "Per call", "Quantized outputs", "Activation monitor")
    assert sections == [f"## {name}" for name in names]
    assert (tmp_path / "results.md").read_text().strip() == table.strip().split("\nwrote")[0].strip()


def check_model_rows(model_rows, table):
    """--quick's model section: every model, candidate and measure, timed
    and correct, with what each keeps for backward."""
    if importlib.util.find_spec("transformers") is None:
        assert not model_rows
        return
    assert {(r.op, r.candidate, r.workload) for r in model_rows} == {
        (name, cand, measure)
        for name in model.MODELS
        for cand in model.CANDIDATES
        for measure in ("train", "prefill", "decode")
    }
    assert all(r.median_ms > 0 and r.speedup_vs_eager > 0 and not r.error for r in model_rows)
    by = {(r.op, r.candidate, r.workload): r for r in model_rows}
    for name in model.MODELS:
        # The fused activations save less than eager's, and recompute less again where a down projection is a Linear.
        saved = [by[name, cand, "train"].saved_mb for cand in ("patch_recompute", "patch", "eager")]
        assert saved[0] <= saved[1] < saved[2], (name, saved)
        for cand in model.CANDIDATES:
            decode = by[name, cand, "decode"].extra
            assert decode["tokens_per_s"] > 0 and decode["first_token_unlike_eager"] is None, (name, cand)
    assert by["llama", "patch_recompute", "train"].saved_mb < by["llama", "patch", "train"].saved_mb
    assert "| llama | float32 | patch_recompute |" in table.split("Whole models")[1]


def test_wrong_candidate_is_reported_not_timed(monkeypatch):
    def wrong_candidates(op, device, use_compile):
        case = cases.CASES[op]
        return {"fused": lambda x: case.fused(x) * 1.01, "eager": case.eager}

    monkeypatch.setattr(cases, "candidates", wrong_candidates)
    args = bench.parse_args(["--quick"])
    rows = measure.bench_op("mish", 4, 32, torch.float32, "cpu", ["fwd"], bench.Timer("cpu"), 1e10, args)
    fused = next(r for r in rows if r.candidate == "fused")
    assert fused.error.startswith("wrong result, not timed") and math.isnan(fused.median_ms)
    assert "wrong result" in bench.render_tables(rows, {"device": "cpu"}, 10.0)


def test_ffn_skips_a_dtype_the_cpu_has_no_matmul_for(monkeypatch, capsys):
    monkeypatch.setattr(ffn, "cpu_lacks_matmul", lambda dtype: dtype == torch.bfloat16)
    rows = bench.main(["--quick", "--no-compile", "--ops", "silu", "--dtypes", "float32,bfloat16", "--modes", "fwd"])
    assert {r.dtype for r in rows if r.kind == "op"} == {"float32", "bfloat16"}
    assert {r.dtype for r in rows if r.kind == "ffn"} == {"float32"}
    assert "ffn=bfloat16 skipped (no oneDNN matmul on this CPU)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, shape", [("2^20", (256, 4096)), ("4M", (1024, 4096)), ("4096x11008", (4096, 11008)), ("100", (25, 4))]
)
def test_parse_size(text, shape):
    assert bench.parse_size(text) == shape


def test_min_bytes_counts_each_input_and_output_once():
    assert cases.min_bytes("silu", 10, 2, "fwd") == 40
    assert cases.min_bytes("silu", 10, 2, "fwdbwd") == 100
    assert cases.min_bytes("swiglu", 10, 2, "bwd") == 100
    assert cases.min_bytes("geglu_packed", 10, 2, "fwd") == 60


@pytest.mark.parametrize("op", cases.OPS)
def test_every_case_matches_eager(op):
    """The cases' fused and eager functions agree, so a wrong case cannot hide
    behind the harness's own check (which reports and skips it)."""
    inputs = cases.make_inputs(op, 4, 32, torch.float32, "cpu")
    assert measure.check_against_eager(cases.CASES[op].fused, cases.CASES[op].eager, inputs, torch.float32) is None


def test_ffn_blocks_share_weights_and_fuse():
    """The fused blocks are fused_acts' SwiGLUFFN, patched eager blocks and
    eager blocks under the compile backend, and compute what their eager
    twins do, forward and backward; plain torch.compile runs no fused op."""
    x = torch.randn(5, 16, requires_grad=True)
    for name, blocks in ffn.ffn_blocks(16, 24, use_compile=True).items():
        (expected_grad,) = torch.autograd.grad(blocks["eager"](x).sum(), x)
        for candidate, block in blocks.items():
            with torch.profiler.profile() as prof:
                out = block(x)
            fused_ran = any(e.name.startswith("fused_acts::") for e in prof.events())
            assert fused_ran != (candidate in ("eager", "compile")), f"{name} {candidate}"
            torch.testing.assert_close(out, blocks["eager"](x), msg=f"{name} {candidate}")
            (grad,) = torch.autograd.grad(out.sum(), x)
            torch.testing.assert_close(grad, expected_grad, msg=f"{name} {candidate}")


def test_compile_candidate_never_falls_back_to_eager(monkeypatch):
    # Past dynamo's recompile limit, a compiled function quietly runs eagerly;
    # every cell of a default run must stay compiled.
    monkeypatch.setattr(torch._dynamo.config, "fail_on_recompile_limit_hit", True)
    for dtype in (torch.float32, torch.bfloat16):
        for op in ("gelu", "silu", "mish"):
            for shape in ((4, 32), (8, 64)):
                compiled = cases.candidates(op, "cpu", use_compile=True)["compile"]
                x = torch.randn(shape, dtype=dtype)
                for inputs in (x, x.clone().requires_grad_()):
                    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                        out = compiled(inputs)
                    ran_compiled = any(e.name.startswith("Torch-Compiled Region") for e in prof.events())
                    assert ran_compiled, f"{op} {dtype} {shape}: ran eagerly"
                    torch.testing.assert_close(out, cases.CASES[op].eager(inputs))
                out.sum().backward()


@pytest.mark.skipif(sys.platform != "linux", reason="glibc mallopt")
def test_cpu_timings_run_on_warm_memory():
    # Without keep_freed_memory_mapped, each fresh 64 MiB output takes 16384 page faults.
    rows = bench.main(
        [
            "--no-compile",
            "--no-ffn",
            "--ops",
            "silu,swiglu_packed",
            "--dtypes",
            "float32",
            "--sizes",
            "2^24",
            "--min-reps",
            "3",
            "--max-reps",
            "5",
            "--budget",
            "0.05",
        ]
    )
    op_rows = [r for r in rows if r.kind == "op"]
    assert len(op_rows) == 8
    assert all(r.page_faults < 100 for r in op_rows), [(r.op, r.workload, r.candidate, r.page_faults) for r in op_rows]


def test_command_line_help_runs_as_a_module():
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0 and "python -m benchmarks" in result.stdout


def test_model_options_set_the_shape():
    shape = bench.model_shape(bench.parse_args(["--quick", "--model-layers", "3", "--model-decode-tokens", "7"]))
    assert (shape.layers, shape.decode_tokens, shape.hidden) == (3, 7, model.QUICK_SHAPE.hidden)
    assert bench.model_shape(bench.parse_args(["--device", "cpu"])) == model.DEFAULT_SHAPES["cpu"]


@pytest.mark.parametrize("available", [True, False])
def test_device_defaults_to_cuda_when_available(monkeypatch, available):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert bench.parse_args([]).device == ("cuda" if available else "cpu")


def test_wrong_model_candidate_is_reported_not_timed(monkeypatch):
    pytest.importorskip("transformers")
    candidates = model.candidates

    def with_a_wrong_one(eager, use_compile):
        models = candidates(eager, use_compile)
        with torch.no_grad():
            models["patch"].model.norm.weight.mul_(1.5)
        return models

    monkeypatch.setattr(model, "candidates", with_a_wrong_one)
    args = bench.parse_args(["--quick"])
    rows = model.bench_model("llama", model.QUICK_SHAPE, torch.float32, "cpu", bench.Timer("cpu"), args)
    wrong = [r for r in rows if r.candidate == "patch"]
    assert len(wrong) == 3 and all(r.error.startswith("wrong result, not timed: loss") for r in wrong)
    assert all(math.isnan(r.median_ms) for r in wrong)
    assert all(not r.error and r.median_ms > 0 for r in rows if r.candidate != "patch")
    assert "wrong result, not timed" in bench.render_tables(rows, {"device": "cpu"}, 10.0)


def test_model_compile_candidates_wrap_eager_and_the_patched_copy():
    pytest.importorskip("transformers")
    eager = model.build("llama", model.QUICK_SHAPE, torch.float32, "cpu")
    models = model.candidates(eager, use_compile=True)
    assert list(models) == model.CANDIDATES + model.COMPILED
    assert models["compile"]._orig_mod is eager and models["compile_fused_acts"]._orig_mod is eager
    assert models["compile_patch"]._orig_mod is models["patch"]
    ids = torch.randint(0, model.QUICK_SHAPE.vocab, (1, 8))
    for name, fused in (("eager", False), ("patch", True), ("patch_recompute", True)):
        with torch.profiler.profile() as prof:
            models[name](ids)
        assert any(e.name.startswith("fused_acts::") for e in prof.events()) == fused, name
