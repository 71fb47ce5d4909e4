"""Measures the build as a user runs it: a wheel built from this tree with
`pip wheel --no-build-isolation`, the wall time, each file's compile time
(ninja's logs), the compilers' peak memory, and the wheel's and the
extensions' sizes.

    python -m benchmarks.build --jobs 2 --out build_report.md

It builds in a temporary copy of the tree, so it never touches an
installed or editable build. Environment variables (FUSED_ACTS_CUDA,
FUSED_ACTS_DEBUG, ...) pass through to setup.py."""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPILERS = ("cc1plus", "cicc", "ptxas", "cudafe++", "nvcc")


def compiler_sampler(peaks, cpu, stop):
    """Polls /proc for the compilers: each process's peak resident memory
    (MB) and the CPU time it had used when last seen (s)."""
    tick = os.sysconf("SC_CLK_TCK")
    while not stop.is_set():
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                status = (proc / "status").read_text()
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if fields.get("Name", "").strip() in COMPILERS and "VmHWM" in fields:
                peaks[proc.name] = max(peaks.get(proc.name, 0), int(fields["VmHWM"].split()[0]) / 1024)
                user, system = stat.rsplit(")", 1)[1].split()[11:13]
                cpu[proc.name] = (int(user) + int(system)) / tick
        time.sleep(0.5)


def compile_times(build):
    """(seconds, object) for each file compiled, from ninja's logs."""
    times = []
    for log in build.rglob(".ninja_log"):
        for line in log.read_text().splitlines()[1:]:
            start, end, _, output, _ = line.split("\t")
            times.append(((int(end) - int(start)) / 1000, str(Path(output).relative_to(build))))
    return sorted(times, reverse=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="MAX_JOBS for the build")
    parser.add_argument("--out", type=Path, help="write the report here (markdown) as well")
    parser.add_argument("--wheel-dir", type=Path, help="keep the wheel in this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "fused_acts"
        shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns("build", "*.so", ".git", "bench_out", "*.egg-info"))
        peaks, cpu, stop = {}, {}, threading.Event()
        sampler = threading.Thread(target=compiler_sampler, args=(peaks, cpu, stop), daemon=True)
        sampler.start()
        env = {**os.environ, "MAX_JOBS": str(args.jobs)}
        command = [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", "dist", "."]
        start = time.perf_counter()
        subprocess.run(command, cwd=tree, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - start
        stop.set()
        sampler.join()
        (wheel,) = (tree / "dist").glob("*.whl")
        if args.wheel_dir:
            args.wheel_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(wheel, args.wheel_dir)
        with zipfile.ZipFile(wheel) as archive:
            libraries = {i.filename: i.file_size for i in archive.infolist() if i.filename.endswith(".so")}
        times = compile_times(tree / "build")
        total = sum(seconds for seconds, _ in times)
        lines = [
            f"- wall time, MAX_JOBS={args.jobs}: {wall:.0f} s",
            f"- the compilers' CPU time: {sum(cpu.values()):.0f} s",
            f"- compile time of every file, as ninja timed it: {total:.0f} s; the slowest file {times[0][0]:.0f} s "
            f"({100 * times[0][0] / total:.0f}% of it)",
            f"- compilers' peak memory, one process: {max(peaks.values(), default=0):.0f} MiB",
            f"- wheel: {wheel.stat().st_size / 2**20:.1f} MiB; extensions installed: "
            f"{sum(libraries.values()) / 2**20:.1f} MiB",
            "",
            "| file | compile s |",
            "|---|---|",
            *(f"| {name} | {seconds:.0f} |" for seconds, name in times),
            "",
            "| extension | MiB |",
            "|---|---|",
            *(f"| {name} | {size / 2**20:.1f} |" for name, size in sorted(libraries.items())),
        ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
