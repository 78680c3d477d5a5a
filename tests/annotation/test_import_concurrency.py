"""Two imports into one campaign at once, with real database connections."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import connection, connections

from annotation.models import Pair, Round
from annotation.services.imports import pairs_import
from tests.conftest import start_in_thread
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _write_rows(path, first: int):
    rows = [
        {"prompt": f"What is {i} + {i}?", "response_a": f"{2 * i}", "response_b": f"{2 * i + 1}"}
        for i in range(first, first + 3)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_two_imports_into_a_campaign_without_an_open_round_share_the_round_they_open(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("imports into one campaign serialise on a PostgreSQL advisory lock")
    campaign = CampaignFactory()
    first_holds_its_transaction = threading.Event()
    release_first = threading.Event()

    def hold(_rows: int) -> None:
        first_holds_its_transaction.set()
        release_first.wait(timeout=30)

    def run_import(path, on_progress=None):
        try:
            return pairs_import(campaign=campaign, path=path, on_progress=on_progress)
        finally:
            connections.close_all()

    first = start_in_thread(lambda: run_import(_write_rows(tmp_path / "a.jsonl", 0), hold))
    assert first_holds_its_transaction.wait(timeout=30)
    # The second import starts while the first, which opened round 1, has not committed.
    second = start_in_thread(lambda: run_import(_write_rows(tmp_path / "b.jsonl", 100)))
    time.sleep(1)
    release_first.set()

    assert first.result(timeout=30).created == 3
    assert second.result(timeout=30).created == 3
    (opened,) = Round.objects.filter(campaign=campaign)
    assert opened.number == 1
    assert Pair.objects.filter(campaign=campaign, round=opened).count() == 6
