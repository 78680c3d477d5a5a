"""Nobody decides a pair they labelled, even when the label came after their claim: an admin
(admins annotate too) who claims an escalated pair while holding a lease on it, then labels
it, cannot then record the expert's decision on it."""

from __future__ import annotations

import pytest

from annotation.models import Pair
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_submit
from reviewers.errors import ConflictOfInterest
from reviewers.models import Adjudication, Escalation
from reviewers.services.adjudications import adjudication_resolve
from reviewers.services.escalations import escalation_claim, escalation_open
from tests.factories import CampaignFactory, PairFactory


@pytest.mark.django_db
def test_a_label_given_after_the_claim_bars_the_decision(admin_user):
    campaign = CampaignFactory(annotators_per_pair=3)
    pair = PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=admin_user)
    assert assignment is not None and assignment.pair_id == pair.pk
    escalation = escalation_open(pair=pair, reason=Escalation.Reason.MANUAL, detail="look")
    assert escalation is not None
    escalation_claim(escalation=escalation, expert=admin_user)  # no label of theirs yet
    label_submit(assignment=assignment, data=LabelInput(preference=1))
    with pytest.raises(ConflictOfInterest, match="You labelled this pair"):
        adjudication_resolve(
            escalation=escalation,
            expert=admin_user,
            decision=Adjudication.Decision.PREFERENCE,
            preference=1,
            note="mine",
        )
    escalation.refresh_from_db()
    assert escalation.status == Escalation.Status.OPEN
    assert not Adjudication.objects.exists()
    assert Pair.objects.get(pk=pair.pk).status == Pair.Status.ESCALATED


@pytest.mark.django_db
def test_a_label_given_after_the_claim_gives_the_claim_back(admin_user, django_user_model):
    """The claim holder can no longer decide, so other experts may take the pair at once."""
    campaign = CampaignFactory(annotators_per_pair=3)
    pair = PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=admin_user)
    assert assignment is not None and assignment.pair_id == pair.pk
    escalation = escalation_open(pair=pair, reason=Escalation.Reason.MANUAL, detail="look")
    assert escalation is not None
    escalation_claim(escalation=escalation, expert=admin_user)
    label_submit(assignment=assignment, data=LabelInput(preference=1))
    escalation.refresh_from_db()
    assert escalation.claimed_by_id is None and escalation.claim_expires_at is None
    other = django_user_model.objects.create_superuser("other-expert", "o@example.com", "pw")
    escalation_claim(escalation=escalation, expert=other)
    escalation.refresh_from_db()
    assert escalation.claimed_by_id == other.pk
