"""The accuracy audit of test_accuracy.py as a table, for a results folder:
error in ulps against the float64 reference, fused and eager, forward and
gradient (in ulps of its terms), worst and mean, over the audit's inputs.

    python tests/accuracy_report.py [--device cuda] > accuracy.md
"""

import argparse
import sys
from pathlib import Path

import torch
from reference import GATED, UNARY, ref_derivative_terms
from test_accuracy import (
    AUDIT_DTYPES,
    GATE_ACTIVATION,
    audit_inputs,
    errors,
    gated_audit_inputs,
    gated_errors,
    ref_gated_eager,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import machine_info  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    device = parser.parse_args().device
    x = audit_inputs(device)
    info = machine_info(device, torch.get_num_threads())
    print(f"Machine: {', '.join(f'{k}={v}' for k, v in info.items())}")
    print(f"Accuracy audit of tests/test_accuracy.py: {x.numel()} inputs; ulps against float64\n")
    print("| activation | dtype | fwd max fused | fwd max eager | fwd mean fused | fwd mean eager "
          "| grad max fused | grad max eager | grad mean fused | grad mean eager |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, case in UNARY.items():
        for dtype in AUDIT_DTYPES:
            fwd, grad = errors(case.fused, x, dtype, name, ref_derivative_terms)
            eager_fwd, eager_grad = errors(case.eager, x, dtype, name, ref_derivative_terms)
            cells = [fwd.max(), eager_fwd.max(), fwd.mean(), eager_fwd.mean()]
            cells += [grad.max(), eager_grad.max(), grad.mean(), eager_grad.mean()]
            dtype_name = str(dtype).removeprefix("torch.")
            print(f"| {name} | {dtype_name} | " + " | ".join(f"{c.item():.3g}" for c in cells) + " |")

    gate, up = gated_audit_inputs(device)
    print(f"\nGated ops: {gate.numel()} (gate, up) pairs; max ulps against float64, fused / eager\n")
    print("| op | dtype | fwd | gate grad | up grad | fwd mean | gate grad mean | up grad mean |")
    print("|---|---|---|---|---|---|---|---|")
    for name in GATE_ACTIVATION:
        for dtype in AUDIT_DTYPES:
            ours = gated_errors(GATED[name].fused, gate, up, dtype, name)
            theirs = gated_errors(lambda g, u, name=name: ref_gated_eager(name, g, u), gate, up, dtype, name)
            cells = [f"{o.max().item():.3g} / {t.max().item():.3g}" for o, t in zip(ours, theirs)]
            cells += [f"{o.mean().item():.3g} / {t.mean().item():.3g}" for o, t in zip(ours, theirs)]
            dtype_name = str(dtype).removeprefix("torch.")
            print(f"| {name} | {dtype_name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
