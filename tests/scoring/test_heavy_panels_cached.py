"""The figures that scan every label or every pair in a round (agreement with its aspects and
re-tests, annotator quality, the loop's effect) are served from the cache that the beat task
``dashboards_refresh`` fills: a warm request to their pages and APIs runs none of those scans,
and its query count does not grow with the campaign."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation.models import Label, Pair, Round
from scoring.dashboard.selectors import dashboards_refresh, loop_effect_panel
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import add_label

pytestmark = pytest.mark.django_db

ASPECTS = [{"name": "helpfulness", "label": "Helpfulness", "scale_min": 1, "scale_max": 5}]
LABEL_TABLE = connection.ops.quote_name(Label._meta.db_table)
PAIR_TABLE = connection.ops.quote_name(Pair._meta.db_table)


def _labelled(campaign, annotators, pairs: int, *, start: int = 0) -> None:
    """``pairs`` pairs of the campaign's round, random or prioritised in turn, labelled by
    the first three annotators and re-tested by the fourth on every third, with an aspect rating
    each."""
    the_round = Round.objects.get(campaign=campaign)
    for index in range(start, start + pairs):
        pair = PairFactory(
            campaign=campaign,
            round=the_round,
            status=Pair.Status.COMPLETE,
            selection=Pair.Selection.RANDOM if index % 2 else Pair.Selection.PRIORITY,
            consensus_preference=1,
        )
        for offset, annotator in enumerate(annotators[:3]):
            add_label(pair, annotator, 1 if (index + offset) % 3 else -1, seconds=10.0 + index)
        if index % 3 == 0:
            add_label(pair, annotators[3], 1, kind="retest")
    Label.objects.filter(campaign=campaign).update(aspect_ratings={"helpfulness": {"a": 4, "b": 2}})


@pytest.fixture
def busy(admin_user):
    campaign = CampaignFactory(aspects=ASPECTS)
    Round.objects.create(campaign=campaign, number=1)
    annotators = UserFactory.create_batch(4)
    return campaign, annotators


def _pages(campaign) -> dict[str, str]:
    return {
        "agreement page": reverse("campaign-agreement", args=[campaign.pk]),
        "quality page": reverse("annotator-quality", args=[campaign.pk]),
        "agreement api": reverse("api-campaign-agreement", args=[campaign.pk]),
        "quality api": reverse("api-annotator-quality", args=[campaign.pk]),
        "loop-effect panel": f"/campaigns/{campaign.pk}/dashboard/?part=loop-effect",
    }


def _visitor(admin_user) -> Callable[[str], Any]:
    """GET as the admin, through the page client or the API client by the URL."""
    client = Client()
    client.force_login(admin_user, backend="django.contrib.auth.backends.ModelBackend")
    api = api_client_for(admin_user)

    def get(url: str) -> Any:
        if "/api/" in url:
            return api.get(url)
        return client.get(url, headers={"HX-Request": "true"} if "part=" in url else None)

    return get


def _heavy(sql: str) -> bool:
    """A scan of the campaign's labels, or the loop-effect read of its pairs in rounds."""
    return (
        LABEL_TABLE in sql
        or "PERCENTILE_CONT" in sql
        or (PAIR_TABLE in sql and '"selection" IN' in sql)
    )


def _queries(get: Callable[[str], Any], url: str) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = get(url)
    assert response.status_code == 200, url
    return [query["sql"] for query in queries.captured_queries]


def test_after_the_beat_task_no_page_or_api_scans_the_labels(busy, admin_user):
    campaign, annotators = busy
    _labelled(campaign, annotators, 4)
    get = _visitor(admin_user)
    assert dashboards_refresh() == 1
    for name, url in _pages(campaign).items():
        heavy = [sql for sql in _queries(get, url) if _heavy(sql)]
        assert heavy == [], f"{name} recomputed: {heavy}"


def test_a_first_visit_computes_once_then_reads_the_stored_figures(busy, admin_user):
    campaign, annotators = busy
    _labelled(campaign, annotators, 4)
    get = _visitor(admin_user)
    for name, url in _pages(campaign).items():
        cache.clear()  # the beat task has not run; pages share stored reports, so each alone
        first = _queries(get, url)
        assert any(_heavy(sql) for sql in first), name
        second = [sql for sql in _queries(get, url) if _heavy(sql)]
        assert second == [], f"{name} recomputed: {second}"
    quality = get(_pages(campaign)["quality api"]).json()
    assert sorted(row["labels"] for row in quality) == [2, 4, 4, 4]


def test_warm_query_counts_do_not_grow_with_the_campaign(busy, admin_user) -> None:
    campaign, annotators = busy
    get = _visitor(admin_user)
    counts: dict[int, dict[str, int]] = {}
    for labelled, pairs in ((0, 3), (3, 6)):  # 3 pairs, then 9
        _labelled(campaign, annotators, pairs, start=labelled)
        dashboards_refresh()
        counts[labelled + pairs] = {
            name: len(_queries(get, url)) for name, url in _pages(campaign).items()
        }
    assert counts[3] == counts[9]
    assert max(counts[9].values()) <= 6  # session, user, campaign, cache misses none


def test_the_pages_show_the_figures_of_the_latest_refresh(busy, admin_user):
    campaign, annotators = busy
    _labelled(campaign, annotators, 2)
    dashboards_refresh()
    get = _visitor(admin_user)
    pages = _pages(campaign)
    before = get(pages["agreement api"]).json()
    assert before["overall"]["n_pairs"] == 2 and before["retest"]["n"] == 1
    (aspect,) = before["aspects"]
    assert aspect["ratings"] == 2 * 2 * 3

    _labelled(campaign, annotators, 2, start=2)
    # Until the task runs again, the stored figures are served (and say when they are from).
    stale = get(pages["agreement api"]).json()
    assert stale["overall"]["n_pairs"] == 2 and stale["computed_at"] == before["computed_at"]
    dashboards_refresh()

    after = get(pages["agreement api"]).json()
    assert after["overall"]["n_pairs"] == 4 and after["retest"]["n"] == 2
    assert after["aspects"][0]["ratings"] == 4 * 2 * 3
    assert after["computed_at"] > before["computed_at"]
    assert "Figures as of" in get(pages["agreement page"]).content.decode()

    quality = get(pages["quality api"]).json()
    assert sorted(row["labels"] for row in quality) == [2, 4, 4, 4]
    page = get(pages["quality page"])
    assert page.context["computed_at"] and page.context["retest"]["n"] == 2
    assert f"Figures as of {page.context['computed_at'][:19]} UTC" in page.content.decode()

    effect = loop_effect_panel(campaign=campaign)
    assert effect["computed_at"]
    slices = effect["rounds"][0]["slices"]
    assert sum(entry["pairs"] for entry in slices.values()) == 4
