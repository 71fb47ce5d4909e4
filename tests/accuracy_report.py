"""The accuracy audit of test_accuracy.py as a table, for a results folder:
error in ulps against the float64 reference, fused and eager, forward and
gradient (in ulps of its terms), worst and mean, over the audit's inputs.

    python tests/accuracy_report.py [--device cuda] > accuracy.md
"""

import argparse
import sys
from pathlib import Path

import torch
from reference import UNARY, ref_derivative_terms
from test_accuracy import AUDIT_DTYPES, audit_inputs, errors

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


if __name__ == "__main__":
    main()
