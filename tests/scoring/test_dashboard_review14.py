"""The dashboard shows the stored figures the other pages show: "Recompute now" on the agreement
page reaches its agreement panel, and the annotator table's Labels and Last 24 h count the same
labels even when the stored quality figures are minutes old."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from annotation.models import Pair, Round
from scoring.dashboard import selectors
from scoring.dashboard.selectors import agreement_panel, annotator_table
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import add_label

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_cache")]


def _admin_client(user) -> Client:  # noqa: ANN001
    client = Client()
    client.force_login(user)
    return client


def test_recompute_now_reaches_the_dashboards_agreement_panel(admin_user, annotator_a, annotator_b):
    campaign = CampaignFactory()
    round_ = Round.objects.create(campaign=campaign, number=1)
    pairs = [
        PairFactory(campaign=campaign, round=round_, status=Pair.Status.COMPLETE) for _ in range(6)
    ]
    for index, pair in enumerate(pairs[:3]):
        add_label(pair, annotator_a, 2 if index % 2 else -2)
        add_label(pair, annotator_b, 2 if index % 2 else -2)
    assert agreement_panel(campaign=campaign)["overall"]["n_pairs"] == 3
    for pair in pairs[3:]:
        add_label(pair, annotator_a, 2)
        add_label(pair, annotator_b, -2)
    client = _admin_client(admin_user)
    page = client.get(f"/campaigns/{campaign.pk}/agreement/?fresh=1")
    assert page.status_code == 200
    assert page.context["report"]["overall"]["n_pairs"] == 6
    assert agreement_panel(campaign=campaign)["overall"]["n_pairs"] == 6
    part = client.get(f"/campaigns/{campaign.pk}/dashboard/?part=agreement", HTTP_HX_REQUEST="true")
    assert ", 6 pairs)" in part.content.decode()


def test_the_annotator_tables_labels_and_pace_count_the_same_labels(admin_user, annotator_a):
    campaign = CampaignFactory()
    round_ = Round.objects.create(campaign=campaign, number=1)
    pairs = [PairFactory(campaign=campaign, round=round_) for _ in range(5)]
    for pair in pairs[:3]:
        add_label(pair, annotator_a, 1)
    client = _admin_client(admin_user)
    # The quality page stores the annotator figures ...
    assert client.get(f"/campaigns/{campaign.pk}/quality/").status_code == 200
    for pair in pairs[3:]:
        add_label(pair, annotator_a, 1)
    # ... and the dashboard, opened later, counts the same labels in every column.
    (row,) = annotator_table(campaign=campaign)["rows"]
    assert (row["labels"], row["last_day"], row["last_hour"]) == (3, 3, 3)
    (row,) = annotator_table(campaign=campaign, refresh=True)["rows"]
    assert (row["labels"], row["last_day"], row["last_hour"]) == (5, 5, 5)


def test_one_campaign_failing_to_refresh_does_not_stop_the_others(monkeypatch, caplog, annotator_a):
    from scoring.dashboard import selectors

    broken, fine = CampaignFactory(), CampaignFactory()
    for campaign in (broken, fine):
        add_label(PairFactory(campaign=campaign), annotator_a, 1)
    original = selectors.loop_effect_panel
    seen = []

    def loop_effect_panel(*, campaign, refresh: bool = False):  # noqa: ANN001, ANN202
        seen.append(campaign.pk)
        if campaign.pk == broken.pk:
            raise RuntimeError("a campaign whose panel cannot be computed")
        return original(campaign=campaign, refresh=refresh)

    monkeypatch.setattr(selectors, "loop_effect_panel", loop_effect_panel)
    assert selectors.dashboards_refresh() == 1
    assert sorted(seen) == sorted([broken.pk, fine.pk])
    assert f"campaign {broken.pk} failed" in caplog.text


# --- review 15: the minute task at scale --------------------------------------------------


def test_a_slow_refresh_waits_as_long_as_it_took_before_the_next() -> None:
    assert selectors.refresh_due(last=None, now=1000.0)
    assert selectors.refresh_due(last=(999.0, 5.0), now=1000.0)  # quick: every minute
    assert not selectors.refresh_due(last=(950.0, 90.0), now=1000.0)  # took 90 s, 50 s ago
    assert selectors.refresh_due(last=(900.0, 90.0), now=1000.0)


def test_a_campaign_another_run_is_refreshing_is_skipped(annotator_a) -> None:
    campaign = CampaignFactory()
    add_label(PairFactory(campaign=campaign), annotator_a, 1)
    running = selectors._campaign_key(campaign, "refresh-running")
    # Another worker's run holds the campaign (its key is what that run took).
    assert cache.add(running, True, 60)
    assert selectors.dashboards_refresh() == 0
    cache.delete(running)
    assert selectors.dashboards_refresh() == 1
    assert cache.get(running) is None  # let go after the run


def test_the_beat_drops_a_refresh_not_started_within_its_minute(settings) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["refresh-dashboards"]
    assert entry["options"]["expires"] < entry["schedule"]


def test_the_dashboard_index_reads_each_campaigns_cached_pair_counts() -> None:
    """The index page (refreshed every 10 s while open) grouped the whole pair table; it now
    reads the counts the workspace and the progress API keep for each campaign."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from annotation.selectors import campaign_pair_counts

    campaigns = [CampaignFactory() for _ in range(2)]
    PairFactory.create_batch(3, campaign=campaigns[0])
    PairFactory(campaign=campaigns[1], is_gold=True, status=Pair.Status.COMPLETE)
    for campaign in campaigns:
        campaign_pair_counts(campaign=campaign)  # warm, as the annotators' pages keep them
    with CaptureQueriesContext(connection) as queries:
        listed = {item["id"]: item for item in selectors.dashboard_campaigns()}
    assert not [q["sql"] for q in queries.captured_queries if '"annotation_pair"' in q["sql"]]
    first, second = listed[campaigns[0].pk], listed[campaigns[1].pk]
    assert (first["total"], first["buckets"]["pending"], first["gold"]) == (3, 3, 0)
    assert (second["total"], second["gold"], second["complete_share"]) == (0, 1, None)


def test_the_silver_panel_shows_a_finished_curations_verdicts_at_once() -> None:
    """The panel cached its counts for seconds while reading the job fresh: right after
    "Succeeded" it still showed every pair uncurated."""
    from scoring.models import Job

    campaign = CampaignFactory()
    pairs = PairFactory.create_batch(3, campaign=campaign, silver_preference=1)
    job = Job.objects.create(campaign=campaign, kind=Job.Kind.CURATE, status=Job.Status.RUNNING)
    before = selectors.silver_summary(campaign=campaign)
    assert (before["uncurated"], before["verdicts"]) == (3, {})
    Pair.objects.filter(pk__in=[pair.pk for pair in pairs[:2]]).update(curation="kept")
    Pair.objects.filter(pk=pairs[2].pk).update(curation="discarded")
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED)
    after = selectors.silver_summary(campaign=campaign)
    assert after["job"].status == Job.Status.SUCCEEDED
    assert (after["uncurated"], after["verdicts"]) == (0, {"kept": 2, "discarded": 1})
