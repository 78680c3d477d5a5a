"""Review 16: quality and agreement figures of ranking campaigns and of "both bad" on a binary
scale, and the pay report's quarantine time within one campaign."""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from datetime import timedelta

import krippendorff
import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation.models import (
    Assignment,
    CampaignMember,
    ItemKind,
    Label,
    MemberTransition,
    Outcome,
    Scale,
)
from annotation.rankings import first_two_preference, ranking_to_shown
from annotation.roles import Role
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_submit
from annotation.services.members import member_add, member_quarantine, member_remove
from reviewers.agreement.rankings import ranking_alpha, retest_contradicts
from reviewers.agreement.selectors import agreement_level, campaign_agreement, scale_values
from reviewers.annotator_report import _quarantine_seconds, quarantined_seconds_in
from reviewers.models import Escalation
from reviewers.selectors.quality import annotator_quality, retest_agreement
from tests.factories import CampaignFactory, PairFactory, UserFactory, ranking_item
from tests.reviewers.factories import add_label, user_with_role

pytestmark = pytest.mark.django_db

CONSENSUS = [[0], [1], [2], [3]]


def _rank(user, campaign, canonical, *, rng: random.Random | None = None) -> Assignment:
    """The user's next item, ranked ``canonical`` (in imported indices) through the engine."""
    assignment = assignment_next(campaign=campaign, annotator=user, rng=rng or random.Random(7))
    assert assignment is not None and assignment.display_order is not None
    shown = ranking_to_shown(canonical, display_order=assignment.display_order)
    label_submit(assignment=assignment, data=LabelInput(preference=None, ranking=shown))
    return assignment


def _rank_shown(user, campaign, shown_ranking, *, rng: random.Random) -> Assignment:
    """The user's next item, ranked by screen position (0 = shown first)."""
    assignment = assignment_next(campaign=campaign, annotator=user, rng=rng)
    assert assignment is not None
    label_submit(assignment=assignment, data=LabelInput(preference=None, ranking=shown_ranking))
    return assignment


# --- 1. position bias on a ranking campaign -------------------------------------------------


def test_a_ranking_annotator_who_always_ranks_the_first_shown_best_is_flagged():
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, annotators_per_pair=1)
    biased = UserFactory(username="firstpicker")
    rng = random.Random(3)
    for n in range(60):
        ranking_item(campaign, n=n)
    for _ in range(60):
        _rank_shown(biased, campaign, [[0], [1], [2], [3]], rng=rng)
    (row,) = annotator_quality(campaign=campaign)
    # Every label ranks the response shown first best; with 4 responses chance is 1/4.
    assert row["decisive_labels"] == 60 and row["first_shown_wins"] == 60
    assert row["position_bias"] == 1.0
    assert row["position_bias_chance"] == pytest.approx(0.25)
    assert row["position_bias_z"] == pytest.approx((60 - 15) / (60 * 0.25 * 0.75) ** 0.5)
    assert row["flag_reasons"] == ["position_bias"]


def test_a_ranking_annotator_who_ranks_by_content_is_not_flagged_and_ties_for_best_say_nothing():
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, annotators_per_pair=1)
    fair = UserFactory(username="fair")
    rng = random.Random(11)
    sizes = [4] * 40 + [2] * 20
    for n, size in enumerate(sizes):
        ranking_item(campaign, n=n, size=size)
    first_wins = chance = 0.0
    for _ in range(len(sizes) + 5):
        assignment = assignment_next(campaign=campaign, annotator=fair, rng=rng)
        if assignment is None:
            break
        size = len(assignment.display_order)
        # Always the imported order, best first, whatever the screen shows; on every tenth
        # item responses 0 and 1 tie for best: not decisive.
        canonical = [[k] for k in range(size)]
        if assignment.pair_id % 10 == 0 and size > 2:
            canonical = [[0, 1], *[[k] for k in range(2, size)]]
        else:
            first_wins += assignment.display_order[0] == 0
            chance += 1 / size
        shown = ranking_to_shown(canonical, display_order=assignment.display_order)
        label_submit(assignment=assignment, data=LabelInput(preference=None, ranking=shown))
    (row,) = annotator_quality(campaign=campaign)
    decisive = sum(1 for pair_id in _labelled_pairs(campaign) if not _tied_for_best(pair_id))
    assert row["decisive_labels"] == decisive < len(sizes)
    assert row["first_shown_wins"] == first_wins
    assert row["position_bias_chance"] == pytest.approx(chance / decisive)
    assert row["position_bias"] == pytest.approx(first_wins / decisive)
    assert "position_bias" not in row["flag_reasons"]


def _labelled_pairs(campaign) -> list[int]:
    return list(Label.objects.filter(campaign=campaign).values_list("pair_id", flat=True))


def _tied_for_best(pair_id: int) -> bool:
    ranking = Label.objects.get(pair_id=pair_id).ranking
    assert ranking is not None
    return len(ranking[0]) > 1


def test_position_bias_of_ab_pairs_still_reads_the_side_shown_first():
    campaign = CampaignFactory()
    ann = user_with_role("ann")
    for shown_first, preference in [("a", 1)] * 6 + [("b", -1)] * 6 + [("a", -1), ("a", 0)]:
        add_label(PairFactory(campaign=campaign), ann, preference, shown_first=shown_first)
    (row,) = annotator_quality(campaign=campaign)
    assert (row["decisive_labels"], row["first_shown_wins"]) == (13, 12)
    assert row["position_bias_chance"] == 0.5
    assert row["position_bias_z"] == pytest.approx((12 - 6.5) / (13**0.5 / 2))


def test_the_quality_page_of_a_ranking_campaign_states_its_chance(admin_user):
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, annotators_per_pair=1)
    ranking_item(campaign)
    _rank(UserFactory(), campaign, CONSENSUS)
    client = Client()
    client.force_login(admin_user)
    page = client.get(reverse("annotator-quality", args=[campaign.pk])).content.decode()
    assert "chance is 1/K" in page and "0.50 is unbiased" not in page
    ab = CampaignFactory()
    page = client.get(reverse("annotator-quality", args=[ab.pk])).content.decode()
    assert "0.50 is unbiased" in page


# --- 2. re-test agreement on a ranking campaign ---------------------------------------------


def test_a_contradicting_ranking_retest_is_not_counted_as_agreeing():
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, annotators_per_pair=3, retest_share=1.0)
    item = ranking_item(campaign)
    for user in UserFactory.create_batch(3):
        _rank(user, campaign, CONSENSUS)
    _rank(UserFactory(), campaign, [[3], [2], [0], [1]])
    reasons = list(Escalation.objects.filter(pair=item).values_list("reason", flat=True))
    assert reasons == [Escalation.Reason.RETEST_CONTRADICTION]
    assert retest_agreement(campaign=campaign) == {"n": 1, "agreeing": 0, "rate": 0.0}


def test_a_ranking_retest_sharing_the_best_response_agrees_whatever_responses_0_and_1_say():
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, annotators_per_pair=3, retest_share=1.0)
    item = ranking_item(campaign)
    for user in UserFactory.create_batch(3):
        _rank(user, campaign, CONSENSUS)
    # Response 1 above response 0 (the old 0-against-1 check said "disagrees"), yet 0 and 1
    # tie for best: the best groups share response 0, so no escalation and it agrees.
    _rank(UserFactory(), campaign, [[0, 1], [3], [2]])
    assert not Escalation.objects.filter(pair=item).exists()
    assert retest_agreement(campaign=campaign) == {"n": 1, "agreeing": 1, "rate": 1.0}


def test_the_retest_predicate_is_the_escalations():
    assert retest_contradicts([[3], [0, 1, 2]], [[0], [1, 2, 3]])
    assert not retest_contradicts([[1, 0], [2]], [[0], [1], [2]])
    assert not retest_contradicts(None, [[0], [1]])
    assert not retest_contradicts([[0], [1]], None)


# --- 3. preference 0 on a binary scale, rankings whatever the scale ---------------------------


def test_both_bad_labels_count_in_binary_alpha_as_a_third_nominal_value():
    campaign = CampaignFactory(scale=Scale.BINARY)
    assert Outcome.BOTH_BAD in campaign.allowed_outcomes
    assert scale_values(campaign) == (-1, 0, 1)
    assert agreement_level(campaign) == "nominal"
    users = [user_with_role(f"bb{i}") for i in range(3)]
    rows = [(1, 1, 1)] * 4 + [(-1, -1, -1)] * 4 + [(1, 1, -1)] * 2
    rows += [("bb", "bb", "bb")] * 4 + [(1, "bb", "bb")] * 4
    for values in rows:
        pair = PairFactory(campaign=campaign)
        for user, value in zip(users, values, strict=True):
            label = add_label(pair, user, 0 if value == "bb" else value)
            if value == "bb":
                Label.objects.filter(pk=label.pk).update(outcome=Outcome.BOTH_BAD)
    report = campaign_agreement(campaign=campaign, use_cache=False)
    assert report["overall"]["n_pairs"] == len(rows)
    assert report["level"] == "nominal" and "neither" in report["level_note"]
    # "Both bad" is a value of its own, as far from A as B is (nominal).
    data = [[{"bb": 0}.get(v, v) for v in row] for row in rows]
    expected = krippendorff.alpha(
        reliability_data=list(zip(*data, strict=True)), level_of_measurement="nominal"
    )
    assert report["overall"]["alpha"] == pytest.approx(expected)
    assert sum(report["annotators"][i]["n_pairs"] for i in range(3)) == 3 * len(rows)


def test_binary_values_without_both_bad_labels_give_the_same_alpha_as_before():
    campaign = CampaignFactory(scale=Scale.BINARY)
    users = [user_with_role(f"ab{i}") for i in range(3)]
    rows = [(1, 1, 1)] * 5 + [(-1, -1, 1)] * 3 + [(1, -1, -1)] * 2
    for values in rows:
        pair = PairFactory(campaign=campaign)
        for user, value in zip(users, values, strict=True):
            add_label(pair, user, value)
    expected = krippendorff.alpha(
        reliability_data=list(zip(*rows, strict=True)), level_of_measurement="nominal"
    )
    report = campaign_agreement(campaign=campaign, use_cache=False)
    assert report["overall"]["alpha"] == pytest.approx(expected)


def test_ranking_alpha_counts_every_ranking_whatever_the_scale():
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, scale=Scale.BINARY)
    campaign.full_clean()
    users = [user_with_role(f"rk{i}") for i in range(3)]
    items = [
        [[[0, 1], [2], [3]], [[0, 1], [2], [3]], [[0], [1], [2], [3]]],
        [[[3], [2], [0, 1]], [[3], [2], [1], [0]], [[3], [2], [0, 1]]],
        [[[2], [0], [1], [3]], [[2], [1], [0], [3]], [[0], [2], [1], [3]]],
    ]
    for n, rankings in enumerate(items):
        item = ranking_item(campaign, n=n)
        for user, ranking in zip(users, rankings, strict=True):
            label = add_label(item, user, first_two_preference(ranking))
            Label.objects.filter(pk=label.pk).update(ranking=ranking)
    report = campaign_agreement(campaign=campaign, use_cache=False)
    assert report["rankings"]["items"] == 3
    assert report["rankings"]["alpha"] == pytest.approx(ranking_alpha(items))
    # The A/B figures (response 0 against 1) keep the tied labels too: 3 pairable items.
    assert report["overall"]["n_pairs"] == 3


# --- 4. the pay report's quarantine time in one campaign ------------------------------------


def test_never_quarantined_in_the_chosen_campaign_reads_empty():
    x, y = CampaignFactory(), CampaignFactory()
    bob = user_with_role("bob")
    member_add(campaign=x, user=bob)
    member_y = member_add(campaign=y, user=bob)
    with time_machine.travel(timezone.now() - timedelta(hours=2), tick=False):
        member_quarantine(member=member_y, reason="test")
    add_label(PairFactory(campaign=x), bob, 1, seconds=5)
    member_remove(campaign=x, user_id=bob.pk)  # a transition in x, none of them a quarantine
    assert MemberTransition.objects.filter(campaign=x, user=bob).exists()
    client = Client()
    client.force_login(user_with_role("sadm", Role.ADMIN))
    url = reverse("annotator-report")
    rows = _csv(client.get(url, {"format": "csv", "campaign": x.pk}))
    assert rows["bob"]["quarantine_seconds"] == ""
    # In y, and over all campaigns, the two hours are there.
    for params in ({"format": "csv", "campaign": y.pk}, {"format": "csv"}):
        seconds = float(_csv(client.get(url, params))["bob"]["quarantine_seconds"])
        assert seconds == pytest.approx(7200, abs=5)


def _csv(response) -> dict[str, dict[str, str]]:
    return {r["username"]: r for r in csv.DictReader(io.StringIO(response.content.decode()))}


def _all_transitions_reference(*, start, end, campaign_id):
    """The report's quarantine seconds read from every transition of the quarantined users
    (what _quarantine_seconds did before it read only the period's states)."""
    quarantined = MemberTransition.objects.filter(
        to_state=CampaignMember.State.QUARANTINED, at__lt=end
    )
    transitions = MemberTransition.objects.order_by("user_id", "campaign_id", "at", "id")
    if campaign_id is not None:
        quarantined = quarantined.filter(campaign_id=campaign_id)
        transitions = transitions.filter(campaign_id=campaign_id)
    transitions = transitions.filter(user_id__in=quarantined.values("user_id"))
    per_member = defaultdict(list)
    for user_id, campaign, at, state in transitions.values_list(
        "user_id", "campaign_id", "at", "to_state"
    ):
        per_member[(user_id, campaign)].append((at, state))
    now = timezone.now()
    seconds: dict[int, float] = defaultdict(float)
    for (user_id, _campaign), states in per_member.items():
        seconds[user_id] += quarantined_seconds_in(states, start=start, end=end, now=now)
    return dict(seconds)


def test_reading_only_the_periods_states_gives_the_same_seconds():
    campaigns = [CampaignFactory(), CampaignFactory()]
    users = [user_with_role(f"q{i}") for i in range(6)]
    origin = timezone.now() - timedelta(days=30)
    rng = random.Random(16)
    states = ["active", "quarantined", "active", "quarantined", "removed", "active"]
    for user in users:
        for campaign in campaigns:
            at = origin
            previous = "active"
            for _ in range(rng.randint(0, 7)):
                at += timedelta(hours=rng.randint(0, 90))  # 0: two changes at the same time
                state = rng.choice(states)
                row = MemberTransition.objects.create(
                    campaign=campaign, user=user, from_state=previous, to_state=state, reason="t"
                )
                MemberTransition.objects.filter(pk=row.pk).update(at=at)
                previous = state
    day = timedelta(days=1)
    periods = [(origin - 2 * day, origin - day), (origin, origin + day)]
    periods += [(origin + k * 3 * day, origin + (k + 2) * 3 * day) for k in range(8)]
    periods += [(origin + 5 * day, timezone.now() + day), (origin - day, timezone.now())]
    checked = 0
    with time_machine.travel(timezone.now(), tick=False):  # one "now" for both readings
        for start, end in periods:
            for campaign_id in (None, campaigns[0].pk, campaigns[1].pk):
                seconds, names = _quarantine_seconds(start=start, end=end, campaign_id=campaign_id)
                reference = _all_transitions_reference(
                    start=start, end=end, campaign_id=campaign_id
                )
                assert seconds.keys() == reference.keys() == names.keys()
                assert seconds == pytest.approx(reference, abs=1e-6)
                checked += sum(1 for value in reference.values() if value > 0)
    assert checked > 10  # the periods did cut through quarantines
