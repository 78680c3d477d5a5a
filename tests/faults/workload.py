"""What the fault tests run against their throwaway servers: a seeded campaign, annotators
looping next + label over HTTP, uploads, and reads of the database straight from the test.

Set-up is one `manage.py shell` process (import, users, tokens, training data) instead of one
process per step, and the database reads use psycopg directly: each Django start-up costs
seconds on a busy machine."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg

from tests.faults.servers import App, http


def pairs_file(path: Path, rows: int, tag: str) -> Path:
    with path.open("w") as handle:
        for index in range(rows):
            handle.write(
                json.dumps(
                    {
                        "prompt": f"{tag} question {index}",
                        "response_a": f"answer A {index}",
                        "response_b": f"answer B {index}",
                    }
                )
                + "\n"
            )
    return path


_SEED = """
import io, json
from django.core.management import call_command
from annotation.models import Pair

def command(*args):
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()[-1]

imported = command("import_pairs", {path!r}, "--campaign", "faults", "--open-to-all")
campaign_id = json.loads(imported)["campaign_id"]
tokens = [command("create_user", f"annotator{{i}}", "--role", "annotator") for i in range({n})]
admin = command("create_user", "boss", "--role", "admin")
# Verified pairs for a training job, set as a finished consensus would leave them (the last
# ones imported, so the annotators' first pairs stay open).
verified = list(Pair.objects.filter(campaign_id=campaign_id).order_by("-id")
                .values_list("id", flat=True)[:{verified}])
Pair.objects.filter(id__in=[i for i in verified if i % 2]).update(
    status="complete", consensus_preference=1)
Pair.objects.filter(id__in=[i for i in verified if not i % 2]).update(
    status="complete", consensus_preference=-1)
train_job = None
if {train}:
    from annotation.models import Campaign
    from scoring.loop.requests import training_request
    train_job = training_request(campaign=Campaign.objects.get(pk=campaign_id),
                                 params={{"mode": "head"}}, enqueue=False).pk
print(json.dumps({{"campaign_id": campaign_id, "tokens": tokens, "admin": admin,
                  "train_job": train_job}}))
"""


Seeded = tuple[int, list[str], str, int | None]


def seed(
    app: App, tmp_path: Path, *, pairs: int, annotators: int, verified: int = 0, train: bool = False
) -> Seeded:
    """Import a campaign of ``pairs``, create annotators and an admin, give the last
    ``verified`` pairs a consensus and (``train``) record a queued head-mode train job whose
    task is not sent: (campaign id, annotator tokens, admin token, train job id or None)."""
    path = pairs_file(tmp_path / "pairs.jsonl", pairs, "seed")
    code = _SEED.format(path=str(path), n=annotators, verified=verified, train=train)
    seeded = json.loads(app.manage("shell", "-c", code).strip().splitlines()[-1])
    return seeded["campaign_id"], seeded["tokens"], seeded["admin"], seeded["train_job"]


def seed_and_serve(
    app: App,
    tmp_path: Path,
    *,
    pairs: int,
    annotators: int,
    verified: int = 0,
    train: bool = False,
    worker_queues: str = "default",
    worker_concurrency: int = 1,
) -> Seeded:
    """``seed``, then the web server and a worker (started side by side)."""
    seeded = seed(app, tmp_path, pairs=pairs, annotators=annotators, verified=verified, train=train)
    worker_ready = app.spawn_worker(queues=worker_queues, concurrency=worker_concurrency)
    app.start_web()
    worker_ready()
    return seeded


def query(database_url: str, sql: str) -> object:
    """The first column of the first row, read with a connection of its own."""
    with psycopg.connect(database_url, connect_timeout=10) as connection:
        row = connection.execute(sql).fetchone()
    return row[0] if row else None


def count(database_url: str, sql: str) -> int:
    value = query(database_url, sql)
    assert isinstance(value, int), value  # noqa: S101 - a test helper
    return value


def wait_for_value(
    read: Callable[[], object], done: Callable[[object], bool], *, timeout: float, poll: float = 0.5
) -> object:
    """Poll ``read`` until ``done`` holds or ``timeout`` passes; the last value read."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(poll)
        value = read()
    return value


def upload(app: App, campaign_id: int, token: str, path: Path) -> tuple[int, dict]:
    """POST a pairs file to the import API: (status, JSON body)."""
    boundary = "----arbiterfault"
    payload = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(  # noqa: S310 - loopback http
        f"{app.url}/api/campaigns/{campaign_id}/imports",
        data=payload,
        method="POST",
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


class Annotator(threading.Thread):
    """Loops next + label over HTTP until stopped, counting every answer."""

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
                    "POST",
                    f"{self.url}/api/assignments/{assignment}/label",
                    token=self.token,
                    body={"preference": 1},
                )
                self._record("label", status, headers)
                if status == 201:
                    self.acknowledged.append(assignment)
            except OSError as error:  # the server itself never stops here
                self.statuses[f"connection error {type(error).__name__}"] += 1
                time.sleep(0.2)


def labelled(annotators: list[Annotator]) -> int:
    return sum(len(annotator.acknowledged) for annotator in annotators)


def stored_labels(database_url: str, annotators: list[Annotator]) -> tuple[int, int]:
    """(labels acknowledged with 201, how many of them the database holds)."""
    acknowledged = [a for annotator in annotators for a in annotator.acknowledged]
    if not acknowledged:
        return 0, 0
    ids = ",".join(str(int(a)) for a in acknowledged)
    sql = f"SELECT count(*) FROM annotation_label WHERE assignment_id IN ({ids})"  # noqa: S608
    return len(acknowledged), count(database_url, sql)
