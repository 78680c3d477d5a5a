"""The active-learning loop on real human labels: error-driven prioritisation against random.

Run: .venv/bin/python benchmarks/active_loop.py [--seeds 5] [--rounds 4] [--seed-size 100]
     [--budget 100] [--test 500] [--error-rate 0.2] [--pairs N] [--k 8]
     [--mode head|full] [--full-epochs 2] [--full-learning-rate 5e-5]

Everything goes through the app's own services, on a temporary SQLite database and model
directory (deleted at the end; dev data is never touched):

* Data: the 2,312 hh-rlhf harmless-base test pairs (../shared/data/hh-rlhf-harmless-base),
  whose human "chosen" side is the truth. For each seed the pairs are shuffled; ``--test`` of
  them are imported as gold (``pairs_import(as_gold=True)``, the held-out measure: never
  trained on, and kept out of retrieval with ``retrieve_from_gold=False`` so the error-driven
  arm cannot peek at the test set), the rest into the pool in shuffled order.
* Annotators: three simulated annotators per pair label through ``assignment_next`` and
  ``label_submit``; each gives the dataset's preference, flipped with probability
  ``--error-rate``; consensus is the usual majority.
* Rounds: a seed round of ``--seed-size`` random pool pairs, then ``--rounds`` loop jobs
  (``loop_request`` run inline: close the round, train the head of all-MiniLM-L6-v2 on every
  verified label so far, evaluate on gold, score and prioritise the pool, open the next round
  of ``--budget`` pairs). The "error-driven" arm prioritises as the app does; the "random" arm
  runs the same jobs with ``prioritise=False``, so its next round is the next pairs in the
  shuffled pool. Both arms see the same split and the same annotators per seed.
* Reported: held-out gold accuracy after training on each round's labels, mean and standard
  deviation over seeds, and the per-seed paired difference; beside it each arm's hit rate:
  the share of the round's pairs, once the annotators settled them, that the model which
  chose the round (the active version when it opened) had mispredicted. The seed round has
  no model before it, so no hit rate. The product's campaigns reserve a random slice of each
  round (``Campaign.random_slice_share``); here each arm is pure (share 0), since the random
  arm is the baseline.

Encoder vectors (three per pair) are computed once with MiniLM and cached under
var/benchmarks/, then written as each campaign's vector part files, so in head mode every
training is head-only and every scoring a matrix product. ``--mode full`` fine-tunes all of
MiniLM from the base in every round instead (each round retrains on all labels so far) and
scores the pool with real forward passes: minutes per seed on a GPU, far longer on a CPU.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-base" / "test.jsonl.gz"
CACHE_DIR = REPO / "var" / "benchmarks"

# Run as a script, only benchmarks/ is on the path; the repo root must come first.
sys.path.insert(0, str(REPO))


def configure_django(workdir: Path) -> None:
    """A throwaway SQLite database and model directory; nothing reaches dev data."""
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "ARBITER_BASE_MODEL"):
        os.environ.pop(name, None)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "ARBITER_VAR_DIR": str(workdir),
            "ARBITER_SQLITE_PATH": str(workdir / "bench.sqlite3"),
            "ARBITER_MODEL_DIR": str(workdir / "models"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "LOG_LEVEL": "WARNING",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }
    )
    os.environ.setdefault("SECRET_KEY", "benchmark-only-" + os.urandom(32).hex())
    import django
    import transformers

    transformers.utils.logging.disable_progress_bar()
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def read_rows(limit: int | None) -> list[dict[str, str]]:
    """hh-rlhf records, minus the few the importer rejects (identical responses)."""
    from scoring.reward_model import parse_hh_rlhf_pair

    rows = []
    with gzip.open(DATA, "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            try:
                example = parse_hh_rlhf_pair(record["chosen"], record["rejected"])
            except ValueError:
                continue
            if example.chosen.strip() == example.rejected.strip() or not example.conversation:
                continue
            rows.append({"chosen": record["chosen"], "rejected": record["rejected"]})
            if limit is not None and len(rows) >= limit:
                break
    return rows


def write_jsonl(rows: list[dict[str, str]], path: Path) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cached_vectors(rows: list[dict[str, str]], workdir: Path) -> tuple[str, dict[str, bytes]]:
    """Encoder vectors per content hash, computed once by the app's embedding service."""
    import numpy as np

    from annotation.models import Pair
    from annotation.services.imports import campaign_get_or_create, pairs_import
    from scoring.loop.embeddings import encoder_key, pair_embeddings_ensure, pair_vectors_load
    from scoring.models import Job
    from scoring.reward_model import RewardModel, default_base_path

    base = default_base_path()
    model = RewardModel.from_base(base)
    key = encoder_key(base, model.max_length)
    digest = hashlib.sha256(
        (key + "\n" + "\n".join(row["chosen"] + row["rejected"] for row in rows)).encode()
    ).hexdigest()[:16]
    cache_file = CACHE_DIR / f"active_loop_vectors_{digest}.npz"
    if cache_file.is_file():
        stored = np.load(cache_file)
        log(f"encoder vectors: cached in {cache_file.relative_to(REPO)}")
        return key, {
            str(h): v.astype("<f4").tobytes()
            for h, v in zip(stored["hashes"], stored["vectors"], strict=True)
        }
    campaign = campaign_get_or_create(name="embedding cache")
    pairs_import(campaign=campaign, path=write_jsonl(rows, workdir / "all.jsonl"), queue=False)
    pair_ids = list(Pair.objects.filter(campaign=campaign).values_list("id", flat=True))
    log(f"encoder vectors: computing for {len(pair_ids)} pairs with MiniLM (once) ...")
    started = time.perf_counter()

    def progress(fraction: float, message: str) -> None:
        log(f"  {fraction:6.1%} {message} ({time.perf_counter() - started:.0f} s)")

    pair_embeddings_ensure(pair_ids=pair_ids, model=model, key=key, on_progress=progress)
    hashes_by_id = dict(Pair.objects.filter(campaign=campaign).values_list("id", "content_hash"))
    loaded = pair_vectors_load(pair_ids=list(hashes_by_id), key=key)
    vectors = {
        hashes_by_id[int(pair_id)]: np.concatenate(
            [loaded.context[i], loaded.a[i], loaded.b[i]]
        ).astype("<f4").tobytes()
        for i, pair_id in enumerate(loaded.pair_ids)
    }
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    hashes = list(vectors)
    np.savez(
        cache_file,
        hashes=np.array(hashes),
        vectors=np.stack([np.frombuffer(bytes(vectors[h]), dtype="<f4") for h in hashes]),
    )
    log(f"encoder vectors: {time.perf_counter() - started:.0f} s, saved to {cache_file}")
    Job.objects.filter(campaign=campaign).delete()
    campaign.delete()
    return key, {h: bytes(v) for h, v in vectors.items()}


class Annotators:
    """Three simulated annotators who give the dataset's preference with a set error rate."""

    def __init__(self, users: list[Any], error_rate: float, rng: random.Random) -> None:
        self.users = users
        self.error_rate = error_rate
        self.rng = rng

    def label_round(self, campaign: Any) -> int:
        from annotation.services.assignments import assignment_next
        from annotation.services.labels import LabelInput, label_submit

        submitted = 0
        for user in self.users:
            while (assignment := assignment_next(campaign=campaign, annotator=user,
                                                 rng=self.rng)) is not None:
                truth = assignment.pair.silver_preference  # the dataset's human label
                canonical = -truth if self.rng.random() < self.error_rate else truth
                shown = -canonical if assignment.swapped else canonical
                label_submit(assignment=assignment, data=LabelInput(preference=shown))
                submitted += 1
        return submitted


# Long on purpose: one arm of the experiment, seed round to last round, in the order it runs and
# prints.
def run_arm(
    *,
    arm: str,
    seed: int,
    pool_file: Path,
    test_file: Path,
    key: str,
    vectors: dict[str, bytes],
    users: list[Any],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    import numpy as np
    from django.conf import settings

    from annotation.models import Campaign, Pair, Scale
    from annotation.services.imports import pairs_import
    from scoring.loop.embeddings import PairVectors, pair_embeddings_store
    from scoring.loop.model_jobs import job_run_inline
    from scoring.loop.requests import loop_request
    from scoring.loop.rounds import round_open_next
    from scoring.loop.training import job_params_for_training
    from scoring.models import Job, ModelVersion

    campaign = Campaign.objects.create(
        name=f"active loop {arm} seed {seed}",
        scale=Scale.BINARY,
        annotators_per_pair=3,
        retest_share=0.0,
        gold_share=0.0,
        round_size=args.budget,
        retrieval_k=args.k,
        random_slice_share=0.0,  # each arm is pure: the random arm is the baseline
    )
    pairs_import(campaign=campaign, path=pool_file, queue=False)
    pairs_import(campaign=campaign, path=test_file, as_gold=True)
    ids_and_hashes = list(
        Pair.objects.filter(campaign=campaign).values_list("id", "content_hash")
    )
    stacked = np.stack(
        [np.frombuffer(vectors[h], dtype="<f4") for _, h in ids_and_hashes]
    ).reshape(len(ids_and_hashes), 3, -1)
    pair_embeddings_store(
        vectors=PairVectors(
            np.array([pair_id for pair_id, _ in ids_and_hashes], dtype=np.int64),
            stacked[:, 0], stacked[:, 1], stacked[:, 2],
        ),
        key=key,
    )
    annotators = Annotators(users, args.error_rate, random.Random(seed * 7919 + 1))
    round_open_next(campaign=campaign, size=args.seed_size)
    results = []
    for round_index in range(args.rounds + 1):
        annotators.label_round(campaign)
        chooser = ModelVersion.objects.filter(campaign=campaign, is_active=True).first()
        misses, judged = round_hit_rate(campaign, chooser) if chooser else (0, 0)
        labelled = Pair.objects.filter(campaign=campaign, is_gold=False, labels_count__gt=0)
        params = job_params_for_training(mode=args.mode, **training_options(args))
        params.update(prioritise=arm == "error-driven", retrieve_from_gold=False)
        started = time.perf_counter()
        job = job_run_inline(job=loop_request(campaign=campaign, params=params, enqueue=False))
        if job.status != Job.Status.SUCCEEDED:
            raise RuntimeError(f"loop job failed: {job.error}")
        # The newest version: the activation gate may keep a weak first one inactive.
        version = ModelVersion.objects.filter(campaign=campaign).order_by("-number").first()
        assert version is not None  # noqa: S101 - the job trained one
        results.append(
            {
                "round": round_index,
                "labelled_pairs": labelled.count(),
                "accuracy": version.heldout_accuracy,
                "retrieved": job.result.get("prioritisation", {}).get("retrieved", 0),
                "mispredicted": job.result.get("prioritisation", {}).get("mispredicted"),
                "hit_rate": misses / judged if judged else None,
                "seconds": time.perf_counter() - started,
            }
        )
        hit = results[-1]["hit_rate"]
        log(
            f"  seed {seed} {arm:12s} round {round_index}: {results[-1]['labelled_pairs']} "
            f"labelled, hit rate {'–' if hit is None else f'{hit:.3f}'}, held-out accuracy "
            f"{version.heldout_accuracy:.3f} ({results[-1]['seconds']:.1f} s)"
        )
    shutil.rmtree(Path(settings.ARBITER["MODEL_DIR"]) / f"campaign-{campaign.pk}",
                  ignore_errors=True)
    return results


def round_hit_rate(campaign: Any, version: Any) -> tuple[int, int]:
    """(mispredicted, settled) pairs of the open round, by ``version``, the model that was
    active when the round opened: head-mode versions from the cached vectors, full-mode ones
    with a forward pass (their encoder was fine-tuned)."""
    import numpy as np

    from annotation.models import Pair, Round
    from scoring.loop.embeddings import head_rewards, pair_vectors_load
    from scoring.loop.retrieval import agreement_of, is_mispredicted
    from scoring.reward_model import RewardModel

    current = Round.objects.filter(campaign=campaign, status=Round.Status.OPEN).first()
    settled = dict(
        Pair.objects.filter(round=current, consensus_preference__isnull=False)
        .exclude(consensus_preference=0)
        .values_list("id", "consensus_preference")
    )
    if not settled:
        return 0, 0
    model = RewardModel.load(version.checkpoint, inference_only=True)
    if version.mode == "head" and version.metrics.get("encoder"):
        vectors = pair_vectors_load(pair_ids=list(settled), key=version.metrics["encoder"])
        reward_a, reward_b = head_rewards(model, vectors)
        p_a = 1.0 / (1.0 + np.exp(-(reward_a - reward_b)))
        p = dict(zip((int(i) for i in vectors.pair_ids), p_a.tolist(), strict=True))
    else:
        pairs = Pair.objects.in_bulk(list(settled))
        ids = list(settled)
        p_a = model.prob_a_better_batch(
            [(pairs[i].conversation, pairs[i].response_a, pairs[i].response_b) for i in ids]
        )
        p = dict(zip(ids, p_a.tolist(), strict=True))
    misses = sum(
        is_mispredicted(agreement_of(p[pair_id], human)) for pair_id, human in settled.items()
    )
    return misses, len(settled)


def training_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.mode == "head":
        return {}
    return {"epochs": args.full_epochs, "learning_rate": args.full_learning_rate}


def summarise(runs: dict[tuple[int, str], list[dict[str, Any]]], args: argparse.Namespace) -> str:
    seeds = sorted({seed for seed, _ in runs})

    def spread(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} ± {sd:.3f}"

    lines = [
        f"hh-rlhf harmless-base, MiniLM {args.mode} mode, {len(seeds)} seeds, test split "
        f"{args.test} gold pairs, seed set {args.seed_size}, budget {args.budget}/round, "
        f"annotator error rate {args.error_rate}, k = {args.k}",
        "",
        "accuracy: held-out gold accuracy after the round; hit rate: the share of the round's "
        "settled pairs the model that chose them had mispredicted (mean ± sd over seeds)",
        "",
        f"{'round':>5}  {'labelled':>8}  {'random':>15}  {'error-driven':>15}  "
        f"{'difference':>15}  {'hit random':>19}  {'hit error-driven':>19}  {'retrieved':>9}",
    ]
    for round_index in range(args.rounds + 1):
        random_acc = [runs[(s, "random")][round_index]["accuracy"] for s in seeds]
        driven_acc = [runs[(s, "error-driven")][round_index]["accuracy"] for s in seeds]
        labelled = runs[(seeds[0], "random")][round_index]["labelled_pairs"]
        retrieved = statistics.mean(
            runs[(s, "error-driven")][round_index]["retrieved"] for s in seeds
        )
        difference = [d - r for d, r in zip(driven_acc, random_acc, strict=True)]
        hits = {
            arm: [
                hit for s in seeds
                if (hit := runs[(s, arm)][round_index]["hit_rate"]) is not None
            ]
            for arm in ("random", "error-driven")
        }
        # Seeds whose first versions the activation gate kept inactive have no chooser yet.
        hit_random, hit_driven = (
            f"{spread(hits[arm])} n={len(hits[arm])}" if hits[arm] else "–"
            for arm in ("random", "error-driven")
        )
        lines.append(
            f"{round_index:>5}  {labelled:>8}  {spread(random_acc):>15}  "
            f"{spread(driven_acc):>15}  {spread(difference):>15}  {hit_random:>19}  "
            f"{hit_driven:>19}  {retrieved:>9.0f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seed-size", type=int, default=100)
    parser.add_argument("--budget", type=int, default=100, help="pairs labelled per round")
    parser.add_argument("--test", type=int, default=500, help="held-out gold pairs")
    parser.add_argument("--error-rate", type=float, default=0.2)
    parser.add_argument("--k", type=int, default=8, help="campaign.retrieval_k")
    parser.add_argument("--pairs", type=int, default=None, help="use only the first N pairs")
    parser.add_argument("--mode", choices=("head", "full"), default="head")
    parser.add_argument("--workers", type=int, default=1, help="seeds run in parallel")
    parser.add_argument("--full-epochs", type=float, default=2.0, help="with --mode full")
    parser.add_argument("--full-learning-rate", type=float, default=5e-5, help="with --mode full")
    args = parser.parse_args()

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="arbiter-active-loop-"))
    try:
        configure_django(workdir)
        rows = read_rows(args.pairs)
        needed = args.test + args.seed_size + args.rounds * args.budget
        if len(rows) < needed:
            raise SystemExit(f"{len(rows)} pairs are fewer than the {needed} the setup needs")
        key, vectors = cached_vectors(rows, workdir)
        jobs = [(seed, args, rows, key, vectors) for seed in range(args.seeds)]
        if args.workers > 1:
            # Seeds are independent: each process has its own database and model directory.
            with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
                per_seed = pool.starmap(run_seed, jobs)
        else:
            per_seed = [run_seed(*job) for job in jobs]
        runs = {key: results for seed_runs in per_seed for key, results in seed_runs.items()}
        print(summarise(runs, args))
        print(f"\ntotal {time.perf_counter() - started:.0f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_seed(
    seed: int, args: argparse.Namespace, rows: list[dict[str, str]], key: str,
    vectors: dict[str, bytes],
) -> dict[tuple[int, str], list[dict[str, Any]]]:
    """Both arms of one seed; in a worker process (--workers), on a database of its own."""
    workdir = Path(tempfile.mkdtemp(prefix=f"arbiter-active-loop-{seed}-"))
    try:
        if not _django_ready():  # a worker process: a database of its own
            configure_django(workdir)
        from annotation.roles import Role
        from annotation.services.users import user_create

        users = [
            user_create(username=f"annotator-{seed}-{i}", role=Role.ANNOTATOR, password=None)[0]
            for i in range(3)
        ]
        shuffled = list(rows)
        random.Random(seed).shuffle(shuffled)
        test_file = write_jsonl(shuffled[: args.test], workdir / f"test-{seed}.jsonl")
        pool_file = write_jsonl(shuffled[args.test :], workdir / f"pool-{seed}.jsonl")
        return {
            (seed, arm): run_arm(
                arm=arm, seed=seed, pool_file=pool_file, test_file=test_file, key=key,
                vectors=vectors, users=users, args=args,
            )
            for arm in ("random", "error-driven")
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _django_ready() -> bool:
    if "django" not in sys.modules:
        return False
    from django.apps import apps

    return apps.ready


if __name__ == "__main__":
    main()
