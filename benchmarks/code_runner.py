"""Benchmark the sandboxed code runner and check that many runs leave nothing behind.

    .venv/bin/python benchmarks/code_runner.py [--runs 1000] [--latency-runs 100] [--cpp-runs 10]

Prints: median/p95 end-to-end time of a trivial Python program (target: median < 60 ms), of a
C++ compile-and-run, throughput with every slot busy (one worker process per slot, as Celery
prefork workers would call it), and, after those runs, the stray processes, scratch
directories and mounts left on the host.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation.tools import RunStatus, available_languages, preflight, run_code  # noqa: E402
from annotation.tools.sandbox import SandboxConfig, stray_report  # noqa: E402

TRIVIAL_PYTHON = "print('hello')"
CPP_PROGRAM = """#include <iostream>
#include <vector>
int main() {
    std::vector<long> squares;
    for (long i = 0; i < 1000; ++i) squares.push_back(i * i);
    std::cout << squares.back() << std::endl;
}
"""


def timed_runs(language: str, code: str, count: int) -> list[float]:
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        result = run_code(language, code)
        durations.append((time.perf_counter() - started) * 1000)
        if result.status != RunStatus.OK:
            raise SystemExit(f"{language} run failed: {result.status} {result.stderr[-500:]}")
    return durations


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def report(label: str, durations: list[float]) -> None:
    print(
        f"{label}: n={len(durations)} median={statistics.median(durations):.1f} ms "
        f"p95={percentile(durations, 0.95):.1f} ms max={max(durations):.1f} ms"
    )


def worker(count: int) -> int:
    failures = 0
    for _ in range(count):
        if run_code("python", TRIVIAL_PYTHON).status != RunStatus.OK:
            failures += 1
    return failures


def mount_count() -> int:
    return Path("/proc/self/mountinfo").read_text().count("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs for throughput and strays")
    parser.add_argument("--latency-runs", type=int, default=100)
    parser.add_argument("--cpp-runs", type=int, default=10)
    arguments = parser.parse_args()

    preflight()
    config = SandboxConfig.from_env()
    print(f"slots={config.slots} languages={','.join(available_languages())}")
    mounts_before = mount_count()

    report("python trivial", timed_runs("python", TRIVIAL_PYTHON, arguments.latency_runs))
    if "javascript" in available_languages():
        report("javascript trivial", timed_runs("javascript", "console.log('hello')", 20))
    if "cpp" in available_languages():
        report("c++ compile+run", timed_runs("cpp", CPP_PROGRAM, arguments.cpp_runs))

    workers = config.slots
    shares = [arguments.runs // workers + (i < arguments.runs % workers) for i in range(workers)]
    context = multiprocessing.get_context("fork")
    started = time.perf_counter()
    with context.Pool(workers) as pool:
        failures = sum(pool.map(worker, shares))
    elapsed = time.perf_counter() - started
    print(
        f"throughput, {workers} worker processes: {arguments.runs} runs in {elapsed:.1f} s = "
        f"{arguments.runs / elapsed:.1f} runs/s ({failures} failed)"
    )

    strays = stray_report(config)
    print(
        f"after {arguments.runs} runs: stray processes={len(strays.processes)} "
        f"scratch dirs={len(strays.scratch_dirs)} sandbox mounts={len(strays.mounts)} "
        f"host mount table change={mount_count() - mounts_before:+d}"
    )
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) at the end")


if __name__ == "__main__":
    main()
