"""The accuracy audit of test_accuracy.py as a table, for a results folder:
error in ulps against the float64 reference, fused and eager, forward and
gradient (in ulps of its terms), worst and mean, over the audit's inputs.

    python tests/accuracy_report.py [--device cuda] > accuracy.md
"""

import argparse
import datetime
import platform

import torch
from reference import UNARY, ref_derivative_terms
from test_accuracy import AUDIT_DTYPES, audit_inputs, errors

import fused_acts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    device = parser.parse_args().device
    where = torch.cuda.get_device_name() if device == "cuda" else f"{platform.processor() or platform.machine()} CPU"
    x = audit_inputs(device)
    print(f"Accuracy audit, {datetime.date.today()}, {where}, torch {torch.__version__}, "
          f"CPU kernels {fused_acts._extension.cpu_capability}, {x.numel()} inputs\n")  # fmt: skip
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
