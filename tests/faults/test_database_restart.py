"""PostgreSQL restarted during a label burst and during an import, with real servers: a
throwaway PostgreSQL cluster and Redis of the fault tests' own, the app under Granian and a
real Celery worker. Every label acknowledged with 201 is stored, the requests that met the
outage got 503 (never 500), and the import is all or nothing."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from tests.faults.servers import app_against
from tests.faults.workload import (
    Annotator,
    count,
    pairs_file,
    query,
    seed_and_serve,
    stored_labels,
    upload,
    wait_for_value,
)

pytestmark = [pytest.mark.slow, pytest.mark.worker]

ANNOTATORS = 6
PAIRS = 3000
IMPORT_ROWS = 40_000


def test_a_postgresql_restart_loses_no_acknowledged_label_and_answers_503_not_500(
    tmp_path, fault_servers
):
    postgres = fault_servers.postgres
    database = fault_servers.fresh_database()
    with app_against(
        database, fault_servers.redis, extra={"ARBITER_IMPORT_INLINE_MAX_BYTES": "0"}
    ) as app:
        campaign_id, tokens, admin, _ = seed_and_serve(
            app, tmp_path, pairs=PAIRS, annotators=ANNOTATORS
        )

        stop = threading.Event()
        annotators = [Annotator(app.url, campaign_id, token, stop) for token in tokens]
        for annotator in annotators:
            annotator.start()
        time.sleep(3)

        # An import in the background, then the restart while it and the burst run.
        status, body = upload(
            app, campaign_id, admin, pairs_file(tmp_path / "import.jsonl", IMPORT_ROWS, "imported")
        )
        assert status == 202, body
        job_id = int(body["job"])
        time.sleep(1.0)

        postgres.stop("fast")
        time.sleep(3)
        postgres.start()
        time.sleep(4)
        stop.set()
        for annotator in annotators:
            annotator.join(timeout=60)

        statuses = sum((annotator.statuses for annotator in annotators), Counter())
        print("statuses:", dict(statuses))  # noqa: T201
        assert not any(key.endswith(" 500") for key in statuses), statuses
        assert set(statuses) <= {
            "next 200",
            "next 204",
            "next 503",
            "label 201",
            "label 503",
            "label 409",
        }, statuses
        assert any(key.endswith(" 503") for key in statuses), "the outage was not met"
        assert sum(annotator.retry_after_missing for annotator in annotators) == 0
        acknowledged, stored = stored_labels(database, annotators)
        assert acknowledged
        assert stored == acknowledged

        # The import: every row or none, and its job says which (a worker whose import lost
        # the database records the failure once the database is back).
        status = wait_for_value(
            lambda: query(database, f"SELECT status FROM annotation_importjob WHERE id = {job_id}"),  # noqa: S608
            lambda value: value in ("succeeded", "failed"),
            timeout=90,
        )
        pairs = f"SELECT count(*) FROM annotation_pair WHERE campaign_id = {int(campaign_id)}"  # noqa: S608
        imported = count(database, pairs) - PAIRS
        print("import:", status, imported)  # noqa: T201
        assert status in ("succeeded", "failed"), status
        assert imported in (0, IMPORT_ROWS), imported
        assert (imported == IMPORT_ROWS) == (status == "succeeded"), (imported, status)
