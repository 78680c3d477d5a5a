"""Redis (broker and cache) stopped for 30 s while annotators label over HTTP, a worker
trains a reward model (head mode, tiny base model) and imports a file, with real servers of
the fault tests' own: next and label keep answering (200/201 only), no label is lost, a job an
admin starts during the outage is refused with 503 (and left failed, not queued without a
task), and the training and the import succeed once Redis is back."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from celery import Celery

from tests.faults.servers import app_against, http
from tests.faults.workload import (
    Annotator,
    count,
    labelled,
    pairs_file,
    query,
    seed_and_serve,
    stored_labels,
    upload,
    wait_for_value,
)

pytestmark = [pytest.mark.slow, pytest.mark.worker]

ANNOTATORS = 4
PAIRS = 3000
VERIFIED = 1500  # pairs with a consensus: the training data
IMPORT_ROWS = 20_000
OUTAGE_S = 30  # as issue 18 measured it


@pytest.fixture(scope="module")
def tiny_base_model(tmp_path_factory) -> str:
    from scoring.reward_model import build_tiny_reward_model

    return str(build_tiny_reward_model(tmp_path_factory.mktemp("tiny-rm") / "tiny"))


def _job(database: str, job_id: int, column: str = "status") -> object:
    return query(database, f"SELECT {column} FROM scoring_job WHERE id = {int(job_id)}")  # noqa: S608 - ours


def test_a_redis_outage_loses_no_label_and_the_training_and_import_finish_after_it(
    tmp_path, fault_servers, tiny_base_model, monkeypatch
):
    redis = fault_servers.redis
    database = fault_servers.fresh_database()
    with app_against(
        database,
        redis,
        extra={
            "ARBITER_IMPORT_INLINE_MAX_BYTES": "0",
            "ARBITER_BASE_MODEL": tiny_base_model,
        },
    ) as app:
        # The seed leaves a train job (head mode) queued; its task is sent below, once
        # labelling runs.
        campaign_id, tokens, admin, train_job = seed_and_serve(
            app,
            tmp_path,
            pairs=PAIRS,
            annotators=ANNOTATORS,
            verified=VERIFIED,
            train=True,
            worker_queues="default,gpu",
            worker_concurrency=2,
        )

        stop = threading.Event()
        annotators = [Annotator(app.url, campaign_id, token, stop) for token in tokens]
        for annotator in annotators:
            annotator.start()
        status, body = upload(
            app, campaign_id, admin, pairs_file(tmp_path / "import.jsonl", IMPORT_ROWS, "imported")
        )
        assert status == 202, body
        import_job = int(body["job"])
        # A client of the throwaway Redis (never made the current app of this process; the
        # environment's CELERY_BROKER_URL, the suite's own broker, would win over its URL).
        with monkeypatch.context() as patch:
            patch.delenv("CELERY_BROKER_URL", raising=False)
            with Celery(broker=redis.url(0), set_as_current=False) as broker:
                broker.send_task("scoring.train_reward_model", args=(train_job,), queue="gpu")
        training = wait_for_value(
            lambda: _job(database, train_job),
            lambda value: value != "queued",
            timeout=120,
            poll=0.1,
        )
        assert training == "running", (training, _job(database, train_job, "error"))

        redis.stop()  # the worker is training now
        labelled_before = labelled(annotators)
        outage_started = time.monotonic()
        # An admin starts an export while the broker is down: a clear 503, and no job row
        # left queued with no task to run it.
        status, body, headers = http(
            "POST",
            f"{app.url}/api/campaigns/{campaign_id}/exports",
            token=admin,
            body={"format": "jsonl"},
        )
        assert status == 503, (status, body)
        retry_after = {name.lower(): value for name, value in headers.items()}["retry-after"]
        assert body["code"] == "queue_unavailable" and int(retry_after) > 0, body
        assert (
            query(
                database,
                "SELECT count(*) FROM scoring_job WHERE kind = 'export' "
                "AND status IN ('queued', 'running')",
            )
            == 0
        )
        assert "broker" in str(
            query(
                database,
                "SELECT error FROM scoring_job WHERE kind = 'export' AND status = 'failed'",
            )
        )
        time.sleep(max(OUTAGE_S - (time.monotonic() - outage_started), 0))
        labelled_during = labelled(annotators) - labelled_before
        training_at_restart = _job(database, train_job)
        redis.start()
        time.sleep(4)
        stop.set()
        for annotator in annotators:
            annotator.join(timeout=60)

        statuses = sum((annotator.statuses for annotator in annotators), Counter())
        summary = f"{dict(statuses)}; {labelled_during} during the outage"
        print("statuses:", summary, "; training when Redis came back:", training_at_restart)  # noqa: T201
        assert set(statuses) <= {"next 200", "next 204", "label 201"}, statuses
        assert labelled_during > 0, "labelling stopped while Redis was down"
        acknowledged, stored = stored_labels(database, annotators)
        assert stored == acknowledged

        training = wait_for_value(
            lambda: _job(database, train_job),
            lambda value: value in ("succeeded", "failed"),
            timeout=180,
        )
        assert training == "succeeded", (training, _job(database, train_job, "error"))
        versions = f"SELECT count(*) FROM scoring_modelversion WHERE job_id = {train_job}"  # noqa: S608
        assert query(database, versions) == 1
        import_status = f"SELECT status FROM annotation_importjob WHERE id = {import_job}"  # noqa: S608
        imported = wait_for_value(
            lambda: query(database, import_status),
            lambda value: value in ("succeeded", "failed"),
            timeout=120,
        )
        assert imported == "succeeded", imported
        pairs = f"SELECT count(*) FROM annotation_pair WHERE campaign_id = {int(campaign_id)}"  # noqa: S608
        assert count(database, pairs) - PAIRS == IMPORT_ROWS
