"""One round of the model loop on a large pool: sharded scoring, index, retrieval, round opening.

A fresh PostgreSQL database (dropped at the end) gets, by COPY, a campaign of hh-rlhf pairs
(the harmless-base test split repeated, each copy tagged): ``--pairs`` unlabelled pool pairs,
``--judged`` pairs with a unanimous human consensus and ``--gold`` gold pairs. Then:

1. **embed** (model stage, timed on a sample): the head-mode training job embeds the judged
   and gold pairs with all-MiniLM-L6-v2 on this CPU, and ``--sample`` pool pairs are embedded
   on their own; the rate is scaled up to the pool (the output says so).
2. The rest of the pool gets the embedded pairs' vectors (sample, judged, gold) replicated
   with noise (context vectors renormalised), written as part files: what the retrieval
   stages search is realistic in size and structure, without a day of CPU embedding.
3. For 1 and for 2 Celery worker processes (``-Q gpu -c 1`` each): one loop job ("Retrain
   now") end to end: train (head, cached vectors) → **score** (sharded, every pool pair, head
   mode from the stored features) → **index** (the campaign's faiss index, built from scratch:
   its files are removed before each run) → **retrieve** → **prioritise** → **open round**.
   Seconds per stage come from the job's log lines; peak RSS (VmHWM) of each worker process,
   of this process, bytes per pair on disk and in PostgreSQL, recall@8 against exact search
   on 200 judged pairs' context vectors, of the loop's search (refined by exact inner
   product) and of the index's own top 8 (8-bit codes) on the same index.

    .venv/bin/python benchmarks/loop_scale.py [--pairs 1000000] [--sample 20000] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
BEFORE_BYTES_PER_PAIR = 5684  # PairEmbedding with MiniLM, index included (issue #13)
TARGETS = {"non_model_seconds": 120, "peak_rss_mb": 2048, "storage_ratio": 4.0}


def psql(sql: str) -> None:
    subprocess.run(["psql", f"{PG}/postgres", "-Atc", sql], check=True, capture_output=True)


def high_water_mb(pid: int | str = "self") -> float:
    try:
        for line in open(f"/proc/{pid}/status"):  # noqa: PTH123, SIM115
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6  # VmHWM is in KiB; MB as the keys say
    except FileNotFoundError:
        return 0.0
    return 0.0


def stage_peak_mb() -> float:
    """This process's peak RSS since the last call, then reset (Linux ``clear_refs`` 5)."""
    peak = round(high_water_mb(), 1)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux, or not allowed: the figures become running peaks
        pass
    return peak


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def load_examples():
    from scoring.reward_model.hh_rlhf import load_hh_rlhf

    path = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-base" / "test.jsonl.gz"
    return load_hh_rlhf(path)


def seed(*, pairs: int, judged: int, gold: int, rng: random.Random) -> int:
    from django.db import connection

    from annotation.models import Campaign, Pair
    sys.path.insert(0, str(REPO / "benchmarks"))
    from export import Copier

    examples = load_examples()
    campaign = Campaign.objects.create(name="loop-scale", round_size=1000, retrieval_k=8)
    now = datetime.now(UTC)

    def rows():
        for pair_id in range(1, pairs + judged + gold + 1):
            example = examples[pair_id % len(examples)]
            conversation = [dict(turn) for turn in example.conversation]
            conversation[0] = {**conversation[0],
                               "content": f"[copy {pair_id}] {conversation[0]['content']}"}
            swap = rng.random() < 0.5
            a, b = (example.chosen, example.rejected)
            if swap:
                a, b = b, a
            preference = -1 if swap else 1
            row = {
                "id": pair_id,
                "campaign_id": campaign.pk,
                "conversation": conversation,
                "response_a": a,
                "response_b": b,
                "source": "hh-rlhf-harmless-base",
                "external_id": f"hh-{pair_id}",
                "content_hash": f"{pair_id:064x}",
                "created_at": now,
                "status": "pooled",
            }
            if pair_id > pairs + judged:
                row.update(status="complete", is_gold=True, gold_preference=preference,
                           consensus_preference=preference, provenance="gold")
            elif pair_id > pairs:
                row.update(status="complete", consensus_preference=preference,
                           provenance="unanimous", labels_count=3, slots_taken=3)
            yield row

    with connection.cursor() as cursor:
        Copier(cursor, Pair).copy(rows())
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('annotation_pair', 'id'), "
            "(SELECT max(id) FROM annotation_pair))"
        )
        cursor.execute("VACUUM ANALYZE annotation_pair")
    return campaign.pk


def replicate_vectors(*, key: str, sample_ids: list[int], pool_ids_from: int, pool_ids_to: int,
                      rng_seed: int = 0) -> float:
    """Give the pool pairs not embedded the sample's vectors plus noise (part files)."""
    import numpy as np

    from scoring.loop.embeddings import pair_vectors_load
    from scoring.loop.retrieval import normalise_rows
    from scoring.loop.vector_store import vector_store

    started = time.perf_counter()
    base = pair_vectors_load(pair_ids=sample_ids, key=key)
    store = vector_store(key)
    rng = np.random.default_rng(rng_seed)
    embedded = set(sample_ids)
    scale = float(np.abs(base.a).mean())
    chunk = 2048
    start = pool_ids_from
    while start <= pool_ids_to:
        ids = np.array([i for i in range(start, min(start + chunk, pool_ids_to + 1))
                        if i not in embedded], dtype=np.int64)
        start += chunk
        if not len(ids):
            continue
        pick = rng.integers(0, len(base), len(ids))
        context = normalise_rows(base.context[pick] + 0.02 * rng.standard_normal(
            (len(ids), base.context.shape[1])).astype(np.float32))
        shape = (len(ids), base.a.shape[1])
        noise_a = 0.05 * scale * rng.standard_normal(shape).astype(np.float32)
        noise_b = 0.05 * scale * rng.standard_normal(shape).astype(np.float32)
        store.append(ids=ids, blocks={"context": context, "a": base.a[pick] + noise_a,
                                      "b": base.b[pick] + noise_b})
    return time.perf_counter() - started


STAGE_MARKS = [
    ("train", "training a head model", "registered v"),
    ("score", "split into", "shards done"),
    ("index", "last part claimed", "retrieval index:"),
    ("retrieve", "retrieval index:", "searched the neighbours"),
    ("prioritise", "searched the neighbours", "pulled in"),
    ("open_round", "pulled in", "opened round"),
]


def stage_seconds(job) -> dict[str, float]:  # noqa: ANN001
    lines = list(job.log_lines.order_by("id").values_list("created_at", "message"))

    def first(text: str, after=None):  # noqa: ANN001, ANN202
        for created, message in lines:
            if text in message and (after is None or created >= after):
                return created
        return None

    out = {}
    for name, start_text, end_text in STAGE_MARKS:
        start = first(start_text)
        end = first(end_text, start) if start else None
        if start and end:
            out[name] = round((end - start).total_seconds(), 2)
    return out


def settings_codecs() -> tuple[str, str]:
    from scoring.loop.vector_store import context_codec, feature_codec

    return context_codec(), feature_codec()


def start_worker(name: str, env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    log = (log_dir / f"{name}.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu", "-c", "1",
         "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-l", "WARNING"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    return process


def run_round(*, campaign_id: int, workers: int, env: dict[str, str], log_dir: Path,
              shard_size: int) -> dict:
    from annotation.models import Campaign
    from scoring.loop.model_jobs import job_wait
    from scoring.loop.requests import loop_request
    from scoring.loop.training import job_params_for_training
    from scoring.loop.vector_store import vector_root

    for path in Path(vector_root()).glob("enc-*/index-*"):
        path.unlink()
    processes = [start_worker(f"bench-{workers}-{i}", env, log_dir) for i in range(workers)]
    try:
        time.sleep(8)
        params = {**job_params_for_training(), "shard_size": shard_size}
        started = time.perf_counter()
        job = loop_request(campaign=Campaign.objects.get(pk=campaign_id), params=params)
        job = job_wait(job=job, timeout=3600, interval=1.0)
        wall = time.perf_counter() - started
        load_average = os.getloadavg()
        rss = {}
        for process in processes:
            for child in children(process.pid) or [process.pid]:
                rss[f"worker {process.pid}/{child}"] = round(high_water_mb(child), 1)
            rss[f"worker {process.pid} (main)"] = round(high_water_mb(process.pid), 1)
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGKILL)
    if job.status != "succeeded":
        raise SystemExit(f"loop job {job.pk} {job.status}: {job.error}")
    return {"workers": workers, "wall_seconds": round(wall, 1), "stages": stage_seconds(job),
            "scoring": job.result.get("scoring"), "prioritisation": job.result.get(
                "prioritisation"), "opened_round": job.result.get("opened_round"),
            "peak_rss_mb": rss, "load_average_at_end": load_average}


# Long on purpose: the recall and storage figures read from the same files in one pass.
def recall_and_bytes(*, campaign_id: int, key: str, queries_ids: list[int]) -> dict:
    import numpy as np
    from django.db import connection

    from annotation.models import Pair
    from scoring.loop.embeddings import pair_context_load
    from scoring.loop.vector_index import campaign_index, recall_at, refine_setting
    from scoring.loop.vector_store import vector_store

    def members(part_ids):  # noqa: ANN001, ANN202
        return np.fromiter(Pair.objects.filter(campaign_id=campaign_id, id__in=part_ids.tolist())
                           .values_list("id", flat=True), dtype=np.int64)

    loaded = campaign_index(key=key, campaign_id=campaign_id, members=members)
    queries = pair_context_load(pair_ids=queries_ids, key=key)
    # The index's own top 8 (8-bit codes), then the search the loop runs (candidates
    # re-ranked by exact inner product against the stored vectors), on the same index.
    started = time.perf_counter()
    _, found_unrefined = loaded.index.search(np.ascontiguousarray(queries), 8)
    unrefined_seconds = time.perf_counter() - started
    started = time.perf_counter()
    found, _ = loaded.search(queries, 8, lambda candidates: candidates)
    search_seconds = time.perf_counter() - started
    # Exact top 8 by streaming every part (one part in memory at a time).
    best_sim = np.full((len(queries), 8), -np.inf, dtype=np.float32)
    best_ids = np.full((len(queries), 8), -1, dtype=np.int64)
    store = vector_store(key)
    for part in store.iter_parts(("context",)):
        sims = queries @ part["context"].T
        all_sims = np.concatenate([best_sim, sims], axis=1)
        all_ids = np.concatenate([best_ids, np.broadcast_to(part["ids"], sims.shape)], axis=1)
        top = np.argsort(-all_sims, axis=1)[:, :8]
        best_sim = np.take_along_axis(all_sims, top, axis=1)
        best_ids = np.take_along_axis(all_ids, top, axis=1)
    vectors = store.refresh().distinct
    index_files = list(Path(store.path).glob("index-*.faiss"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('scoring_pairscore'), "
                       "(SELECT count(*) FROM scoring_pairscore)")
        score_bytes, score_rows = cursor.fetchone()
        # What PostgreSQL keeps per score row: the heap and each index.
        cursor.execute("SELECT 'heap', pg_relation_size('scoring_pairscore') UNION ALL "
                       "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) "
                       "FROM pg_index WHERE indrelid = 'scoring_pairscore'::regclass")
        score_parts = {name: round(size / max(score_rows, 1), 1)
                       for name, size in cursor.fetchall()}
        cursor.execute("SELECT pg_total_relation_size('annotation_pair'), "
                       "(SELECT count(*) FROM annotation_pair)")
        pair_bytes, pair_rows = cursor.fetchone()
        cursor.execute("SELECT to_regclass('scoring_pairembedding') IS NULL")
        (no_embedding_table,) = cursor.fetchone()
    vector_bytes = store.bytes_on_disk() / max(vectors, 1)
    index_bytes = sum(p.stat().st_size for p in index_files) / max(loaded.size, 1)
    return {
        "recall_at_8": round(recall_at(found, best_ids), 4),
        "recall_at_8_without_refine": round(recall_at(found_unrefined, best_ids), 4),
        "index": {"kind": loaded.meta["kind"], "vectors": loaded.size,
                  "nprobe": getattr(loaded.index, "nprobe", None),
                  "nlist": getattr(loaded.index, "nlist", None),
                  "refine": refine_setting() if loaded.meta["kind"] == "ivf" else None,
                  "queries": len(queries),
                  "search_seconds": round(search_seconds, 3),
                  "search_seconds_without_refine": round(unrefined_seconds, 3)},
        "bytes_per_pair": {
            "vector_files": round(vector_bytes, 1),
            "index_file": round(index_bytes, 1),
            "postgres_vectors": 0 if no_embedding_table else None,
            "postgres_scores_per_version": round(score_bytes / max(score_rows, 1), 1),
            "postgres_scores_breakdown": score_parts,
            "postgres_pair_row_with_indexes": round(pair_bytes / max(pair_rows, 1), 1),
            "before_pair_embedding": BEFORE_BYTES_PER_PAIR,
            "ratio_vectors": round(BEFORE_BYTES_PER_PAIR / max(vector_bytes, 1), 2),
            "ratio_vectors_and_index": round(
                BEFORE_BYTES_PER_PAIR / max(vector_bytes + index_bytes, 1), 2),
        },
    }


# Long on purpose: the round's stages in the order they run, each timed where it happens.
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--judged", type=int, default=2000)
    parser.add_argument("--gold", type=int, default=200)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shard-size", type=int, default=20_000)
    parser.add_argument("--database", default=f"arbiter_loopbench_{os.getpid()}",
                        help="the PostgreSQL database to create (and drop at the end)")
    args = parser.parse_args()

    database = args.database
    root = Path(tempfile.mkdtemp(prefix="arbiter-loop-scale-"))
    env = dict(os.environ, DATABASE_URL=f"{PG}/{database}", ARBITER_VECTOR_ROOT=str(root / "v"),
               ARBITER_VAR_DIR=str(root / "var"), ARBITER_MODEL_DIR=str(root / "models"),
               ARBITER_JOB_STALE_SECONDS="120", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               DJANGO_SETTINGS_MODULE="config.settings")
    env.setdefault("SECRET_KEY", "benchmark-only-" + os.urandom(32).hex())
    os.environ.update(env)
    psql(f"CREATE DATABASE {database}")
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env,
                       check=True)
        sys.path.insert(0, str(REPO))
        import django

        django.setup()
        from config.celery import app

        with app.connection_for_write() as conn:
            try:
                conn.default_channel.queue_purge("gpu")
            except Exception:  # noqa: S110 - a queue not created yet holds nothing
                pass
        from annotation.models import Campaign, Pair
        from scoring.loop.embeddings import encoder_key, pair_embeddings_ensure
        from scoring.loop.model_jobs import job_run_inline
        from scoring.loop.requests import training_request
        from scoring.models import ModelVersion
        from scoring.reward_model import RewardModel
        from scoring.reward_model.model import default_base_path

        # How busy the machine was is in the load averages, not in this label.
        report: dict = {"machine": f"{os.cpu_count()} CPU cores",
                        "started": datetime.now(UTC).isoformat(timespec="seconds"),
                        "load_average_at_start": os.getloadavg(),
                        "pairs": args.pairs, "judged": args.judged, "gold": args.gold,
                        "codecs": {"context": settings_codecs()[0],
                                   "features": settings_codecs()[1]}}
        started = time.perf_counter()
        campaign_id = seed(pairs=args.pairs, judged=args.judged, gold=args.gold,
                           rng=random.Random(0))
        report["seed_seconds"] = round(time.perf_counter() - started, 1)
        # This process's peak RSS in each stage, so the one that sets the peak is named.
        peak_in = report["benchmark_process_peak_rss_mb_by_stage"] = {}
        peak_in["start_and_seed"] = stage_peak_mb()
        print(json.dumps({"seeded": report}), flush=True)

        # 1. embed: the first training embeds judged + gold pairs; then a pool sample.
        campaign = Campaign.objects.get(pk=campaign_id)
        trained = job_run_inline(job=training_request(campaign=campaign, enqueue=False))
        assert trained.status == "succeeded", trained.error
        peak_in["first_training"] = stage_peak_mb()
        version = ModelVersion.objects.get(campaign=campaign, number=1)
        key = version.metrics["encoder"]
        model = RewardModel.from_base(default_base_path(),
                                      max_length=version.metrics["encoder_max_length"])
        assert encoder_key(default_base_path(), model.max_length) == key
        sample_ids = list(Pair.objects.filter(campaign=campaign, status="pooled")
                          .order_by("id").values_list("id", flat=True)[: args.sample])
        started = time.perf_counter()
        pair_embeddings_ensure(pair_ids=sample_ids, model=model, key=key)
        embed_seconds = time.perf_counter() - started
        rate = len(sample_ids) / embed_seconds
        report["embed"] = {
            "sample_pairs": len(sample_ids), "seconds": round(embed_seconds, 1),
            "pairs_per_second_cpu": round(rate, 1),
            "scaled_to_pool_seconds_cpu": round(args.pairs / rate, 0),
            "note": "measured on the sample on this CPU and scaled up to the pool",
        }
        peak_in["embed_sample"] = stage_peak_mb()
        print(json.dumps({"embed": report["embed"]}), flush=True)
        # Every embedded pair (the sample, judged and gold) is a base for the copies.
        embedded_ids = sample_ids + list(Pair.objects.filter(campaign=campaign, id__gt=args.pairs)
                                         .order_by("id").values_list("id", flat=True))
        report["replicate_seconds"] = round(replicate_vectors(
            key=key, sample_ids=embedded_ids, pool_ids_from=1, pool_ids_to=args.pairs), 1)
        report["replicated_from"] = len(embedded_ids)
        peak_in["replicate"] = stage_peak_mb()
        del model

        # 2. one loop round per worker count.
        report["rounds"] = []
        log_dir = root / "logs"
        log_dir.mkdir()
        for workers in args.workers:
            result = run_round(campaign_id=campaign_id, workers=workers, env=env,
                               log_dir=log_dir, shard_size=args.shard_size)
            stages = result["stages"]
            result["non_model_seconds"] = round(sum(
                stages.get(name, 0.0) for name in ("index", "retrieve", "prioritise",
                                                    "open_round")), 1)
            report["rounds"].append(result)
            peak_in[f"round_{workers}_workers"] = stage_peak_mb()
            print(json.dumps({"round": result}), flush=True)
        judged_ids = list(Pair.objects.filter(campaign=campaign, provenance="unanimous")
                          .order_by("id").values_list("id", flat=True)[:200])
        report.update(recall_and_bytes(campaign_id=campaign_id, key=key, queries_ids=judged_ids))
        peak_in["recall_and_bytes"] = stage_peak_mb()
        report["benchmark_process_peak_rss_mb"] = max(peak_in.values())
        # The model stages (MiniLM on this CPU, in this process only to time the embedding)
        # apart from the pool's path: seed, replication, the rounds' waits, recall and bytes.
        report["benchmark_process_peak_rss_mb_pool_path"] = max(
            peak for stage, peak in peak_in.items()
            if stage not in ("first_training", "embed_sample"))
        report["load_average_at_end"] = os.getloadavg()
        print(json.dumps({"report": report}), flush=True)
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: S110 - Django may not have started; drop and remove anyway
            pass
        psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
