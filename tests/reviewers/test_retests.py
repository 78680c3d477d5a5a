"""Double-blind re-tests: scheduling, who gets them, what they look like, what they report."""

from __future__ import annotations

import random

import pytest
from django.urls import reverse

from annotation.models import Assignment, Label, Pair
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_change, label_submit
from reviewers.models import Escalation
from reviewers.selectors.quality import retest_agreement
from reviewers.services.consensus import pair_consensus_update
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import judge, judged_pair, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def retest_campaign(db):
    return CampaignFactory(retest_share=1.0)  # every undisputed pair gets a re-test


def test_an_undisputed_pair_goes_back_for_one_more_annotator(retest_campaign):
    pair = judged_pair(retest_campaign, [1, 1, 2])
    assert pair.status == Pair.Status.IN_ANNOTATION
    assert pair.slot_cap == 4
    assert pair.provenance == Pair.Provenance.UNANIMOUS  # the consensus is already recorded


def test_a_disputed_pair_is_not_retested(retest_campaign):
    pair = judged_pair(retest_campaign, [1, 0, -1])
    assert pair.slot_cap == 3
    assert pair.status == Pair.Status.ESCALATED


def test_the_retest_never_reaches_one_of_the_original_annotators(retest_campaign):
    originals = UserFactory.create_batch(3)
    pair = judged_pair(retest_campaign, [1, 1, 1], users=originals)
    for user in originals:
        assert assignment_next(campaign=retest_campaign, annotator=user) is None
    newcomer = UserFactory()
    retest = assignment_next(campaign=retest_campaign, annotator=newcomer)
    assert retest.pair_id == pair.pk
    assert retest.kind == Assignment.Kind.RETEST
    # And only one: the extra slot is taken.
    assert assignment_next(campaign=retest_campaign, annotator=UserFactory()) is None


def test_running_the_consensus_twice_schedules_one_retest(retest_campaign):
    pair = judged_pair(retest_campaign, [2, 2, 2])
    Pair.objects.filter(pk=pair.pk).update(status=Pair.Status.COMPLETE)
    pair.refresh_from_db()
    pair_consensus_update(pair=pair, rng=random.Random(1))
    pair.refresh_from_db()
    assert pair.slot_cap == 4


def test_the_retest_looks_like_any_other_assignment_to_the_annotator(retest_campaign):
    judged_pair(retest_campaign, [1, 1, 1])
    fresh = PairFactory(campaign=retest_campaign, priority=-1)  # served after the re-test
    newcomer = user_with_role("newcomer")
    client = api_client_for(newcomer)
    url = reverse("api-next", args=[retest_campaign.pk])
    retest_body = client.post(url).json()
    label_url = reverse("api-label", args=[retest_body["assignment"]["id"]])
    assert client.post(label_url, {"preference": 1}, format="json").status_code == 201
    regular_body = client.post(url).json()
    assert Assignment.objects.get(pk=regular_body["assignment"]["id"]).pair_id == fresh.pk

    def shape(body):
        return {
            key: sorted(value) if isinstance(value, dict) else None for key, value in body.items()
        }

    assert shape(retest_body) == shape(regular_body)
    assert "retest" not in str(retest_body).lower()


def test_a_contradicting_retest_escalates_and_an_agreeing_one_does_not(retest_campaign):
    agreeing = judged_pair(retest_campaign, [2, 1, 1])
    label = judge(retest_campaign, UserFactory(), 1)
    assert label.is_retest and label.pair_id == agreeing.pk
    agreeing.refresh_from_db()
    assert agreeing.status == Pair.Status.COMPLETE
    assert not Escalation.objects.filter(pair=agreeing).exists()

    contradicted = judged_pair(retest_campaign, [2, 1, 1])
    judge(retest_campaign, UserFactory(), -1)
    escalation = Escalation.objects.get(pair=contradicted)
    assert escalation.reason == Escalation.Reason.RETEST_CONTRADICTION
    contradicted.refresh_from_db()
    assert contradicted.status == Pair.Status.ESCALATED
    # The re-test stays out of the consensus.
    assert contradicted.consensus_preference == 1
    assert contradicted.provenance == Pair.Provenance.UNANIMOUS


def test_a_retest_arriving_after_an_escalation_leaves_the_pair_escalated(retest_campaign):
    from reviewers.services.escalations import escalation_model_contradiction

    pair = judged_pair(retest_campaign, [1, 1, 1])
    retest = assignment_next(campaign=retest_campaign, annotator=UserFactory())
    escalation_model_contradiction(pair=pair, p_agree=0.01, threshold=0.9)
    label_submit(assignment=retest, data=LabelInput(preference=1 if not retest.swapped else -1))
    pair.refresh_from_db()
    assert pair.status == Pair.Status.ESCALATED


def test_the_retest_agreement_rate_is_reported(retest_campaign):
    judged_pair(retest_campaign, [2, 2, 2])
    judge(retest_campaign, UserFactory(), 1)  # agrees in direction
    judged_pair(retest_campaign, [1, 1, 1])
    judge(retest_campaign, UserFactory(), -2)  # contradicts
    judged_pair(retest_campaign, [-1, -1, -2])
    judge(retest_campaign, UserFactory(), -1)  # agrees
    assert Label.objects.filter(is_retest=True).count() == 3
    assert retest_agreement(campaign=retest_campaign) == {"n": 3, "agreeing": 2, "rate": 2 / 3}


def _change(label: Label, preference: int, flags: tuple[str, ...] = ()) -> None:
    """The annotator changes their label (canonical preference) within the grace period."""
    assignment = label.assignment
    shown = -preference if assignment.swapped else preference
    label_change(assignment=assignment, data=LabelInput(preference=shown, flags=flags))


def test_a_retests_flag_stays_escalated_when_a_regular_label_changes(retest_campaign):
    retest_campaign.label_change_minutes = 30
    retest_campaign.save()
    pair = judged_pair(retest_campaign, [1, 1, 1])
    judge(retest_campaign, UserFactory(), 1, flags=("unsafe",))
    flagged = Escalation.objects.get(pair=pair)
    assert flagged.reason == Escalation.Reason.FLAGGED and "re-test" in flagged.detail
    # A change that keeps the consensus settles nothing the re-test raised.
    _change(Label.objects.filter(pair=pair, is_retest=False).first(), 2)
    flagged.refresh_from_db()
    pair.refresh_from_db()
    assert flagged.status == Escalation.Status.OPEN
    assert pair.status == Pair.Status.ESCALATED


def test_a_changed_label_moves_neither_a_gold_pairs_answer_nor_its_status(db):
    from reviewers.services.gold import pair_mark_gold

    campaign = CampaignFactory(label_change_minutes=30)
    pair = judged_pair(campaign, [1, 1, 1])
    pair_mark_gold(pair=pair, preference=-2)
    _change(Label.objects.filter(pair=pair).first(), 2, flags=("unsafe",))
    pair.refresh_from_db()
    assert (pair.status, pair.consensus_preference) == (Pair.Status.COMPLETE, -2)
    assert pair.provenance == Pair.Provenance.GOLD
    assert not Escalation.objects.filter(pair=pair).exists()


def test_a_settling_change_keeps_an_escalation_that_also_holds_another_reason(db):
    from reviewers.services.escalations import escalation_open

    campaign = CampaignFactory(label_change_minutes=30)
    pair = judged_pair(campaign, [1, 1, 1], flags=("unsafe",))
    flagged = Escalation.objects.get(pair=pair)
    assert flagged.reason == Escalation.Reason.FLAGGED
    escalation_open(pair=pair, reason=Escalation.Reason.MANUAL, detail="an admin wants a look")
    flagged.refresh_from_db()
    assert "also: manual" in flagged.detail
    # The flag is taken back: the labels' dispute is settled, the admin's reason is not.
    for label in Label.objects.filter(pair=pair):
        _change(label, 1)
    flagged.refresh_from_db()
    pair.refresh_from_db()
    assert flagged.status == Escalation.Status.OPEN
    assert pair.status == Pair.Status.ESCALATED


def test_a_members_only_team_no_larger_than_a_pair_gets_no_retest_it_could_never_take():
    # Three annotator members, three labels a pair: a re-test slot would wait for a fourth
    # annotator for good, the pair in annotation and its round never done.
    from annotation.services.members import member_add

    campaign = CampaignFactory(retest_share=1.0, open_to_all=False, auto_retrain=True)
    team = UserFactory.create_batch(3)
    for user in team:
        member_add(campaign=campaign, user=user)
    pair = judged_pair(campaign, [1, 1, 2], users=team)
    assert (pair.status, pair.slot_cap) == (Pair.Status.COMPLETE, 3)
    assert not Pair.objects.filter(campaign=campaign, status=Pair.Status.IN_ANNOTATION).exists()

    # A fourth member who never had the pair can take one: the next pair gets its re-test.
    newcomer = UserFactory()
    member_add(campaign=campaign, user=newcomer)
    second = judged_pair(campaign, [1, 1, 2], users=team)
    assert (second.status, second.slot_cap) == (Pair.Status.IN_ANNOTATION, 4)
    retest = assignment_next(campaign=campaign, annotator=newcomer)
    assert retest is not None and retest.pair_id == second.pk
    assert retest.kind == Assignment.Kind.RETEST
