"""Krippendorff's alpha at campaign scale: reviewers.agreement.maths vs the krippendorff package.

Run: .venv/bin/python benchmarks/agreement.py [--pairs N] [--repeat R] [--n-boot B]
     [--only SECTION …] [--database-url postgres://user@host:port/postgres]

Data: N pairs x 3 annotators, 10% of labels missing, annotators who agree with a hidden
preference 70% of the time and otherwise answer at random. Each section below is a function
that takes the shared BenchmarkContext and returns Measurements; add a section (for example
"alpha from PostgreSQL end to end") by writing one more such function and listing it in
SECTIONS. Timings are the best of --repeat runs; peak memory is measured in a separate
tracemalloc run so it does not slow the timed ones.

"alpha from PostgreSQL end to end" needs a PostgreSQL server: it creates a temporary database
(arbiter_bench_<pid>) on the server of --database-url (default: $DATABASE_URL, else
postgres://postgres@127.0.0.1:5432/postgres), migrates it, loads the five-point data with COPY
and drops the database at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
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

from reviewers.agreement.maths import (  # noqa: E402
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
    database_url: str = ""


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
        database_url=arguments.database_url,
    )
    print(
        f"{arguments.pairs:,} pairs x {ANNOTATORS} annotators, {MISSING_SHARE:.0%} missing; "
        f"best of {arguments.repeat} run(s); numpy {np.__version__}"
    )
    measurements: list[Measurement] = []
    for section in SECTIONS:
        if arguments.only and not any(word in section.__name__ for word in arguments.only):
            continue
        measurements.extend(section(context))
    print_summary(measurements)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000, help="number of pairs (units)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument(
        "--only",
        nargs="*",
        default=[],
        help="run only sections whose function name contains one of these words "
        "(reliability_data, pattern_histogram, dawid, postgres)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("ARBITER_BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", ""),
        help="a PostgreSQL server to create the temporary database on",
    )
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


DAWID_SKENE_ANNOTATORS = 30


def section_dawid_skene_fit(context: BenchmarkContext) -> list[Measurement]:
    """The Dawid-Skene fit on the 3-value data: ours (np.bincount) against the same EM with
    np.add.at, the form it had before session 13, on the same labels."""
    from reviewers.agreement.dawid_skene import dawid_skene

    section = "Dawid-Skene fit"
    print_section(section)
    scenario = SCENARIOS[1]
    data = context.reliability_data[scenario.name]
    coder, unit = np.nonzero(~np.isnan(data))
    said = data[coder, unit].astype(np.int64) + 1
    annotator = (unit % 10) * ANNOTATORS + coder  # as in the PostgreSQL section: 30 annotators
    shape = {
        "n_items": data.shape[1],
        "n_annotators": DAWID_SKENE_ANNOTATORS,
        "n_classes": len(scenario.values),
    }
    fit, seconds, peak = measure(
        lambda: dawid_skene(unit, annotator, said, **shape), context.repeat
    )
    baseline, base_seconds, base_peak = measure(
        lambda: dawid_skene_add_at(unit, annotator, said, **shape), context.repeat
    )
    measurements = [
        Measurement(section, scenario.name, "ours: np.bincount EM", seconds, peak),
        Measurement(section, scenario.name, "baseline: np.add.at EM", base_seconds, base_peak),
    ]
    for measurement in measurements:
        print_measurement(measurement)
    difference = float(np.abs(fit.posteriors - baseline[0]).max())
    print(
        f"    {len(said):,} labels, {fit.iterations} iterations (baseline {baseline[1]}); "
        f"{base_seconds / seconds:.1f}x faster, peak memory {base_peak / peak:.1f}x smaller; "
        f"posteriors equal to {difference:.1e}"
    )
    return measurements


def dawid_skene_add_at(
    item: np.ndarray,
    annotator: np.ndarray,
    said: np.ndarray,
    *,
    n_items: int,
    n_annotators: int,
    n_classes: int,
    max_iterations: int = 100,
    tolerance: float = 1e-6,
    smoothing: float = 0.01,
) -> tuple[np.ndarray, int]:
    """The baseline: reviewers.agreement.dawid_skene as it was before session 13 (no anchors)."""
    posteriors = np.zeros((n_items, n_classes))
    np.add.at(posteriors, (item, said), 1.0)
    posteriors += 1e-9
    posteriors /= posteriors.sum(axis=1, keepdims=True)
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 - returned
        priors = posteriors.mean(axis=0) + 1e-9
        priors /= priors.sum()
        confusions = np.full((n_annotators, n_classes, n_classes), smoothing)
        for true_class in range(n_classes):
            np.add.at(confusions[:, true_class, :], (annotator, said), posteriors[item, true_class])
        confusions /= confusions.sum(axis=2, keepdims=True)
        log_posteriors = np.tile(np.log(priors), (n_items, 1))
        np.add.at(log_posteriors, item, np.log(confusions[annotator, :, said]))
        log_posteriors -= log_posteriors.max(axis=1, keepdims=True)
        updated = np.exp(log_posteriors)
        updated /= updated.sum(axis=1, keepdims=True)
        change = float(np.abs(updated - posteriors).max())
        posteriors = updated
        if change < tolerance:
            break
    return posteriors, iterations


POSTGRES_SCENARIO = SCENARIOS[2]  # five-point, ordinal: the harder level and the usual scale
POSTGRES_ANNOTATORS = 30
POSTGRES_ROUNDS = 10
POSTGRES_CATEGORIES = ("math", "code", "chat", "safety", "reasoning", "writing", "facts", "other")
POSTGRES_TARGET_SECONDS = 2.0


def section_alpha_from_postgres(context: BenchmarkContext) -> list[Measurement]:
    """Alpha from PostgreSQL end to end: grouped query + alpha + 95% CI, via our selector."""
    section = "alpha from PostgreSQL end to end"
    print_section(section)
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo
    except ImportError:
        print("  skipped: psycopg is not installed")
        return []
    server = context.database_url or "postgres://postgres@127.0.0.1:5432/postgres"
    if not server.startswith(("postgres://", "postgresql://")):
        print(f"  skipped: {server!r} is not a PostgreSQL URL")
        return []
    database = f"arbiter_bench_{os.getpid()}"
    admin_info = {**conninfo_to_dict(server), "dbname": "postgres"}
    try:
        admin = psycopg.connect(make_conninfo(**admin_info), autocommit=True)
    except psycopg.OperationalError as exc:
        print(f"  skipped: cannot reach PostgreSQL ({exc})")
        return []
    with admin:
        admin.execute(f'CREATE DATABASE "{database}"')
        try:
            return _alpha_from_postgres(context, section, {**admin_info, "dbname": database})
        finally:
            from django.db import connections

            connections.close_all()
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            print(f"  dropped temporary database {database}")
            var_dir = os.environ.get("ARBITER_VAR_DIR", "")
            if Path(var_dir).name.startswith("arbiter-bench-"):  # ours, made below
                shutil.rmtree(var_dir, ignore_errors=True)


# Long on purpose: the SQL path measured end to end in one place, so its timings cover exactly
# what they say.
def _alpha_from_postgres(
    context: BenchmarkContext, section: str, info: dict[str, object]
) -> list[Measurement]:
    user = info.get("user") or "postgres"
    password = f":{info['password']}" if info.get("password") else ""
    host, port = info.get("host") or "127.0.0.1", info.get("port") or 5432
    os.environ["DATABASE_URL"] = f"postgres://{user}{password}@{host}:{port}/{info['dbname']}"
    os.environ.setdefault("SECRET_KEY", "benchmark-only-" + os.urandom(32).hex())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["ARBITER_VAR_DIR"] = tempfile.mkdtemp(prefix="arbiter-bench-")
    for variable in ("CACHE_URL", "CELERY_BROKER_URL"):
        os.environ.pop(variable, None)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from reviewers.agreement.maths import alpha_components
    from reviewers.agreement.selectors import (
        agreement_level,
        annotator_agreements_from_db,
        campaign_agreement,
        histogram_components,
        pattern_histogram,
        pattern_histograms_by_round_and_category,
        scale_values,
    )

    started = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    print(f"  migrated a fresh database in {time.perf_counter() - started:.1f} s")
    data = context.reliability_data[POSTGRES_SCENARIO.name]
    started = time.perf_counter()
    campaign, label_count = load_labels_with_copy(connection, data)
    print(
        f"  loaded {context.pairs:,} pairs, {label_count:,} labels (and their assignments) "
        f"with COPY in {time.perf_counter() - started:.1f} s"
    )
    level = agreement_level(campaign)
    values = scale_values(campaign)
    assert level == POSTGRES_SCENARIO.level and values == POSTGRES_SCENARIO.values

    def end_to_end() -> tuple[float, tuple[float, float]]:
        histogram = pattern_histogram(campaign=campaign)
        alpha = histogram_components(histogram, level).alpha
        interval = alpha_confidence_interval(
            histogram.patterns,
            values,
            level,
            multiplicities=histogram.multiplicities,
            n_boot=context.n_boot,
            seed=context.seed,
        )
        return alpha, interval

    (alpha, interval), seconds, peak = measure(end_to_end, context.repeat)
    query_only, query_seconds, query_peak = measure(
        lambda: pattern_histogram(campaign=campaign), context.repeat
    )
    by_subset, subset_seconds, subset_peak = measure(
        lambda: pattern_histograms_by_round_and_category(campaign=campaign), 1
    )
    reference = alpha_components(query_only.patterns, query_only.multiplicities, values, level)
    annotators, annotator_seconds, annotator_peak = measure(
        lambda: annotator_agreements_from_db(
            campaign=campaign, reference_value_totals=reference.value_totals, level=level
        ),
        1,
    )
    report, report_seconds, report_peak = measure(
        lambda: campaign_agreement(campaign=campaign, use_cache=False), 1
    )
    expected = krippendorff_alpha(data, level, values)
    reestimate_rows = _dawid_skene_reestimate(campaign)
    rows = [
        ("grouped query only", None, query_seconds, query_peak),
        (f"query + alpha + CI ({context.n_boot})", alpha, seconds, peak),
        (f"by round x category ({len(by_subset)} groups)", None, subset_seconds, subset_peak),
        (f"per annotator ({len(annotators)})", None, annotator_seconds, annotator_peak),
        ("whole report, uncached", report["overall"]["alpha"], report_seconds, report_peak),
        *reestimate_rows,
    ]
    measurements = []
    for method, value, elapsed, memory in rows:
        measurement = Measurement(section, POSTGRES_SCENARIO.name, method, elapsed, memory, value)
        measurements.append(measurement)
        print_measurement(measurement)
    verdict = "meets" if seconds < POSTGRES_TARGET_SECONDS else "misses"
    print(
        f"    {len(query_only.patterns)} distinct patterns; 95% CI [{interval[0]:.4f}, "
        f"{interval[1]:.4f}]; |alpha - in-memory alpha| = {abs(alpha - expected):.1e}; "
        f"{seconds:.3f} s {verdict} the {POSTGRES_TARGET_SECONDS:.0f} s target"
    )
    print(
        "    peak MiB is Python-side (tracemalloc); the process's peak resident set so far is "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    return measurements


def _dawid_skene_reestimate(campaign) -> list[tuple[str, None, float, float]]:  # noqa: ANN001
    """The campaign switched to Dawid-Skene and re-estimated end to end (read the labels,
    fit, re-settle every pair): once setting every pair, then again with nothing to change
    (timed untraced, then once more under tracemalloc for the peak, as ``measure`` does)."""
    from annotation.models import ConsensusRule, Outcome, Pair
    from reviewers.services.weighted_consensus import campaign_consensus_reestimate

    campaign.consensus_rule = ConsensusRule.DAWID_SKENE
    campaign.save(update_fields=["consensus_rule"])
    Pair.objects.filter(campaign=campaign).update(
        provenance=Pair.Provenance.MAJORITY, consensus_outcome=Outcome.PREFERENCE
    )
    started = time.perf_counter()
    first = campaign_consensus_reestimate(campaign_id=campaign.pk)
    writing = time.perf_counter() - started
    assert first is not None
    _result, unchanged, peak = measure(
        lambda: campaign_consensus_reestimate(campaign_id=campaign.pk), 1
    )
    print(f"    Dawid-Skene re-estimate: {first.labels:,} labels, {first.pairs_settled:,} set")
    return [
        ("Dawid-Skene re-estimate, all pairs set", None, writing, float("nan")),
        ("Dawid-Skene re-estimate, nothing to set", None, unchanged, peak),
    ]


# Long on purpose: the COPY load of every table the measurement reads, in dependency order.
def load_labels_with_copy(connection, data: np.ndarray):  # noqa: ANN001 - Django connection
    """A campaign with one pair per column of ``data`` and a label per non-missing cell.

    Annotator of row r on pair i: (i mod 10) * 3 + r, so a pair's annotators are distinct.
    Rows go in with COPY; foreign-key triggers are skipped during the load (the data is
    consistent by construction) and the tables analysed afterwards, as a bulk import would.
    """
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from annotation.models import Assignment, Campaign, Label, Pair, Round

    now = timezone.now()
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"bench-annotator-{i}") for i in range(POSTGRES_ANNOTATORS)
    )
    campaign = Campaign.objects.create(name="benchmark", scale="five_point")
    rounds = [
        Round.objects.create(
            campaign=campaign,
            number=number,
            status=Round.Status.OPEN if number == POSTGRES_ROUNDS else Round.Status.CLOSED,
        )
        for number in range(1, POSTGRES_ROUNDS + 1)
    ]
    pair_count = data.shape[1]
    pair_ids = np.arange(1, pair_count + 1)
    round_ids = np.asarray([r.pk for r in rounds])[pair_ids * POSTGRES_ROUNDS // (pair_count + 1)]
    # Pair by pair, as labels arrive in a real campaign (a pair's labels are close in time).
    unit, coder = np.nonzero(~np.isnan(data.T))
    label_ids = np.arange(1, len(unit) + 1)
    annotator_ids = np.asarray([u.pk for u in users])[(unit % 10) * 3 + coder]
    preferences = data[coder, unit].astype(np.int64)
    swapped = (unit + coder) % 2 == 1

    with connection.cursor() as cursor:
        raw = cursor.cursor
        raw.execute("SET session_replication_role = replica")
        copy_model(
            raw,
            Pair,
            {
                "id": pair_ids,
                "round_id": round_ids,
                "task_category": np.asarray(POSTGRES_CATEGORIES)[
                    pair_ids % len(POSTGRES_CATEGORIES)
                ],
                "content_hash": np.char.mod("%064x", pair_ids),
            },
            {
                "campaign_id": campaign.pk,
                "conversation": "[]",
                "response_a": "A",
                "response_b": "B",
                "status": Pair.Status.COMPLETE,
                "slots_taken": 3,
                "labels_count": 3,
                "created_at": now,
            },
        )
        copy_model(
            raw,
            Assignment,
            {
                "id": label_ids,
                "pair_id": pair_ids[unit],
                "annotator_id": annotator_ids,
                "round_id": round_ids[unit],
                "swapped": swapped,
            },
            {
                "campaign_id": campaign.pk,
                "status": Assignment.Status.SUBMITTED,
                "kind": Assignment.Kind.REGULAR,
                "leased_at": now,
                "lease_expires_at": now,
                "finished_at": now,
            },
        )
        copy_model(
            raw,
            Label,
            {
                "id": label_ids,
                "assignment_id": label_ids,
                "pair_id": pair_ids[unit],
                "annotator_id": annotator_ids,
                "preference": preferences,
                "shown_first": np.where(swapped, "b", "a"),
            },
            {"campaign_id": campaign.pk, "created_at": now},
        )
        raw.execute("SET session_replication_role = DEFAULT")
        for model in (Pair, Assignment, Label):
            table = model._meta.db_table
            raw.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                f"(SELECT MAX(id) FROM {table}))"
            )
            raw.execute(f"ANALYZE {table}")
    return campaign, len(label_ids)


def copy_model(raw_cursor, model, columns: dict[str, np.ndarray], constants: dict[str, object]):  # noqa: ANN001
    """COPY rows into the model's table: per-row ``columns``, the same ``constants`` on every
    row, and every other column at its model default (or NULL), so new fields need no edit."""
    from django.db.models import NOT_PROVIDED

    fixed: dict[str, object] = dict(constants)
    for field in model._meta.concrete_fields:
        if field.column in columns or field.column in fixed:
            continue
        if field.default is not NOT_PROVIDED:
            default = field.get_default()
            is_json = field.get_internal_type() == "JSONField"
            fixed[field.column] = _json_text(default) if is_json else default
        elif field.null:
            fixed[field.column] = None
        elif field.get_internal_type() in ("CharField", "TextField"):
            fixed[field.column] = ""
        else:
            raise ValueError(f"{model.__name__}.{field.name} needs a value for the benchmark")
    names = [*columns, *fixed]
    table = model._meta.db_table
    per_row = [column.tolist() for column in columns.values()]
    constant_values = tuple(fixed.values())
    with raw_cursor.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy:
        for row in zip(*per_row, strict=True):
            copy.write_row((*row, *constant_values))


def _json_text(value: object) -> str:
    import json

    return json.dumps(value)


SECTIONS: tuple[Section, ...] = (
    section_alpha_from_reliability_data,
    section_pattern_histogram,
    section_dawid_skene_fit,
    section_alpha_from_postgres,
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
        if measurement.method.startswith("query + alpha + CI"):
            verdict = "meets" if measurement.seconds < POSTGRES_TARGET_SECONDS else "misses"
            print(
                f"  PostgreSQL end to end ({measurement.scenario}): {measurement.method} in "
                f"{measurement.seconds:.3f} s, {verdict} the {POSTGRES_TARGET_SECONDS:.0f} s "
                f"target; Python-side peak {measurement.peak_mib:.1f} MiB"
            )


if __name__ == "__main__":
    main()
