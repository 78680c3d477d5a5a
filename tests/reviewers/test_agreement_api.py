"""Agreement from the database equals reviewers.agreement.maths on the same labels built by hand."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from annotation.models import Assignment, Round
from annotation.roles import Role
from reviewers.agreement.maths import (
    alpha_components,
    alpha_confidence_interval,
    annotator_agreements,
    krippendorff_alpha,
    value_counts_from_reliability_data,
)
from reviewers.agreement.selectors import (
    BOOTSTRAP_REPLICATES,
    BOOTSTRAP_SEED,
    campaign_agreement,
    pattern_histogram,
)
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import add_label, user_with_role

pytestmark = pytest.mark.django_db

FIVE_POINT = (-2, -1, 0, 1, 2)
NAN = np.nan
# Annotators (rows) x pairs (columns), NaN = did not label. Pairs 0-5 are round 1, 6-11
# round 2; even pairs are "math", odd "code".
LABELS = np.array(
    [
        [2, 1, 0, -1, -2, 2, 1, NAN, 2, -2, 0, 1],
        [2, 1, 1, -1, -2, 1, NAN, 0, -2, -2, 0, NAN],
        [1, NAN, 0, -2, -1, 2, 1, 0, 2, NAN, 1, -1],
        [NAN, 1, -1, NAN, NAN, NAN, -1, 1, NAN, 2, NAN, 1],
    ]
)


def _build(campaign, labels=LABELS, values=FIVE_POINT):
    first = Round.objects.create(campaign=campaign, number=1, status=Round.Status.CLOSED)
    second = Round.objects.create(campaign=campaign, number=2)
    annotators = [user_with_role(f"annotator{i}") for i in range(labels.shape[0])]
    pairs = []
    for column in range(labels.shape[1]):
        pair = PairFactory(
            campaign=campaign,
            round=first if column < 6 else second,
            task_category="math" if column % 2 == 0 else "code",
        )
        pairs.append(pair)
        for row, annotator in enumerate(annotators):
            if not np.isnan(labels[row, column]):
                add_label(pair, annotator, int(labels[row, column]))
    # Labels that must not count: a re-test and a gold check that disagree with everything.
    outsider = user_with_role("retester")
    add_label(pairs[0], outsider, -2, kind=Assignment.Kind.RETEST)
    gold = PairFactory(
        campaign=campaign, is_gold=True, gold_preference=2, round=first, task_category="math"
    )
    for annotator in annotators[:3]:
        add_label(gold, annotator, -2, kind=Assignment.Kind.GOLD)
    return first, second, annotators


def _expected(labels, values, level):
    counts, _ = value_counts_from_reliability_data(labels, values)
    low, high = alpha_confidence_interval(
        counts, values, level, n_boot=BOOTSTRAP_REPLICATES, seed=BOOTSTRAP_SEED
    )
    return krippendorff_alpha(labels, level, values), low, high


@pytest.mark.smoke
def test_the_endpoint_matches_the_pure_maths_on_the_same_labels(admin_user):
    campaign = CampaignFactory(agreement_target=0.6)
    first, second, annotators = _build(campaign)
    response = api_client_for(admin_user).get(reverse("api-campaign-agreement", args=[campaign.pk]))
    assert response.status_code == 200
    body = response.json()
    assert body["level"] == "ordinal"
    assert body["target"] == 0.6

    alpha, low, high = _expected(LABELS, FIVE_POINT, "ordinal")
    overall = body["overall"]
    assert overall["alpha"] == pytest.approx(alpha, abs=1e-12)
    assert (overall["ci_low"], overall["ci_high"]) == pytest.approx((low, high), abs=1e-12)
    assert overall["n_pairs"] == 12
    assert overall["undefined_reason"] is None

    rounds = {entry["number"]: entry for entry in body["rounds"]}
    for number, columns in ((1, slice(0, 6)), (2, slice(6, 12))):
        alpha, low, high = _expected(LABELS[:, columns], FIVE_POINT, "ordinal")
        assert rounds[number]["alpha"] == pytest.approx(alpha, abs=1e-12)
        assert rounds[number]["ci_low"] == pytest.approx(low, abs=1e-12)
        assert rounds[number]["below_target"] == (alpha < 0.6)
    assert rounds[1]["round_id"] == first.pk and rounds[2]["status"] == "open"
    assert [entry["number"] for entry in body["rounds"]] == [1, 2]

    categories = {entry["category"]: entry for entry in body["categories"]}
    for category, columns in (("math", slice(0, 12, 2)), ("code", slice(1, 12, 2))):
        alpha = krippendorff_alpha(LABELS[:, columns], "ordinal", FIVE_POINT)
        assert categories[category]["alpha"] == pytest.approx(alpha, abs=1e-12)

    counts, _ = value_counts_from_reliability_data(LABELS, FIVE_POINT)
    expected_agreements = annotator_agreements(LABELS, "ordinal", FIVE_POINT)
    by_name = {entry["username"]: entry for entry in body["annotators"]}
    for row, annotator in enumerate(annotators):
        entry = by_name[annotator.username]
        assert entry["annotator_id"] == annotator.pk
        assert entry["alpha"] == pytest.approx(expected_agreements[row], abs=1e-12)
        assert entry["n_pairs"] == int((~np.isnan(LABELS[row])).sum())
    # With the campaign as reference, the label-weighted mean of annotators is alpha itself.
    weights = np.array([by_name[a.username]["n_pairs"] for a in annotators])
    agreements = np.array([by_name[a.username]["alpha"] for a in annotators])
    assert (weights @ agreements) / weights.sum() == pytest.approx(overall["alpha"], abs=1e-12)
    assert alpha_components(counts, None, FIVE_POINT, "ordinal").pairable_units == 12


def test_a_round_below_the_target_says_so(admin_user, client):
    campaign = CampaignFactory(agreement_target=0.85)
    _build(campaign)
    body = (
        api_client_for(admin_user).get(reverse("api-campaign-agreement", args=[campaign.pk])).json()
    )
    assert all(entry["below_target"] for entry in body["rounds"])
    client.force_login(admin_user)
    page = client.get(reverse("campaign-agreement", args=[campaign.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Round 1 is below the agreement target" in text
    assert "Round 2 is below the agreement target" in text


def test_the_histogram_is_one_grouped_query_and_filters_make_subsets(
    django_assert_num_queries,
):
    campaign = CampaignFactory()
    first, second, _ = _build(campaign)
    with django_assert_num_queries(1):
        whole = pattern_histogram(campaign=campaign)
    assert whole.pairs == 12
    assert sorted(whole.values) == list(FIVE_POINT)
    counts, _ = value_counts_from_reliability_data(LABELS, FIVE_POINT)
    expected_rows = sorted(map(tuple, counts.tolist()))
    got_rows = sorted(
        tuple(row)
        for row, n in zip(whole.patterns.tolist(), whole.multiplicities, strict=True)
        for _ in range(n)
    )
    assert got_rows == expected_rows
    subset = pattern_histogram(campaign=campaign, round_id=second.pk, category="code")
    assert subset.pairs == 3  # pairs 7, 9 and 11


def test_a_binary_campaign_uses_the_nominal_level(admin_user):
    campaign = CampaignFactory(scale="binary")
    labels = np.array([[1, 1, -1, 1, -1], [1, -1, -1, 1, NAN], [1, 1, -1, NAN, -1]])
    _build(campaign, labels=labels, values=(-1, 1))
    report = campaign_agreement(campaign=campaign, use_cache=False)
    assert report["level"] == "nominal"
    assert report["overall"]["alpha"] == pytest.approx(
        krippendorff_alpha(labels, "nominal", (-1, 1)), abs=1e-12
    )


def test_undefined_alpha_is_null_with_a_reason(admin_user):
    campaign = CampaignFactory()
    body = (
        api_client_for(admin_user).get(reverse("api-campaign-agreement", args=[campaign.pk])).json()
    )
    assert body["overall"] == {
        "alpha": None,
        "ci_low": None,
        "ci_high": None,
        "n_pairs": 0,
        "undefined_reason": "no_pairable_units",
    }
    same = CampaignFactory()
    _build(same, labels=np.array([[1, 1, 1], [1, 1, NAN]]))
    report = campaign_agreement(campaign=same, use_cache=False)
    assert report["overall"]["alpha"] is None
    assert report["overall"]["undefined_reason"] == "no_variation"


def test_the_report_is_cached_until_recomputed(admin_user):
    campaign = CampaignFactory()
    _build(campaign)
    first = campaign_agreement(campaign=campaign)
    pair = PairFactory(campaign=campaign)
    for name in ("late1", "late2"):
        add_label(pair, user_with_role(name), 2)
    assert campaign_agreement(campaign=campaign) == first
    fresh = campaign_agreement(campaign=campaign, use_cache=False)
    assert fresh["overall"]["n_pairs"] == 13


def test_the_disputes_rank_the_latest_round_by_its_share_of_disagreement():
    campaign = CampaignFactory()
    _, second, _ = _build(campaign)
    disputes = campaign_agreement(campaign=campaign, use_cache=False)["disputes"]
    assert disputes["round_id"] == second.pk
    shares = [entry["share"] for entry in disputes["pairs"]]
    assert shares == sorted(shares, reverse=True) and all(s > 0 for s in shares)
    # Pair 8 (2, -2, 2) is the round's worst; pair 10 (0, 0, 1) costs little.
    counts = disputes["pairs"][0]["counts"]
    assert counts == {"-2": 1, "-1": 0, "0": 0, "1": 0, "2": 2}


@pytest.mark.parametrize("role", [Role.ANNOTATOR, Role.EXPERT])
def test_only_admins_see_agreement(role):
    campaign = CampaignFactory()
    user = user_with_role(f"someone-{role}", role)
    client = api_client_for(user)
    assert client.get(reverse("api-campaign-agreement", args=[campaign.pk])).status_code == 404
    client.force_login(user)
    assert client.get(reverse("campaign-agreement", args=[campaign.pk])).status_code == 404
