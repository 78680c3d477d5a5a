"""Time and pay per annotator over a period: page, CSV and figures on a seeded campaign."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from annotation.models import Pair
from annotation.services.assignments import assignment_next, assignment_skip
from annotation.services.members import member_add, member_quarantine, member_restore
from reviewers.annotator_report import quarantined_seconds_in
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import judge, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded():
    """Two pairs labelled by ann and bob (bob disagrees on one), a gold check each, a skip."""
    campaign = CampaignFactory(scale="binary", annotators_per_pair=2)
    ann, bob, cat = (user_with_role(name) for name in ("ann", "bob", "cat"))
    PairFactory(campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE)
    first = PairFactory(campaign=campaign, priority=2)
    second = PairFactory(campaign=campaign, priority=1)
    judge(campaign, ann, 1, seconds=30)
    judge(campaign, bob, 1, seconds=50)
    judge(campaign, ann, -1, seconds=20)
    judge(campaign, bob, 1, seconds=40)
    # Gold checks: ann right, bob wrong (gold pairs are handed out when gold_share says so).
    campaign.gold_share = 1.0
    campaign.save(update_fields=["gold_share"])
    judge(campaign, ann, 1, seconds=10)
    judge(campaign, bob, -1, seconds=5)
    campaign.gold_share = 0.0
    campaign.save(update_fields=["gold_share"])
    third = PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=cat)
    assert assignment is not None and assignment.pair_id == third.pk
    assignment_skip(assignment=assignment)
    first.refresh_from_db()
    second.refresh_from_db()
    return campaign, ann, bob, cat


def _csv_rows(response):
    assert response["Content-Type"].startswith("text/csv")
    return {row["username"]: row for row in csv.DictReader(io.StringIO(response.content.decode()))}


def test_the_report_sums_time_labels_skips_and_quality(client, admin_user, seeded):
    campaign, _ann, _bob, _cat = seeded
    client.force_login(admin_user)
    today = timezone.localdate().isoformat()
    response = client.get(
        reverse("annotator-report"),
        {"start": today, "end": today, "campaign": campaign.pk, "format": "csv"},
    )
    rows = _csv_rows(response)
    assert set(rows) == {"ann", "bob", "cat"}
    ann, bob, cat = rows["ann"], rows["bob"], rows["cat"]
    assert float(ann["active_seconds"]) == 60 and float(bob["active_seconds"]) == 95
    assert ann["labels"] == "2" and bob["labels"] == "2" and ann["gold_checks"] == "1"
    assert float(ann["gold_accuracy"]) == 1.0 and float(bob["gold_accuracy"]) == 0.0
    assert cat["labels"] == "0" and cat["skips"] == "1" and cat["gold_accuracy"] == ""
    # The split pair (1 vs -1 on a binary scale) has no consensus; the other agrees.
    assert float(ann["consensus_agreement"]) == 1.0
    assert ann["quarantine_seconds"] == ""
    page = client.get(reverse("annotator-report"), {"start": today, "end": today})
    assert page.status_code == 200
    assert "ann" in page.content.decode() and "155 active seconds" in page.content.decode()


def test_the_period_bounds_the_report(client, admin_user, seeded):
    client.force_login(admin_user)
    tomorrow = timezone.localdate() + timedelta(days=1)
    with time_machine.travel(timezone.now() + timedelta(days=1), tick=False):
        response = client.get(
            reverse("annotator-report"), {"start": tomorrow.isoformat(), "format": "csv"}
        )
    assert _csv_rows(response) == {}


def test_only_admins_see_it_and_bad_dates_are_refused(client, admin_user, expert):
    client.force_login(expert)
    assert client.get(reverse("annotator-report")).status_code == 404
    client.force_login(admin_user)
    assert client.get(reverse("annotator-report"), {"start": "yesterday"}).status_code == 400
    assert (
        client.get(reverse("annotator-report"), {"start": "2026-02-02", "end": "2026-02-01"})
    ).status_code == 400


def test_quarantined_seconds_are_clipped_to_the_period_and_run_until_now() -> None:
    t0 = timezone.now()
    states = [
        (t0, "active"),
        (t0 + timedelta(hours=1), "quarantined"),
        (t0 + timedelta(hours=3), "active"),
        (t0 + timedelta(hours=5), "quarantined"),
    ]
    start, end = t0 + timedelta(hours=2), t0 + timedelta(hours=6)
    # 2h-3h of the first quarantine, then 5h-6h of the second (it lasts until now, 10h).
    seconds = quarantined_seconds_in(states, start=start, end=end, now=t0 + timedelta(hours=10))
    assert seconds == 2 * 3600
    assert quarantined_seconds_in(states[:1], start=start, end=end, now=end) == 0.0


def test_the_report_counts_a_quarantine_from_the_member_transitions(
    client, admin_user, seeded
) -> None:
    campaign, _ann, bob, _cat = seeded
    client.force_login(admin_user)
    member = member_add(campaign=campaign, user=bob)
    idle = member_add(campaign=campaign, user=user_with_role("dan"))
    with time_machine.travel(timezone.now() - timedelta(hours=2), tick=False):
        member_quarantine(member=member, reason="test: below the gold threshold")
        member_quarantine(member=idle, reason="test: quarantined, then did nothing")
    with time_machine.travel(timezone.now() - timedelta(hours=1), tick=False):
        member.refresh_from_db()
        assert member_restore(member=member)

    rows = _csv_rows(client.get(reverse("annotator-report"), {"format": "csv"}))
    assert float(rows["bob"]["quarantine_seconds"]) == pytest.approx(3600, abs=5)
    # Quarantined all along and nothing done: listed by name, with only the quarantine time.
    assert float(rows["dan"]["quarantine_seconds"]) == pytest.approx(7200, abs=5)
    assert rows["dan"]["labels"] == "0" and rows["dan"]["skips"] == "0"
    assert rows["ann"]["quarantine_seconds"] == ""
