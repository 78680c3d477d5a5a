"""A member's removal keeps their state history: the pay report still counts the time they
were quarantined, up to the removal, and a re-added member's history goes on from there."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from annotation.models import CampaignMember, MemberTransition
from annotation.services.members import member_add, member_quarantine, member_remove
from tests.factories import CampaignFactory
from tests.reviewers.factories import user_with_role

pytestmark = pytest.mark.django_db


def _report(client) -> dict[str, dict[str, str]]:
    response = client.get(reverse("annotator-report"), {"format": "csv"})
    assert response.status_code == 200
    return {row["username"]: row for row in csv.DictReader(io.StringIO(response.content.decode()))}


def test_a_removed_members_quarantine_stays_in_the_report_and_ends_at_the_removal(
    client, admin_user
) -> None:
    campaign = CampaignFactory(open_to_all=False)
    eve = user_with_role("eve")
    member = member_add(campaign=campaign, user=eve)
    now = timezone.now()
    with time_machine.travel(now - timedelta(hours=3), tick=False):
        member_quarantine(member=member, reason="test: below the gold threshold")
    with time_machine.travel(now - timedelta(hours=1), tick=False):
        member_remove(campaign=campaign, user_id=eve.pk, by=admin_user)

    assert not CampaignMember.objects.filter(campaign=campaign, user=eve).exists()
    history = MemberTransition.objects.filter(campaign=campaign, user=eve).order_by("at", "id")
    assert [(t.from_state, t.to_state) for t in history] == [
        ("active", "quarantined"),
        ("quarantined", "removed"),
    ]
    removal = history.last()
    assert removal is not None and removal.by == admin_user and removal.member is None

    client.force_login(admin_user)
    # Two hours quarantined, from the quarantine to the removal; not until now.
    assert float(_report(client)["eve"]["quarantine_seconds"]) == pytest.approx(7200, abs=5)


def test_a_re_added_members_timeline_goes_on_in_the_same_campaign(client, admin_user) -> None:
    campaign = CampaignFactory(open_to_all=False)
    fay = user_with_role("fay")
    now = timezone.now()
    with time_machine.travel(now - timedelta(hours=5), tick=False):
        member_quarantine(member=member_add(campaign=campaign, user=fay), reason="test: first")
    with time_machine.travel(now - timedelta(hours=4), tick=False):
        member_remove(campaign=campaign, user_id=fay.pk)
    with time_machine.travel(now - timedelta(hours=2), tick=False):
        again = member_add(campaign=campaign, user=fay)
        assert again.state == CampaignMember.State.ACTIVE
        member_quarantine(member=again, reason="test: second")

    client.force_login(admin_user)
    # One hour in the first membership, two (until now) in the second.
    assert float(_report(client)["fay"]["quarantine_seconds"]) == pytest.approx(3 * 3600, abs=5)
    # The members page reads the current membership's latest transition only.
    assert again.transitions.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_migration_names_each_existing_transitions_campaign_and_user():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("annotation", "0016_round_chosen_by_version")]
    after = [("annotation", "0017_member_transition_outlives_member")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    user = apps.get_model("auth", "User").objects.create(username="old", last_login=None)
    campaign = apps.get_model("annotation", "Campaign").objects.create(name="old campaign")
    member = apps.get_model("annotation", "CampaignMember").objects.create(
        campaign=campaign, user=user, state="quarantined"
    )
    apps.get_model("annotation", "MemberTransition").objects.create(
        member=member, from_state="active", to_state="quarantined", reason="before"
    )

    executor = MigrationExecutor(connection)
    executor.migrate(after)
    apps = executor.loader.project_state(after).apps
    migrated = apps.get_model("annotation", "MemberTransition").objects.get()
    assert (migrated.campaign_id, migrated.user_id, migrated.member_id) == (
        campaign.pk,
        user.pk,
        member.pk,
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
