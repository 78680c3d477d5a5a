"""Gold pairs and per-annotator quality: gold accuracy, consensus agreement, position bias."""

from __future__ import annotations

import random

import pytest
from django.urls import reverse

from annotation.models import Assignment, Pair
from annotation.services.assignments import assignment_next
from reviewers.errors import GoldNotAllowed
from reviewers.models import Escalation
from reviewers.selectors.quality import annotator_quality
from reviewers.services.adjudications import adjudication_resolve
from reviewers.services.escalations import escalation_claim
from reviewers.services.gold import pair_mark_gold, pair_promote_gold
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import add_label, judged_pair, user_with_role

pytestmark = pytest.mark.django_db


def test_a_marked_pair_leaves_the_queue_and_is_served_as_a_silent_gold_check():
    campaign = CampaignFactory(gold_share=0.0)
    pair = PairFactory(campaign=campaign)
    pair_mark_gold(pair=pair, preference=-1)
    assert (pair.is_gold, pair.gold_preference) == (True, -1)
    assert (pair.status, pair.provenance, pair.consensus_preference) == (
        Pair.Status.COMPLETE,
        Pair.Provenance.GOLD,
        -1,
    )
    annotator = user_with_role("ann")
    assert assignment_next(campaign=campaign, annotator=annotator) is None
    campaign.gold_share = 1.0
    campaign.save()
    check = assignment_next(campaign=campaign, annotator=annotator, rng=random.Random(3))
    assert (check.pair_id, check.kind) == (pair.pk, Assignment.Kind.GOLD)


def test_an_adjudicated_pair_can_be_promoted_to_gold(campaign, expert):
    originals = [user_with_role(f"o{i}") for i in range(3)]
    pair = judged_pair(campaign, [2, 0, -1], users=originals)
    escalation = Escalation.objects.get(pair=pair)
    with pytest.raises(GoldNotAllowed, match="Only pairs an expert decided"):
        pair_promote_gold(pair=pair)  # not decided yet
    escalation_claim(escalation=escalation, expert=expert)
    adjudication_resolve(
        escalation=escalation, expert=expert, decision="preference", preference=1, note="A."
    )
    pair_promote_gold(pair=pair)
    assert (pair.is_gold, pair.gold_preference, pair.provenance) == (
        True,
        1,
        Pair.Provenance.ADJUDICATED,
    )
    # Gold checks never go back to the people who labelled the pair.
    campaign.gold_share = 1.0
    campaign.save()
    for user in originals:
        assert assignment_next(campaign=campaign, annotator=user) is None


def test_marking_gold_refuses_escalated_leased_and_overruled_pairs(campaign, expert):
    escalated = judged_pair(campaign, [2, 0, -1])
    with pytest.raises(GoldNotAllowed, match="waiting for an expert"):
        pair_mark_gold(pair=escalated, preference=1)
    leased = PairFactory(campaign=campaign)
    assignment_next(campaign=campaign, annotator=user_with_role("busy"))
    with pytest.raises(GoldNotAllowed, match="Annotators are judging this pair"):
        pair_mark_gold(pair=leased, preference=1)
    with pytest.raises(GoldNotAllowed, match=r"preference must be one of \[1, -1\]"):
        pair_mark_gold(pair=PairFactory(campaign=CampaignFactory(scale="binary")), preference=2)
    escalation = Escalation.objects.get(pair=escalated)
    escalation_claim(escalation=escalation, expert=expert)
    adjudication_resolve(
        escalation=escalation, expert=expert, decision="preference", preference=1, note="A."
    )
    with pytest.raises(GoldNotAllowed, match="An expert decided this pair differently"):
        pair_mark_gold(pair=escalated, preference=-2)


def test_admins_mark_gold_through_the_api_and_others_cannot(admin_user):
    campaign = CampaignFactory()
    pair = PairFactory(campaign=campaign)
    url = reverse("api-pair-gold", args=[pair.pk])
    expert = user_with_role("expert2", role="expert")
    assert api_client_for(expert).post(url, {"preference": 2}, format="json").status_code == 404
    response = api_client_for(admin_user).post(url, {"preference": 2}, format="json")
    assert response.status_code == 200
    assert response.json()["is_gold"] is True and response.json()["gold_preference"] == 2
    refused = api_client_for(admin_user).post(
        reverse("api-pair-gold", args=[PairFactory(campaign=campaign).pk]), {}, format="json"
    )
    assert refused.status_code == 400 and refused.json()["code"] == "gold_not_allowed"


def _gold_pairs(campaign, answers):
    return [PairFactory(campaign=campaign, is_gold=True, gold_preference=a) for a in answers]


def test_quality_computes_gold_accuracy_position_bias_and_median_time():
    campaign = CampaignFactory(quality_threshold=0.6)
    careful, sloppy, biased = (user_with_role(n) for n in ("careful", "sloppy", "biased"))
    answers = [2, 1, -1, -2, 1, -1]
    for index, (pair, answer) in enumerate(
        zip(_gold_pairs(campaign, answers), answers, strict=True)
    ):
        # Strength may differ; the direction must match. Shown first: b, a, b, a, b, a, so the
        # first-shown side wins at indices 1 (A shown, A wins) and 2 (B shown, B wins).
        add_label(
            pair,
            careful,
            1 if answer > 0 else -1,
            kind="gold",
            shown_first="a" if index % 2 else "b",
            seconds=30,
        )
    for index, (pair, answer) in enumerate(
        zip(_gold_pairs(campaign, answers), answers, strict=True)
    ):
        wrong = index >= 2  # 2 of 6 right
        add_label(
            pair,
            sloppy,
            -answer if wrong else answer,
            kind="gold",
            shown_first="b" if index % 2 else "a",
            seconds=[10, 20, 300, 40, 50, 60][index],
        )
    for index in range(20):
        pair = PairFactory(campaign=campaign, consensus_preference=1, provenance="majority")
        # Whatever side is shown first wins: the tell-tale of position bias.
        shown_first = "a" if index % 2 else "b"
        add_label(pair, biased, 1 if shown_first == "a" else -1, shown_first=shown_first)

    rows = {row["username"]: row for row in annotator_quality(campaign=campaign)}
    assert rows["careful"]["gold_accuracy"] == 1.0
    assert rows["careful"]["flagged"] is False
    assert rows["careful"]["position_bias"] == pytest.approx(2 / 6)
    assert rows["careful"]["median_seconds"] == pytest.approx(30)

    assert rows["sloppy"]["gold_checks"] == 6 and rows["sloppy"]["gold_correct"] == 2
    assert rows["sloppy"]["gold_accuracy"] == pytest.approx(1 / 3)
    assert rows["sloppy"]["flagged"] and "gold_accuracy" in rows["sloppy"]["flag_reasons"]
    assert rows["sloppy"]["median_seconds"] == pytest.approx(45)

    biased_row = rows["biased"]
    assert biased_row["position_bias"] == 1.0
    assert biased_row["position_bias_z"] == pytest.approx((20 - 10) / (20**0.5 / 2))
    assert biased_row["consensus_agreement"] == pytest.approx(10 / 20)
    assert biased_row["flag_reasons"] == ["consensus_agreement", "position_bias"]
    assert biased_row["gold_accuracy"] is None and biased_row["median_seconds"] is None
    # Flagged annotators come first.
    assert [row["flagged"] for row in annotator_quality(campaign=campaign)] == [True, True, False]


def test_too_few_gold_checks_do_not_flag_anyone():
    campaign = CampaignFactory(quality_threshold=0.6)
    newcomer = user_with_role("newcomer")
    for pair in _gold_pairs(campaign, [1, 1]):
        add_label(pair, newcomer, -1, kind="gold")
    (row,) = annotator_quality(campaign=campaign)
    assert row["gold_accuracy"] == 0.0 and row["flagged"] is False


def test_the_quality_page_and_api_are_for_admins(admin_user, client):
    campaign = CampaignFactory()
    add_label(PairFactory(campaign=campaign), user_with_role("ann"), 1, seconds=12)
    body = (
        api_client_for(admin_user).get(reverse("api-annotator-quality", args=[campaign.pk])).json()
    )
    assert body[0]["username"] == "ann" and body[0]["median_seconds"] == 12
    client.force_login(admin_user)
    page = client.get(reverse("annotator-quality", args=[campaign.pk]))
    assert page.status_code == 200 and b"ann" in page.content
    client.force_login(user_with_role("ann2"))
    assert client.get(reverse("annotator-quality", args=[campaign.pk])).status_code == 404
