"""Review 18: a change of a campaign's qualification settings judges its qualifying members
again. Lowering the number of checks left a member who had answered enough of them waiting
for a check nobody would serve (``assignment_next`` gave them nothing), and turning
qualification off or lowering the threshold left members qualifying or held back for good.
Through the settings API and the Django admin, the real engine and hooks."""

from __future__ import annotations

import pytest

from annotation.models import Assignment, CampaignMember, Pair
from annotation.services.members import member_add
from tests.annotation.test_per_pair_change_admin import _change_in_admin
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import user_with_role

pytestmark = pytest.mark.django_db


def _campaign(*, required: int, threshold: float = 0.8):  # noqa: ANN202
    campaign = CampaignFactory(
        open_to_all=False, qualification_gold_count=required, qualification_threshold=threshold
    )
    for _ in range(4):
        PairFactory(campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE)
    PairFactory.create_batch(2, campaign=campaign)
    return campaign


def _member_answering(campaign, name: str, answers: list[int]):  # noqa: ANN001, ANN202
    """A new member who answers gold checks, canonical side 1 being right."""
    user = user_with_role(name)
    member = member_add(campaign=campaign, user=user)
    client = api_client_for(user)
    for canonical in answers:
        taken = client.post(f"/api/campaigns/{campaign.pk}/next")
        assignment = Assignment.objects.get(pk=taken.json()["assignment"]["id"])
        assert assignment.kind == Assignment.Kind.GOLD
        shown = -canonical if assignment.swapped else canonical
        labelled = client.post(
            f"/api/assignments/{assignment.pk}/label", {"preference": shown}, format="json"
        )
        assert labelled.status_code == 201, labelled.json()
    return member, client


def _state(member: CampaignMember) -> str:
    member.refresh_from_db()
    return member.state


def test_lowering_the_count_admits_those_whose_answers_now_pass(admin_user):
    campaign = _campaign(required=3)
    passing, passing_client = _member_answering(campaign, "pia", [1, 1])
    failing, _ = _member_answering(campaign, "fay", [-1, 1])
    assert _state(passing) == _state(failing) == CampaignMember.State.QUALIFYING

    changed = api_client_for(admin_user).patch(
        f"/api/campaigns/{campaign.pk}", {"qualification_gold_count": 2}, format="json"
    )

    assert changed.status_code == 200, changed.content
    assert _state(passing) == CampaignMember.State.ACTIVE
    assert _state(failing) == CampaignMember.State.QUALIFYING  # held back: 0.5 < 0.8
    # admitted, so served ordinary pairs now
    served = passing_client.post(f"/api/campaigns/{campaign.pk}/next")
    assert served.status_code == 200 and served.json()["assignment"] is not None


def test_turning_qualification_off_admits_every_qualifying_member(admin_user):
    campaign = _campaign(required=3)
    members = [
        _member_answering(campaign, name, answers)[0]
        for name, answers in (
            ("ada", []),
            ("bo", [-1]),
            ("cy", [1, -1, -1]),
        )
    ]

    changed = api_client_for(admin_user).patch(
        f"/api/campaigns/{campaign.pk}", {"qualification_gold_count": 0}, format="json"
    )

    assert changed.status_code == 200, changed.content
    assert [_state(member) for member in members] == [CampaignMember.State.ACTIVE] * 3


def test_lowering_the_threshold_in_the_admin_admits_a_member_held_back(client):
    campaign = _campaign(required=2, threshold=0.8)
    held_back, _ = _member_answering(campaign, "hal", [1, -1])
    assert _state(held_back) == CampaignMember.State.QUALIFYING
    assert held_back.qualification["outcome"] == "held back"

    _change_in_admin(client, campaign, qualification_threshold="0.5")

    assert campaign.qualification_threshold == 0.5
    assert _state(held_back) == CampaignMember.State.ACTIVE
