"""fused_acts benchmark: whole models, then per op and per transformer FFN
block, against eager PyTorch and torch.compile (and Liger-Kernel's SwiGLU on
CUDA when it imports).

    python -m benchmarks                     # the GPU if there is one, else the CPU; float32 + bfloat16
    python -m benchmarks --device cpu        # the CPU
    python -m benchmarks --model-compile     # the models under torch.compile too (minutes)
    python -m benchmarks --quick             # a smoke run in seconds

Each candidate's output and gradients are checked against eager once before
timing; a wrong candidate is reported, never timed. Timings are medians of
interleaved repetitions (CUDA events on the GPU). Bandwidth counts the
minimum bytes (each input read once, each output written once) and is shown
against the device's copy bandwidth, measured in the same run. The benchmark
reports; it never fails on a slow number.

Modules: timing (clocks, interleaving, copy bandwidth, warm heap), cases (one
entry per op), measure (the per-op cells), model (whole transformers models
with random weights), ffn (FFN blocks), per_call (the
cost of one call at decode sizes), quantized (fused act+quant against the op
then quantize), report (tables, JSON, plots) and __main__ (the command line).
"""
