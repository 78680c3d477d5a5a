"""Qualification (admits and holds back) and quarantine (reopens slots, keeps the labels,
restore), through the real API, engine and hooks."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from annotation.models import Assignment, CampaignMember, Label, MemberTransition, Pair
from annotation.roles import Role
from annotation.selectors import labels_for_export
from annotation.services.members import member_add
from reviewers.services.member_quality import quarantine_reasons
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import judge, judged_pair, user_with_role

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def _answer(client, campaign, *, canonical: int) -> dict:  # noqa: ANN001
    """Take the next pair through the API and answer it with a canonical preference."""
    taken = client.post(f"/api/campaigns/{campaign.pk}/next")
    assert taken.status_code == 200, taken.status_code
    assignment = Assignment.objects.get(pk=taken.json()["assignment"]["id"])
    shown = -canonical if assignment.swapped else canonical
    labelled = client.post(
        f"/api/assignments/{assignment.pk}/label", {"preference": shown}, format="json"
    )
    assert labelled.status_code == 201
    return {"assignment": assignment, "kind": assignment.kind, "pair_id": assignment.pair_id}


@pytest.fixture
def qualifying_campaign():
    campaign = CampaignFactory(
        open_to_all=False, qualification_gold_count=3, qualification_threshold=0.66
    )
    for _ in range(4):
        PairFactory(campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE)
    PairFactory.create_batch(2, campaign=campaign)
    return campaign


def test_a_new_member_answers_gold_first_and_is_admitted_when_accurate(qualifying_campaign):
    campaign = qualifying_campaign
    user = user_with_role("quinn")
    member = member_add(campaign=campaign, user=user)
    assert member.state == CampaignMember.State.QUALIFYING
    client = api_client_for(user)
    kinds = [_answer(client, campaign, canonical=1)["kind"] for _ in range(3)]
    assert kinds == [Assignment.Kind.GOLD] * 3
    member.refresh_from_db()
    assert member.state == CampaignMember.State.ACTIVE
    transition = MemberTransition.objects.get(member=member)
    assert (transition.from_state, transition.to_state) == ("qualifying", "active")
    assert transition.figures["correct"] == 3 and transition.figures["checks"] == 3
    assert _answer(client, campaign, canonical=1)["kind"] == Assignment.Kind.REGULAR


def test_a_member_below_the_threshold_is_held_back_and_the_admin_sees_why(qualifying_campaign):
    campaign = qualifying_campaign
    user = user_with_role("quentin")
    member = member_add(campaign=campaign, user=user)
    client = api_client_for(user)
    for canonical in (1, -1, -1):  # one of three right: 0.33 < 0.66
        assert _answer(client, campaign, canonical=canonical)["kind"] == Assignment.Kind.GOLD
    member.refresh_from_db()
    assert member.state == CampaignMember.State.QUALIFYING
    assert member.qualification["outcome"] == "held back"
    assert member.qualification["correct"] == 1
    assert client.post(f"/api/campaigns/{campaign.pk}/next").status_code == 204
    assert not Assignment.objects.filter(annotator=user, kind=Assignment.Kind.REGULAR).exists()

    admin = user_with_role("ada", Role.ADMIN)
    browser = Client()
    browser.force_login(admin)
    page = browser.get(reverse("campaign-members", args=[campaign.pk])).content.decode()
    assert "qualifying" in page and "1/3 of 3 gold correct" in page and "held back" in page
    admitted = api_client_for(admin).post(
        f"/api/campaigns/{campaign.pk}/members/{user.pk}", {"action": "admit"}, format="json"
    )
    assert admitted.status_code == 200 and admitted.json()["state"] == "active"
    assert client.post(f"/api/campaigns/{campaign.pk}/next").status_code == 200


@pytest.fixture
def watched_campaign():
    return CampaignFactory(
        open_to_all=False,
        annotators_per_pair=3,
        quarantine_min_agreement=0.6,
        quarantine_min_checks=2,
        quarantine_window=10,
    )


def test_quarantine_sets_unsettled_labels_aside_reopens_slots_and_restore_keeps_them_aside(
    watched_campaign,
):
    campaign = watched_campaign
    good1, good2, good3, bad = (user_with_role(name) for name in ("g1", "g2", "g3", "bad"))
    for user in (good1, good2, good3, bad):
        member_add(campaign=campaign, user=user)
    bad_client = api_client_for(bad)
    # Pair 1 settles for A; bad said B (one check, below the minimum of two).
    judged_pair(campaign, [1, 1, -1], users=[good1, good2, bad])
    # Pair 2: bad answers first (nothing settled to judge by yet), then the others settle it.
    second, third = PairFactory(campaign=campaign), PairFactory(campaign=campaign)
    assert _answer(bad_client, campaign, canonical=-1)["pair_id"] == second.pk
    for user in (good1, good2):
        assert judge(campaign, user, 1).pair_id == second.pk
    # Pair 3: good1 labels, then bad: two settled checks, both against the verdict.
    assert judge(campaign, good1, 1).pair_id == third.pk
    answered = _answer(bad_client, campaign, canonical=-1)
    assert answered["pair_id"] == third.pk

    member = CampaignMember.objects.get(campaign=campaign, user=bad)
    assert member.state == CampaignMember.State.QUARANTINED
    transition = MemberTransition.objects.get(member=member)
    assert transition.reason.startswith("automatic: agreement 0.00 < 0.6")
    assert transition.figures["agreement_checks"] == 2
    assert transition.figures["labels_set_aside"] == 1
    # Kept, set aside; the pair's slot reopened for someone else.
    kept = Label.objects.get(pair=third, annotator=bad)
    assert kept.set_aside
    third.refresh_from_db()
    assert (third.labels_count, third.slots_taken, third.status) == (1, 1, "in_annotation")
    assert bad_client.post(f"/api/campaigns/{campaign.pk}/next").status_code == 204
    workspace = Client()
    workspace.force_login(bad)
    paused = workspace.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()
    assert "Your work here is paused" in paused
    # Others fill the reopened slot; consensus leaves the set-aside label out.
    for user in (good2, good3):
        assert judge(campaign, user, 1).pair_id == third.pk
    third.refresh_from_db()
    assert third.status == Pair.Status.COMPLETE
    assert third.provenance == Pair.Provenance.UNANIMOUS
    assert Label.objects.filter(pair=third).count() == 4
    exported = [row["label_id"] for row in labels_for_export(campaign=campaign)]
    assert kept.pk not in exported
    # Earlier labels on settled pairs stay as they were.
    assert Label.objects.filter(annotator=bad, set_aside=False).count() == 2

    admin = user_with_role("ada", Role.ADMIN)
    browser = Client()
    browser.force_login(admin)
    dashboard = browser.get(reverse("campaign-dashboard", args=[campaign.pk])).content.decode()
    assert 'data-testid="quarantined"' in dashboard and "bad" in dashboard
    restored = api_client_for(admin).post(
        f"/api/campaigns/{campaign.pk}/members/{bad.pk}", {"action": "restore"}, format="json"
    )
    assert restored.status_code == 200 and restored.json()["state"] == "active"
    assert restored.json()["labels_set_aside"] == 1
    kept.refresh_from_db()
    assert kept.set_aside  # restore gives new work, not the old slot back
    assert list(
        MemberTransition.objects.filter(member=member).values_list("from_state", "to_state")
    ) == [("active", "quarantined"), ("quarantined", "active")]
    PairFactory(campaign=campaign)
    assert bad_client.post(f"/api/campaigns/{campaign.pk}/next").status_code == 200


def test_an_annotator_in_an_open_campaign_is_quarantined_too():
    campaign = CampaignFactory(
        open_to_all=True, quarantine_min_agreement=0.6, quarantine_min_checks=1
    )
    good1, good2, bad = (user_with_role(name) for name in ("g1", "g2", "bad"))
    judged_pair(campaign, [1, 1, -1], users=[good1, good2, bad])
    member = CampaignMember.objects.get(campaign=campaign, user=bad)
    assert member.state == CampaignMember.State.QUARANTINED
    assert not CampaignMember.objects.filter(user__in=[good1, good2]).exists()


def test_no_quarantine_below_the_minimum_number_of_checks():
    figures = {
        "gold_checks": 4,
        "gold_accuracy": 0.0,
        "agreement_checks": 9,
        "agreement": 0.1,
        "min_checks": 10,
        "min_gold_accuracy": 0.8,
        "min_agreement": 0.6,
    }
    assert quarantine_reasons(figures) == []
    assert quarantine_reasons({**figures, "gold_checks": 10}) == ["gold accuracy 0.00 < 0.8"]
