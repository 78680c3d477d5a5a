"""Review 14: a restored member starts a fresh quality window, and a re-added (or newly added)
member qualifies on the gold checks of this membership, not on earlier ones."""

from __future__ import annotations

import pytest

from annotation.models import Assignment, Campaign, CampaignMember, Label, Pair
from annotation.services.assignments import assignment_next, qualification_checks_taken
from annotation.services.members import member_add, member_remove, member_restore
from reviewers.services.member_quality import qualification_figures, rolling_figures
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import judge, judged_pair, user_with_role

pytestmark = [pytest.mark.django_db]


def _watched() -> Campaign:
    return CampaignFactory(
        open_to_all=False,
        annotators_per_pair=3,
        quarantine_min_agreement=0.6,
        quarantine_min_checks=2,
        quarantine_window=10,
    )


def _quarantined(campaign: Campaign):
    """g1, g2 and bad are members; bad disagrees with two settled pairs -> quarantined."""
    g1, g2, bad = (user_with_role(n) for n in ("g1", "g2", "bad"))
    for user in (g1, g2, bad):
        member_add(campaign=campaign, user=user)
    judged_pair(campaign, [1, 1, -1], users=[g1, g2, bad])
    judged_pair(campaign, [1, 1, -1], users=[g1, g2, bad])
    member = CampaignMember.objects.get(campaign=campaign, user=bad)
    assert member.state == CampaignMember.State.QUARANTINED
    return g1, g2, bad, member


def _state(member: CampaignMember) -> str:
    member.refresh_from_db()
    return member.state


# --- 1. a restore starts a fresh window ---------------------------------------------------


def test_a_restored_member_is_not_quarantined_again_by_their_next_correct_label():
    campaign = _watched()
    g1, g2, bad, member = _quarantined(campaign)
    assert member_restore(member=member)
    campaign = Campaign.objects.get(pk=campaign.pk)  # no remembered membership
    pair = judged_pair(campaign, [1, 1, 1], users=[g1, g2, bad])
    assert pair.consensus_preference == 1
    assert _state(member) == CampaignMember.State.ACTIVE
    # Only the label since the restore is in the window.
    since = member.transitions.filter(to_state="active").latest("at").at
    figures = rolling_figures(campaign=campaign, annotator_id=bad.pk, since=since)
    assert (figures["agreement_checks"], figures["agreeing"]) == (1, 1)


def test_a_restored_member_is_not_judged_until_min_checks_new_labels_exist():
    campaign = _watched()
    g1, g2, bad, member = _quarantined(campaign)
    member_restore(member=member)
    campaign = Campaign.objects.get(pk=campaign.pk)
    # One wrong label after the restore: below quarantine_min_checks (2), no verdict yet.
    judged_pair(campaign, [1, 1, -1], users=[g1, g2, bad])
    assert _state(member) == CampaignMember.State.ACTIVE
    # A second one: 0/2 agreeing in the fresh window, quarantined again.
    campaign = Campaign.objects.get(pk=campaign.pk)
    judged_pair(campaign, [1, 1, -1], users=[g1, g2, bad])
    assert _state(member) == CampaignMember.State.QUARANTINED
    latest = member.transitions.latest("at", "id")
    assert latest.to_state == "quarantined"
    assert latest.figures["agreement_checks"] == 2


def test_a_restored_member_with_good_new_labels_stays_active():
    campaign = _watched()
    g1, g2, bad, member = _quarantined(campaign)
    member_restore(member=member)
    for _ in range(3):
        campaign = Campaign.objects.get(pk=campaign.pk)
        judged_pair(campaign, [1, 1, 1], users=[g1, g2, bad])
    assert _state(member) == CampaignMember.State.ACTIVE


def test_rolling_figures_without_since_still_count_every_label():
    campaign = _watched()
    _g1, _g2, bad, _member = _quarantined(campaign)
    figures = rolling_figures(campaign=campaign, annotator_id=bad.pk)
    assert figures["agreement_checks"] == 2 and figures["agreeing"] == 0


# --- 2. qualification counts this membership's gold checks ------------------------------


@pytest.fixture
def qualifying_campaign() -> Campaign:
    campaign = CampaignFactory(
        open_to_all=False, qualification_gold_count=2, qualification_threshold=0.5
    )
    for _ in range(5):
        PairFactory(campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE)
    PairFactory.create_batch(2, campaign=campaign)
    return campaign


def _held_back_then_re_added(campaign: Campaign):
    user = user_with_role("quinn")
    member_add(campaign=campaign, user=user)
    for _ in range(2):
        judge(campaign, user, -1)  # both wrong
    member = CampaignMember.objects.get(campaign=campaign, user=user)
    assert (member.qualification or {}).get("outcome") == "held back"
    assert assignment_next(campaign=campaign, annotator=user) is None
    member_remove(campaign=campaign, user_id=user.pk)
    campaign = Campaign.objects.get(pk=campaign.pk)
    member_add(campaign=campaign, user=user)
    campaign = Campaign.objects.get(pk=campaign.pk)
    member = CampaignMember.objects.get(campaign=campaign, user=user)
    assert member.state == CampaignMember.State.QUALIFYING
    return campaign, user, member


def test_a_re_added_member_is_served_the_qualification_set_again(qualifying_campaign):
    campaign, user, member = _held_back_then_re_added(qualifying_campaign)
    served = assignment_next(campaign=campaign, annotator=user)
    assert served is not None
    assert served.kind == Assignment.Kind.GOLD
    # The lease held counts; the two answered in the earlier membership do not.
    assert qualification_checks_taken(campaign=campaign, annotator_id=user.pk) == 3
    assert (
        qualification_checks_taken(campaign=campaign, annotator_id=user.pk, since=member.added_at)
        == 1
    )


def test_a_re_added_member_is_judged_on_the_new_checks_and_admitted(qualifying_campaign):
    campaign, user, member = _held_back_then_re_added(qualifying_campaign)
    labels = [judge(campaign, user, 1) for _ in range(2)]  # both right this time
    assert all(label.is_gold_check for label in labels)
    member.refresh_from_db()
    assert member.state == CampaignMember.State.ACTIVE
    assert member.qualification["outcome"] == "passed"
    assert (member.qualification["checks"], member.qualification["correct"]) == (2, 2)
    # Admitted: regular work now.
    campaign = Campaign.objects.get(pk=campaign.pk)
    served = assignment_next(campaign=campaign, annotator=user)
    assert served is not None and served.kind == Assignment.Kind.REGULAR


def test_a_re_added_member_who_fails_again_is_held_back_with_new_figures(qualifying_campaign):
    campaign, user, member = _held_back_then_re_added(qualifying_campaign)
    judge(campaign, user, -1)
    member.refresh_from_db()
    assert member.qualification["outcome"] == "in progress"
    assert member.qualification["checks"] == 1
    judge(campaign, user, -1)
    member.refresh_from_db()
    assert member.state == CampaignMember.State.QUALIFYING
    assert member.qualification["outcome"] == "held back"
    campaign = Campaign.objects.get(pk=campaign.pk)
    assert assignment_next(campaign=campaign, annotator=user) is None
    # Four gold labels in all, two per membership.
    assert Label.objects.filter(annotator=user, is_gold_check=True).count() == 4


def test_gold_checks_from_an_open_campaign_do_not_count_for_a_later_membership():
    campaign = CampaignFactory(open_to_all=True, gold_share=1.0)
    for _ in range(5):
        PairFactory(campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE)
    user = user_with_role("olive")
    for _ in range(2):
        assert judge(campaign, user, -1).is_gold_check
    # The campaign now asks for a qualification and takes members only.
    Campaign.objects.filter(pk=campaign.pk).update(
        open_to_all=False, qualification_gold_count=2, qualification_threshold=0.5
    )
    campaign = Campaign.objects.get(pk=campaign.pk)
    member = member_add(campaign=campaign, user=user)
    assert member.state == CampaignMember.State.QUALIFYING
    for _ in range(2):
        assert judge(campaign, user, 1).is_gold_check
    member.refresh_from_db()
    assert member.state == CampaignMember.State.ACTIVE
    assert (member.qualification["checks"], member.qualification["correct"]) == (2, 2)
    # Without a start, the figures still score the first checks ever answered (both wrong).
    figures = qualification_figures(campaign=campaign, annotator_id=user.pk)
    assert (figures["checks"], figures["correct"]) == (2, 0)


def test_the_members_page_shows_only_the_measures_that_are_on(client, admin_user):
    """Review 15: a measure whose minimum is 0 is not read (nor its checks counted), so the
    page no longer shows it as "gold 0/0" beside the agreement that quarantined them."""
    from django.urls import reverse

    campaign = _watched()  # agreement on, gold accuracy off
    _quarantined(campaign)
    client.force_login(admin_user)
    page = client.get(reverse("campaign-members", args=[campaign.pk])).content.decode()
    assert "; agreement 0/2" in page
    assert "gold 0/0" not in page
