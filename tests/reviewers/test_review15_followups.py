"""Review 15, a second look at the day's changes: the expert queue tells an admin nothing is
held back from them; a both-bad pair whose only rewrite was set aside goes back to the
rewrite step; a membership deleted in the Django admin ends its quarantine in the pay report."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from annotation.models import CampaignMember, Pair
from annotation.roles import Role
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, RewriteInput, label_submit
from annotation.services.members import member_add, member_quarantine
from reviewers.selectors.queue import rewrite_queue
from reviewers.services.escalations import escalation_open
from scoring.datasets.export import ExportFilters
from scoring.datasets.export.rows import export_rows
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import user_with_role

pytestmark = pytest.mark.django_db


def test_an_admin_is_told_of_no_escalation_held_back_from_them(client):
    campaign = CampaignFactory(escalation_domain_wait_minutes=60)
    pair = PairFactory(campaign=campaign, task_category="math")
    escalation_open(pair=pair, reason="no_majority", detail="split")
    admin = user_with_role("ada", Role.ADMIN)
    client.force_login(admin, backend="django.contrib.auth.backends.ModelBackend")
    html = client.get(reverse("expert-queue")).content.decode()
    assert f"Pair {pair.pk}" in html  # the admin sees it in the queue...
    assert 'data-testid="held-back"' not in html  # ...so nothing is held back from them


def _both_bad(campaign, user, rewrite=None):
    assignment = assignment_next(campaign=campaign, annotator=user)
    assert assignment is not None
    return label_submit(
        assignment=assignment,
        data=LabelInput(preference=0, outcome="both_bad", rewrite=rewrite),
    )


def test_a_both_bad_pair_whose_only_rewrite_was_set_aside_is_in_the_rewrite_queue():
    campaign = CampaignFactory(allow_rewrites=True)
    pair = PairFactory(campaign=campaign)
    quarantined, *others = UserFactory.create_batch(4)
    _both_bad(campaign, quarantined, RewriteInput("a corrected answer", "a"))
    member_quarantine(member=member_add(campaign=campaign, user=quarantined), reason="t")
    for user in others:
        _both_bad(campaign, user)
    pair.refresh_from_db()
    assert pair.consensus_outcome == "both_bad" and pair.status == Pair.Status.COMPLETE
    # The export has no rewrite of it (a set-aside label's is left out) ...
    rows = list(export_rows(campaign=campaign, filters=ExportFilters(rewrites=True)))
    assert not [row for _ranked, row in rows if row.get("provenance") == "rewrite"]
    # ... so the rewrite step offers it again.
    assert list(rewrite_queue(campaign=campaign)) == [pair]


def _report(client) -> dict[str, dict[str, str]]:
    response = client.get(reverse("annotator-report"), {"format": "csv"})
    assert response.status_code == 200
    return {row["username"]: row for row in csv.DictReader(io.StringIO(response.content.decode()))}


def test_a_membership_deleted_in_the_django_admin_ends_its_quarantine(client, admin_user):
    campaign = CampaignFactory(open_to_all=False)
    eve = user_with_role("eve")
    now = timezone.now()
    with time_machine.travel(now - timedelta(hours=10), tick=False):
        member_quarantine(member=member_add(campaign=campaign, user=eve), reason="t")
    member = CampaignMember.objects.get(campaign=campaign, user=eve)
    with time_machine.travel(now - timedelta(hours=9), tick=False):
        client.force_login(UserFactory(is_staff=True, is_superuser=True))
        url = f"/admin/annotation/campaignmember/{member.pk}/delete/"
        assert client.post(url, {"post": "yes"}).status_code == 302
        assert not CampaignMember.objects.filter(pk=member.pk).exists()
        member_add(campaign=campaign, user=eve)  # back, active, working since
    client.force_login(admin_user)
    # One hour quarantined, until the deletion; it counted on until now.
    assert float(_report(client)["eve"]["quarantine_seconds"]) == pytest.approx(3600, abs=5)
