"""Redis (broker and cache) stopped for 30 s while annotators label over HTTP and a worker
runs a job, with real servers of the test's own: next and label keep answering, no label is
lost, and the job completes once Redis is back."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import Counter

import pytest

from tests.faults.servers import app_against, throwaway_postgres, throwaway_redis
from tests.faults.test_database_restart import (
    Annotator,
    _count,
    _pairs_file,
    seed_and_serve,
)

pytestmark = [pytest.mark.slow, pytest.mark.worker]

ANNOTATORS = 4
PAIRS = 3000
IMPORT_ROWS = 20_000
OUTAGE_S = 30


def _upload(app, campaign_id: int, token: str, path) -> int:  # noqa: ANN001
    boundary = "----arbiterfault"
    payload = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
        f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(  # noqa: S310 - loopback http
        f"{app.url}/api/campaigns/{campaign_id}/imports", data=payload, method="POST",
        headers={"Authorization": f"Token {token}",
                 "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        assert response.status == 202
        return json.loads(response.read())["job"]


def test_a_redis_outage_loses_no_label_and_the_job_completes_after_it(tmp_path):
    with throwaway_postgres() as postgres, throwaway_redis() as redis, app_against(
        postgres.url, redis, extra={"ARBITER_IMPORT_INLINE_MAX_BYTES": "0"}
    ) as app:
        campaign_id, tokens, admin = seed_and_serve(
            app, tmp_path, pairs=PAIRS, annotators=ANNOTATORS
        )

        stop = threading.Event()
        annotators = [Annotator(app.url, campaign_id, token, stop) for token in tokens]
        for annotator in annotators:
            annotator.start()
        time.sleep(2)
        job_id = _upload(app, campaign_id, admin, _pairs_file(
            tmp_path / "import.jsonl", IMPORT_ROWS, "imported"))

        redis.stop()
        labelled_before = sum(len(a.acknowledged) for a in annotators)
        time.sleep(OUTAGE_S)
        labelled_during = sum(len(a.acknowledged) for a in annotators) - labelled_before
        redis.start()
        time.sleep(4)
        stop.set()
        for annotator in annotators:
            annotator.join(timeout=60)

        statuses = sum((annotator.statuses for annotator in annotators), Counter())
        acknowledged = [a for annotator in annotators for a in annotator.acknowledged]
        print("statuses:", dict(statuses), "during the outage:", labelled_during)  # noqa: T201
        assert set(statuses) <= {"next 200", "next 204", "label 201"}, statuses
        assert labelled_during > 0, "labelling stopped while Redis was down"
        ids = ",".join(str(int(a)) for a in acknowledged)
        stored = _count(
            app, f"SELECT count(*) FROM annotation_label WHERE assignment_id IN ({ids})"  # noqa: S608 - our ints
        )
        assert stored == len(acknowledged)

        deadline = time.monotonic() + 90
        status = ""
        while time.monotonic() < deadline:
            status = app.manage("shell", "-c", (
                "from annotation.models import ImportJob\n"
                f"print(ImportJob.objects.get(pk={job_id}).status)"
            )).strip().splitlines()[-1]
            if status in ("succeeded", "failed"):
                break
            time.sleep(2)
        assert status == "succeeded", status
        imported = _count(
            app, f"SELECT count(*) FROM annotation_pair WHERE campaign_id = {int(campaign_id)}"  # noqa: S608
        ) - PAIRS
        assert imported == IMPORT_ROWS
