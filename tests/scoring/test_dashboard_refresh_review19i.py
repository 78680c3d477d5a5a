"""Review 19 (i): the dashboards' minute task under its time limit and on campaigns whose
refresh outlasts fifteen minutes."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from celery.exceptions import SoftTimeLimitExceeded
from django.core.cache import cache

from scoring.dashboard import selectors
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import add_label

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_cache")]


def _labelled_campaign(annotator):  # noqa: ANN001, ANN202
    campaign = CampaignFactory()
    add_label(PairFactory(campaign=campaign), annotator, 1)
    return campaign


def test_the_soft_time_limit_stops_the_refresh_and_lets_the_campaign_go(monkeypatch, annotator_a):
    """The limit ends the task (so Celery resets the connections a stopped query left, and the
    hard kill never comes), not just the campaign it arrived in."""
    first, second = _labelled_campaign(annotator_a), _labelled_campaign(annotator_a)
    seen = []

    def agreement_report(*, campaign, use_cache):  # noqa: ANN001, ANN202
        seen.append(campaign.pk)
        raise SoftTimeLimitExceeded

    monkeypatch.setattr(selectors, "agreement_report", agreement_report)
    with pytest.raises(SoftTimeLimitExceeded):
        selectors.dashboards_refresh()
    assert len(seen) == 1  # the other campaign waits for the next run
    stopped = first if seen[0] == first.pk else second
    assert cache.get(selectors._campaign_key(stopped, "refresh-running")) is None


def test_a_refresh_that_outlasts_fifteen_minutes_is_not_started_twice(
    monkeypatch, annotator_a, settings
):
    """A run within the task's time limit still holds its campaign: another worker's run (the
    next minute's) skips it rather than repeating the slow work alongside."""
    settings.DASHBOARD_REFRESH_TIME_LIMIT_S = 2 * 3600
    campaign = _labelled_campaign(annotator_a)
    original = selectors.agreement_report
    nested: list[int] = []
    started: list[bool] = []

    with time_machine.travel("2026-12-01 12:00:00+00:00", tick=False) as traveller:

        def slow_agreement_report(*, campaign, use_cache):  # noqa: ANN001, ANN202
            if not started:
                started.append(True)
                traveller.shift(timedelta(minutes=20))  # the report of a very large campaign
                nested.append(selectors.dashboards_refresh())  # the next beat, another worker
            return original(campaign=campaign, use_cache=use_cache)

        monkeypatch.setattr(selectors, "agreement_report", slow_agreement_report)
        assert selectors.dashboards_refresh() == 1
    assert nested == [0]
    assert cache.get(selectors._campaign_key(campaign, "refresh-running")) is None


def _stored_panels(campaign) -> list[str]:  # noqa: ANN001
    keys = [
        selectors.campaign_agreement_key(campaign),
        *selectors.quality_report_keys(campaign),
        selectors._campaign_key(campaign, "annotators"),
        selectors._campaign_key(campaign, "loop-effect"),
    ]
    return [key for key in keys if cache.get(key) is not None]


@pytest.mark.parametrize(("report_takes", "kept"), [(timedelta(minutes=4), True), (None, False)])
def test_a_slow_campaigns_panels_are_kept_until_its_next_refresh(
    monkeypatch, annotator_a, report_takes, kept
):
    """Review 19: a campaign whose refresh takes minutes is refreshed only that often, but its
    panels were stored for a minute or two: in between, every page (the agreement panel polls
    every 5 s) recomputed them in its request."""
    campaign = _labelled_campaign(annotator_a)
    original = selectors.agreement_report
    with time_machine.travel("2026-12-01 12:00:00+00:00", tick=False) as traveller:

        def agreement_report(*, campaign, use_cache):  # noqa: ANN001, ANN202
            if report_takes is not None:
                traveller.shift(report_takes)
            return original(campaign=campaign, use_cache=use_cache)

        monkeypatch.setattr(selectors, "agreement_report", agreement_report)
        assert selectors.dashboards_refresh() == 1
        stored = _stored_panels(campaign)
        assert len(stored) == 6
        traveller.shift(timedelta(minutes=5))  # past the panels' own lifetimes
        # Not due again before 4 minutes after the last ended; then it takes as long again.
        assert _stored_panels(campaign) == (stored if kept else [])
