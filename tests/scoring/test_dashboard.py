"""The admin dashboard: panels, access, live fragments, forms, chart geometry, query counts."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation.models import Pair, Round
from reviewers.models import Escalation
from scoring.dashboard.charts import bar_chart, line_chart
from scoring.dashboard.selectors import progress_summary, stacked_bar
from scoring.models import ExportSnapshot, Job, ModelVersion
from tests.factories import CampaignFactory, PairFactory
from tests.scoring import test_export

annotators = test_export.annotators
history = test_export.history
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def private_cache(settings):
    """A cache of this test's own, so cached panels never leak between tests."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                    "LOCATION": "dashboard-tests"}
    }
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def client_for(user) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def dashboard_url(campaign, part: str = "") -> str:
    return f"/campaigns/{campaign.pk}/dashboard/" + (f"?part={part}" if part else "")


@pytest.fixture
def busy_campaign(campaign, history, expert):
    """history plus an open escalation and a second model version with held-out accuracy."""
    Escalation.objects.create(
        campaign=campaign, pair=history["unresolved"], reason=Escalation.Reason.NO_MAJORITY,
        deadline=timezone.now() - timedelta(hours=1),
    )
    two_days_ago = timezone.now() - timedelta(days=2)
    Escalation.objects.filter(campaign=campaign).update(created_at=two_days_ago)
    ModelVersion.objects.filter(campaign=campaign, number=2).update(heldout_accuracy=0.62)
    return campaign


@pytest.mark.smoke
def test_an_admin_sees_every_panel_with_charts_and_no_inline_style_or_script(
    busy_campaign, admin_user
):
    response = client_for(admin_user).get(dashboard_url(busy_campaign))
    assert response.status_code == 200
    html = response.content.decode()
    for heading in ("Progress", "Agreement", "Annotators", "Expert queue", "Reward models",
                    "Stage 2: silver pool", "Exports", "The loop's effect"):
        assert f"<h2>{heading}</h2>" in html
    # Every panel polls for fresh numbers.
    assert html.count('hx-trigger="every 5s') >= 6
    assert "<svg" in html and "<polyline" in html
    assert " style=" not in html and "onclick" not in html
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    # The expert queue: one open escalation, past its deadline, waiting two days.
    assert re.search(r'data-count="open-escalations">1<', html)
    assert "2\xa0days" in html
    # The active model version (v3, held-out 0.70) is ringed on the accuracy chart.
    assert 'class="active-ring"' in html


def test_progress_counts_pairs_by_state_and_round(busy_campaign, history):
    summary = progress_summary(campaign=busy_campaign)
    assert summary["totals"] == {
        "pending": 5, "in_annotation": 0, "complete": 4, "escalated": 2, "discarded": 1
    }
    gold = sum(1 for pair in history.values() if pair.is_gold)
    assert summary["gold"] == gold == 1  # checks, not work: apart
    assert summary["total"] == len(history) - gold
    round_2 = next(row for row in summary["rounds"] if row["label"] == "Round 2")
    assert round_2["buckets"]["escalated"] == 2 and round_2["buckets"]["pending"] == 1
    assert summary["labels"]["total"] == 21


def test_the_campaign_list_links_every_campaign(busy_campaign, admin_user):
    response = client_for(admin_user).get("/dashboard/")
    assert response.status_code == 200
    assert f'href="/campaigns/{busy_campaign.pk}/dashboard/"' in response.content.decode()


@pytest.mark.parametrize("persona", ["annotator_a", "expert", "outsider"])
def test_nobody_but_an_admin_reaches_the_dashboard(request, persona, campaign):
    client = client_for(request.getfixturevalue(persona))
    assert client.get("/dashboard/").status_code == 404
    assert client.get(dashboard_url(campaign)).status_code == 404
    assert client.get(dashboard_url(campaign, "progress"), **HTMX).status_code == 404
    posted = client.post(f"/campaigns/{campaign.pk}/dashboard/exports", {"format": "jsonl"})
    assert posted.status_code == 404
    assert ExportSnapshot.objects.count() == 0


def test_anonymous_visitors_are_sent_to_log_in(campaign):
    response = Client().get(dashboard_url(campaign))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_panel_refreshes_as_a_fragment_with_fresh_numbers_once_its_cache_expires(
    campaign, admin_user, time_machine
):
    client = client_for(admin_user)
    PairFactory.create_batch(2, campaign=campaign, status=Pair.Status.COMPLETE)
    response = client.get(dashboard_url(campaign, "progress"), **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<div id="panel-progress"')
    assert 'data-count="complete">2<' in html
    assert response["Vary"] and "HX-Request" in response["Vary"]

    PairFactory.create_batch(3, campaign=campaign, status=Pair.Status.COMPLETE)
    cached = client.get(dashboard_url(campaign, "progress"), **HTMX).content.decode()
    assert 'data-count="complete">2<' in cached  # cached for a few seconds
    time_machine.move_to(timezone.now() + timedelta(seconds=11))
    fresh = client.get(dashboard_url(campaign, "progress"), **HTMX).content.decode()
    assert 'data-count="complete">5<' in fresh


def test_an_unknown_panel_is_not_found(campaign, admin_user):
    response = client_for(admin_user).get(dashboard_url(campaign, "secrets"), **HTMX)
    assert response.status_code == 404


def test_the_progress_panel_costs_the_same_queries_for_more_pairs(campaign, admin_user):
    from django.core.cache import cache

    client = client_for(admin_user)
    round_1 = Round.objects.create(campaign=campaign, number=1, status=Round.Status.CLOSED)
    PairFactory.create_batch(3, campaign=campaign, round=round_1)
    client.get(dashboard_url(campaign, "progress"), **HTMX)  # warm the session
    cache.clear()
    with CaptureQueriesContext(connection) as few:
        client.get(dashboard_url(campaign, "progress"), **HTMX)
    PairFactory.create_batch(40, campaign=campaign, round=round_1)
    Round.objects.create(campaign=campaign, number=2, status=Round.Status.OPEN)
    cache.clear()
    with CaptureQueriesContext(connection) as many:
        client.get(dashboard_url(campaign, "progress"), **HTMX)
    assert len(many) == len(few)
    with CaptureQueriesContext(connection) as cached:
        client.get(dashboard_url(campaign, "progress"), **HTMX)
    assert len(cached) < len(few)


# Queries per htmx refresh of each panel (session and user included), with the cache empty and
# then warm: pinned, so a change that adds a query to a panel fails here.
PANEL_QUERIES = {
    "progress": (6, 3),
    "agreement": (8, 3),
    "annotators": (5, 3),
    "experts": (6, 3),
    "models": (4, 4),
    "curation": (6, 4),
    "exports": (4, 4),
    # Loop versions, rounds; then per round its pairs (one round held at a time) and, for a
    # round with marked slices, their scores.
    "loop-effect": (7, 3),
}


@pytest.mark.parametrize("part", PANEL_QUERIES)
def test_each_panel_takes_its_pinned_queries(
    busy_campaign, admin_user, part, django_assert_num_queries
):
    from django.core.cache import cache

    from scoring.dashboard.views import PANELS

    assert set(PANEL_QUERIES) == set(PANELS)
    client = client_for(admin_user)
    client.get(dashboard_url(busy_campaign, part), **HTMX)  # warm the session
    cache.clear()
    uncached, cached = PANEL_QUERIES[part]
    with django_assert_num_queries(uncached):
        assert client.get(dashboard_url(busy_campaign, part), **HTMX).status_code == 200
    with django_assert_num_queries(cached):
        assert client.get(dashboard_url(busy_campaign, part), **HTMX).status_code == 200


def test_an_admin_starts_an_export_from_the_dashboard(campaign, admin_user, settings, tmp_path):
    settings.ARBITER = {**settings.ARBITER, "EXPORT_DIR": tmp_path}
    for number in (1, 2):
        Round.objects.create(campaign=campaign, number=number, status=Round.Status.CLOSED)
    client = client_for(admin_user)
    url = f"/campaigns/{campaign.pk}/dashboard/exports"
    response = client.post(
        url,
        {"format": "parquet", "provenance": ["gold", "unanimous"], "rounds": "2, 1",
         "min_agreement": "0.5", "ties": "separate", "include_silver": "on"},
        **HTMX,
    )
    assert response.status_code == 200
    assert json.loads(response["HX-Trigger"]) == {"exports-changed": {}}
    snapshot = ExportSnapshot.objects.get()
    assert snapshot.format == "parquet"
    assert snapshot.filters["rounds"] == [1, 2] and snapshot.filters["ties"] == "separate"
    assert snapshot.filters["provenance"] == ["gold", "unanimous"]
    assert snapshot.job.kind == Job.Kind.EXPORT

    bad = client.post(url, {"format": "parquet", "rounds": "one", "ties": "exclude"}, **HTMX)
    assert "HX-Trigger" not in bad and "whole numbers" in bad.content.decode()
    unknown_round = {"format": "parquet", "rounds": "99", "ties": "exclude", "provenance": ["gold"]}
    unknown = client.post(url, unknown_round, **HTMX)
    assert "HX-Trigger" not in unknown and "no round 99" in unknown.content.decode()
    plain = client.post(url, {"format": "jsonl", "ties": "exclude", "provenance": ["gold"]})
    assert plain.status_code == 302 and ExportSnapshot.objects.count() == 2
    nothing = client.post(url, {"format": "jsonl", "ties": "exclude"})  # every box unticked
    assert nothing.status_code == 400 and "nothing to export" in nothing.content.decode()
    assert ExportSnapshot.objects.count() == 2

    listed = client.get(dashboard_url(campaign, "exports"), **HTMX).content.decode()
    assert "v2" in listed and "v1" in listed


def test_curating_without_a_model_says_why(campaign, admin_user):
    response = client_for(admin_user).post(
        f"/campaigns/{campaign.pk}/dashboard/curations",
        {"keep_threshold": "0.5", "recycle_threshold": "0.9"},
        **HTMX,
    )
    assert response.status_code == 200
    assert "train one first" in response.content.decode()
    assert not Job.objects.filter(kind=Job.Kind.CURATE).exists()


# --- Chart geometry -------------------------------------------------------------------------


def test_the_alpha_chart_places_points_intervals_and_the_target():
    chart = line_chart(
        [("R1", 0.9, 0.8, 1.0), ("R2", 0.5, 0.4, 0.6), ("R3", None, None, None)],
        target=0.8, width=244, height=142,
    )
    # plot area: x 44 … 232, y 12 (alpha 1) … 112 (alpha 0)
    first, second, third = chart["points"]
    assert (first["x"], first["y"], first["y_low"], first["y_high"]) == (44.0, 22.0, 32.0, 12.0)
    assert (second["x"], second["y"]) == (138.0, 62.0)
    assert chart["target_y"] == 32.0
    assert (first["below_target"], second["below_target"]) == (False, True)
    assert third["y"] is None and chart["line"] == "44.0,22.0 138.0,62.0"
    assert chart["band"] == "44.0,12.0 138.0,52.0 138.0,72.0 44.0,32.0"


def test_a_negative_alpha_extends_the_axis_below_zero():
    chart = line_chart([("R1", -0.25, -0.4, -0.1)], target=0.8)
    assert chart["ticks"][0]["label"] == "-0.4"
    bars = bar_chart([("math", -0.25, None, None), ("code", 0.5, None, None)], target=0.8)
    negative, positive = bars["rows"]
    assert negative["bar_x"] + negative["bar_width"] == pytest.approx(bars["zero_x"], abs=0.2)
    assert positive["bar_x"] == bars["zero_x"]
    assert negative["below_target"] and positive["below_target"]


def test_a_stacked_bar_splits_one_row_by_share():
    segments = stacked_bar({"pending": 1, "complete": 3, "escalated": 0}, width=400)
    assert [(s["name"], s["x"], s["width"]) for s in segments] == [
        ("pending", 0.0, 100.0), ("complete", 100.0, 300.0)
    ]


def test_the_periodic_refresh_recomputes_the_slow_panels_of_active_campaigns(
    campaign, annotator_a, annotator_b
):
    from annotation.services.assignments import assignment_next
    from annotation.services.labels import LabelInput, label_submit
    from scoring.dashboard.selectors import agreement_panel, dashboards_refresh

    CampaignFactory()  # idle: no recent labels, so not refreshed
    PairFactory.create_batch(2, campaign=campaign)
    before = agreement_panel(campaign=campaign)  # cached now
    for user in (annotator_a, annotator_b):
        label_submit(
            assignment=assignment_next(campaign=campaign, annotator=user),
            data=LabelInput(preference=1),
        )
    assert agreement_panel(campaign=campaign) == before  # still the cached figures
    assert dashboards_refresh() == 1  # only the campaign with recent labels
    assert agreement_panel(campaign=campaign) != before


def test_gold_pairs_are_counted_apart_as_the_workspace_and_the_api_count_them(
    campaign, admin_user
):
    from annotation.selectors import campaign_pair_counts
    from scoring.dashboard.selectors import dashboard_campaigns

    PairFactory.create_batch(2, campaign=campaign, status=Pair.Status.COMPLETE)
    PairFactory(campaign=campaign)
    PairFactory.create_batch(
        4, campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE
    )
    summary = progress_summary(campaign=campaign)
    api = campaign_pair_counts(campaign=campaign)
    assert (summary["total"], summary["totals"]["complete"], summary["gold"]) == (3, 2, 4)
    assert (api["total"], api["complete"], api["gold"]) == (3, 2, 4)
    assert summary["complete_share"] == pytest.approx(2 / 3)
    listed = next(item for item in dashboard_campaigns() if item["id"] == campaign.pk)
    assert (listed["total"], listed["buckets"]["complete"], listed["gold"]) == (3, 2, 4)
    page = client_for(admin_user).get(dashboard_url(campaign)).content.decode()
    assert "3 pairs (and 4 gold checks), 67 % complete" in page


def test_the_loop_panel_says_why_a_round_of_imported_pairs_is_not_in_it(campaign, admin_user):
    round_1 = Round.objects.create(campaign=campaign, number=1, status=Round.Status.OPEN)
    PairFactory.create_batch(2, campaign=campaign, round=round_1)  # imported into the round
    page = client_for(admin_user).get(dashboard_url(campaign, "loop-effect"), **HTMX)
    text = page.content.decode()
    assert "No round has drawn pairs from the pool yet" in text
    assert "No round has been opened yet" not in text
