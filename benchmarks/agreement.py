"""Krippendorff's alpha at campaign scale: scoring.agreement against the krippendorff package.

Run: .venv/bin/python benchmarks/agreement.py [--pairs N] [--repeat R] [--n-boot B]

Data: N pairs x 3 annotators, 10% of labels missing, annotators who agree with a hidden
preference 70% of the time and otherwise answer at random. Each section below is a function
that takes the shared BenchmarkContext and returns Measurements; add a section (for example
"alpha from PostgreSQL end to end") by writing one more such function and listing it in
SECTIONS. Timings are the best of --repeat runs; peak memory is measured in a separate
tracemalloc run so it does not slow the timed ones.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import krippendorff
import numpy as np

# Run as a script, only benchmarks/ is on the path; the repo root must come first.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoring.agreement import (  # noqa: E402
    alpha_confidence_interval,
    alpha_from_pattern_histogram,
    alpha_from_value_counts,
    krippendorff_alpha,
    value_counts_from_reliability_data,
)

ANNOTATORS = 3
MISSING_SHARE = 0.1
AGREEMENT_SHARE = 0.7
TARGET_SPEEDUP = 5.0


@dataclass(frozen=True)
class Scenario:
    name: str
    values: tuple[int, ...]
    level: str


SCENARIOS = (
    Scenario("nominal, binary (A / B)", (0, 1), "nominal"),
    Scenario("nominal, 3 values (A / tie / B)", (-1, 0, 1), "nominal"),
    Scenario("ordinal, 5-point scale", (-2, -1, 0, 1, 2), "ordinal"),
)


@dataclass(frozen=True)
class Measurement:
    section: str
    scenario: str
    method: str
    seconds: float
    peak_mib: float
    alpha: float | None = None


@dataclass
class BenchmarkContext:
    pairs: int
    repeat: int
    n_boot: int
    seed: int
    reliability_data: dict[str, np.ndarray]


T = TypeVar("T")
Section = Callable[[BenchmarkContext], list[Measurement]]


def main() -> None:
    arguments = parse_arguments()
    context = BenchmarkContext(
        pairs=arguments.pairs,
        repeat=arguments.repeat,
        n_boot=arguments.n_boot,
        seed=arguments.seed,
        reliability_data={
            scenario.name: synthetic_reliability_data(arguments.pairs, scenario, arguments.seed)
            for scenario in SCENARIOS
        },
    )
    print(
        f"{arguments.pairs:,} pairs x {ANNOTATORS} annotators, {MISSING_SHARE:.0%} missing; "
        f"best of {arguments.repeat} run(s); numpy {np.__version__}"
    )
    measurements: list[Measurement] = []
    for section in SECTIONS:
        measurements.extend(section(context))
    print_summary(measurements)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000, help="number of pairs (units)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=2025)
    return parser.parse_args()


def synthetic_reliability_data(pairs: int, scenario: Scenario, seed: int) -> np.ndarray:
    """Annotators x pairs labels (NaN = missing) that agree with a hidden preference."""
    rng = np.random.default_rng(seed)
    values = np.asarray(scenario.values, dtype=np.float64)
    truth = rng.choice(values, size=pairs)
    random_answers = rng.choice(values, size=(ANNOTATORS, pairs))
    labels = np.where(rng.random((ANNOTATORS, pairs)) < AGREEMENT_SHARE, truth, random_answers)
    labels[rng.random((ANNOTATORS, pairs)) < MISSING_SHARE] = np.nan
    return labels


def measure(function: Callable[[], T], repeat: int) -> tuple[T, float, float]:
    """(result, best seconds over ``repeat`` runs, peak MiB allocated during one run)."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        function()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, best, peak / 2**20  # type: ignore[return-value]


def section_alpha_from_reliability_data(context: BenchmarkContext) -> list[Measurement]:
    """Ours (counts, then alpha) against krippendorff.alpha on the same coders x pairs data."""
    section = "alpha over all pairs"
    print_section(section)
    measurements = []
    for scenario in SCENARIOS:
        data = context.reliability_data[scenario.name]
        values = np.asarray(scenario.values)
        (counts, _), build_seconds, build_peak = measure(
            lambda data=data, values=values: value_counts_from_reliability_data(data, values),
            context.repeat,
        )
        rows = [
            ("ours: build value counts", None, build_seconds, build_peak),
            (
                "ours: alpha from value counts",
                *measure(
                    lambda c=counts, s=scenario: alpha_from_value_counts(c, s.values, s.level),
                    context.repeat,
                ),
            ),
            (
                "ours: alpha from coders x pairs",
                *measure(
                    lambda d=data, s=scenario: krippendorff_alpha(d, s.level, s.values),
                    context.repeat,
                ),
            ),
            (
                "krippendorff package",
                *measure(
                    lambda d=data, s=scenario: krippendorff.alpha(
                        reliability_data=d, level_of_measurement=s.level, value_domain=s.values
                    ),
                    context.repeat,
                ),
            ),
        ]
        for method, alpha, seconds, peak in rows:
            measurement = Measurement(
                section, scenario.name, method, seconds, peak, None if alpha is None else alpha
            )
            measurements.append(measurement)
            print_measurement(measurement)
    return measurements


def section_pattern_histogram(context: BenchmarkContext) -> list[Measurement]:
    """What the database path will do: alpha and its bootstrap CI from a pattern histogram."""
    section = "alpha and 95% CI from a pattern histogram"
    print_section(section)
    measurements = []
    for scenario in SCENARIOS:
        data = context.reliability_data[scenario.name]
        counts, values = value_counts_from_reliability_data(data, scenario.values)
        # The database produces this with one GROUP BY; numpy stands in for it here.
        (patterns, multiplicities), group_seconds, group_peak = measure(
            lambda c=counts: group_count_rows(c), context.repeat
        )
        alpha, alpha_seconds, alpha_peak = measure(
            lambda p=patterns, m=multiplicities, s=scenario: alpha_from_pattern_histogram(
                p, m, s.values, s.level
            ),
            context.repeat,
        )
        interval, interval_seconds, interval_peak = measure(
            lambda p=patterns, m=multiplicities, s=scenario: alpha_confidence_interval(
                p, s.values, s.level, multiplicities=m, n_boot=context.n_boot, seed=context.seed
            ),
            context.repeat,
        )
        print(f"  {scenario.name}: {len(patterns)} distinct patterns")
        rows = [
            ("GROUP BY stand-in (numpy)", None, group_seconds, group_peak),
            ("ours: alpha from histogram", alpha, alpha_seconds, alpha_peak),
            (f"ours: CI, {context.n_boot} replicates", None, interval_seconds, interval_peak),
        ]
        for method, value, seconds, peak in rows:
            measurement = Measurement(section, scenario.name, method, seconds, peak, value)
            measurements.append(measurement)
            print_measurement(measurement)
        print(f"    95% CI: [{interval[0]:.4f}, {interval[1]:.4f}] around {alpha:.4f}")
    return measurements


def group_count_rows(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct count rows and how many pairs have each, as GROUP BY would return them."""
    radix = int(counts.sum(axis=1).max()) + 1
    keys = counts @ radix ** np.arange(counts.shape[1])
    distinct_keys, multiplicities = np.unique(keys, return_counts=True)
    patterns = distinct_keys[:, np.newaxis] // radix ** np.arange(counts.shape[1]) % radix
    return patterns, multiplicities


SECTIONS: tuple[Section, ...] = (
    section_alpha_from_reliability_data,
    section_pattern_histogram,
)


def print_section(title: str) -> None:
    print(f"\n== {title} ==")


def print_measurement(measurement: Measurement) -> None:
    alpha = "" if measurement.alpha is None else f"  alpha={measurement.alpha:.6f}"
    print(
        f"  {measurement.scenario:<32} {measurement.method:<38} "
        f"{measurement.seconds:9.4f} s  peak {measurement.peak_mib:8.1f} MiB{alpha}"
    )


def print_summary(measurements: list[Measurement]) -> None:
    print("\n== summary ==")
    by_key = {(m.scenario, m.method): m for m in measurements}
    for scenario in SCENARIOS:
        package = by_key.get((scenario.name, "krippendorff package"))
        from_counts = by_key.get((scenario.name, "ours: alpha from value counts"))
        from_matrix = by_key.get((scenario.name, "ours: alpha from coders x pairs"))
        if not (package and from_counts and from_matrix):
            continue
        end_to_end = package.seconds / from_matrix.seconds
        fast_path = package.seconds / from_counts.seconds
        verdict = "meets" if end_to_end >= TARGET_SPEEDUP else "misses"
        difference = abs(package.alpha - from_matrix.alpha)
        print(
            f"  {scenario.name}: package {package.seconds:.3f} s / {package.peak_mib:.0f} MiB; "
            f"ours {from_matrix.seconds:.3f} s / {from_matrix.peak_mib:.0f} MiB from coders x "
            f"pairs ({end_to_end:.1f}x, {verdict} the {TARGET_SPEEDUP:.0f}x target), "
            f"{from_counts.seconds:.4f} s from counts ({fast_path:.0f}x); "
            f"|alpha difference| = {difference:.1e}"
        )
    for measurement in measurements:
        if measurement.method.startswith("ours: CI"):
            print(f"  {measurement.scenario}: {measurement.method} in {measurement.seconds:.3f} s")


if __name__ == "__main__":
    main()
