"""PostgreSQL restarted during a label burst and during an import, with real servers: a
throwaway PostgreSQL cluster and Redis of the test's own, the app under Granian and a real
Celery worker. Every label acknowledged with 201 is stored, the requests that met the outage
got 503 (never 500), and the import is all or nothing."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.faults.servers import app_against, http, throwaway_postgres, throwaway_redis

pytestmark = [pytest.mark.slow, pytest.mark.worker]

ANNOTATORS = 6
PAIRS = 3000
IMPORT_ROWS = 40_000


def _pairs_file(path: Path, rows: int, tag: str) -> Path:
    with path.open("w") as handle:
        for index in range(rows):
            handle.write(json.dumps({
                "prompt": f"{tag} question {index}",
                "response_a": f"answer A {index}",
                "response_b": f"answer B {index}",
            }) + "\n")
    return path


def seed_and_serve(
    app, tmp_path: Path, *, pairs: int, annotators: int  # noqa: ANN001
) -> tuple[int, list[str], str]:
    """Migrate, import a seed campaign, create annotators and an admin, start the web server
    and a default worker: (campaign id, annotator tokens, admin token)."""
    app.manage("migrate", "--noinput", timeout=600)
    seeded = json.loads(app.manage(
        "import_pairs", str(_pairs_file(tmp_path / "pairs.jsonl", pairs, "seed")),
        "--campaign", "faults", "--open-to-all",
    ).strip().splitlines()[-1])
    tokens = [
        app.manage("create_user", f"annotator{i}", "--role", "annotator").strip()
        .splitlines()[-1]
        for i in range(annotators)
    ]
    admin = app.manage("create_user", "boss", "--role", "admin").strip().splitlines()[-1]
    app.start_web()
    app.start_worker(queues="default")
    return seeded["campaign_id"], tokens, admin


def _count(app, sql: str) -> int:  # noqa: ANN001
    code = (
        "from django.db import connection\n"
        "with connection.cursor() as c:\n"
        f"    c.execute({sql!r})\n"
        "    print(c.fetchone()[0])"
    )
    return int(app.manage("shell", "-c", code).strip().splitlines()[-1])


class Annotator(threading.Thread):
    def __init__(self, url: str, campaign_id: int, token: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.campaign_id, self.token, self.stop = url, campaign_id, token, stop
        self.statuses: Counter[str] = Counter()
        self.acknowledged: list[int] = []
        self.retry_after_missing = 0

    def _record(self, what: str, status: int, headers: dict[str, str]) -> None:
        self.statuses[f"{what} {status}"] += 1
        if status == 503 and "retry-after" not in {name.lower() for name in headers}:
            self.retry_after_missing += 1

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status, body, headers = http(
                    "POST", f"{self.url}/api/campaigns/{self.campaign_id}/next", token=self.token
                )
                self._record("next", status, headers)
                if status == 204:
                    return
                if status != 200:
                    time.sleep(0.2)
                    continue
                assignment = body["assignment"]["id"]
                status, _, headers = http(
                    "POST", f"{self.url}/api/assignments/{assignment}/label", token=self.token,
                    body={"preference": 1},
                )
                self._record("label", status, headers)
                if status == 201:
                    self.acknowledged.append(assignment)
            except OSError as error:  # the server itself never stops here
                self.statuses[f"connection error {type(error).__name__}"] += 1
                time.sleep(0.2)


def test_a_postgresql_restart_loses_no_acknowledged_label_and_answers_503_not_500(tmp_path):
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
        time.sleep(3)

        # An import in the background, then the restart while it and the burst run.
        big = _pairs_file(tmp_path / "import.jsonl", IMPORT_ROWS, "imported")
        boundary = "----arbiterfault"
        payload = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"import.jsonl\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode() + big.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(  # noqa: S310 - loopback http
            f"{app.url}/api/campaigns/{campaign_id}/imports", data=payload, method="POST",
            headers={"Authorization": f"Token {admin}",
                     "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            assert response.status == 202
            job_id = json.loads(response.read())["job"]
        time.sleep(1.0)

        postgres.stop("fast")
        time.sleep(3)
        postgres.start()
        time.sleep(4)
        stop.set()
        for annotator in annotators:
            annotator.join(timeout=60)

        statuses = sum((annotator.statuses for annotator in annotators), Counter())
        acknowledged = [a for annotator in annotators for a in annotator.acknowledged]
        print("statuses:", dict(statuses), "acknowledged:", len(acknowledged))  # noqa: T201
        assert not any(key.endswith(" 500") for key in statuses), statuses
        assert set(statuses) <= {"next 200", "next 204", "next 503", "label 201", "label 503",
                                 "label 409"}, statuses
        assert any(key.endswith(" 503") for key in statuses), "the outage was not met"
        assert sum(annotator.retry_after_missing for annotator in annotators) == 0
        assert acknowledged
        ids = ",".join(str(int(a)) for a in acknowledged)
        stored = _count(
            app, f"SELECT count(*) FROM annotation_label WHERE assignment_id IN ({ids})"  # noqa: S608 - our ints
        )
        assert stored == len(acknowledged)

        # The import: every row or none, whatever became of its job.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status = app.manage("shell", "-c", (
                "from annotation.models import ImportJob\n"
                f"print(ImportJob.objects.get(pk={job_id}).status)"
            )).strip().splitlines()[-1]
            if status in ("succeeded", "failed"):
                break
            time.sleep(2)
        imported = _count(
            app, f"SELECT count(*) FROM annotation_pair WHERE campaign_id = {int(campaign_id)}"  # noqa: S608
        ) - PAIRS
        assert imported in (0, IMPORT_ROWS), imported
        assert (imported == IMPORT_ROWS) == (status == "succeeded"), (imported, status)
