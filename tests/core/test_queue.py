"""core.queue: a task sent after commit to a broker that cannot be reached settles its row and
answers 503 with Retry-After (the Redis-outage fault test shows it through the API)."""

from __future__ import annotations

import socket

import pytest
from celery import Celery

from core.queue import QueueUnavailable, send_task_on_commit


def _dead_broker_url() -> str:
    with socket.socket() as probe:  # a free loopback port: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{probe.getsockname()[1]}/0"


def test_a_task_the_broker_cannot_take_settles_its_row_and_answers_503(
    db, monkeypatch, django_capture_on_commit_callbacks
):
    # The environment's CELERY_BROKER_URL (the suite's own Redis) would win over the URL given.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    settled: list[str] = []
    with Celery(broker=_dead_broker_url(), set_as_current=False) as dead:
        with pytest.raises(QueueUnavailable, match="nothing was started") as raised:
            with django_capture_on_commit_callbacks(execute=True):
                send_task_on_commit(
                    "annotation.import_pairs",
                    args=(1,),
                    on_unavailable=lambda: settled.append("failed"),
                    app=dead,
                )
    assert settled == ["failed"]
    assert raised.value.status == 503 and raised.value.code == "queue_unavailable"
    assert raised.value.retry_after is not None and raised.value.retry_after > 0


def test_nothing_is_sent_or_settled_before_the_transaction_commits(
    db, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    settled: list[str] = []
    with Celery(broker=_dead_broker_url(), set_as_current=False) as dead:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            send_task_on_commit(
                "annotation.import_pairs",
                args=(1,),
                on_unavailable=lambda: settled.append("failed"),
                app=dead,
            )
    assert len(callbacks) == 1 and settled == []
