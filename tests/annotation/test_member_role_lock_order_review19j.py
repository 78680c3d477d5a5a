"""Review 19j: a member made an expert in the Django admin while they submit a label.

The admin runs member_add in its transaction. It locked the member's row (the role UPDATE)
and then waited for their lease, while the label submit held that lease (its claim) and then
waited for the member's row (a qualifying member's figures, a quarantine): a deadlock, one
side answered with a 500. member_add now ends the leases before it touches the member's row,
in the order a label submit takes them.
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction  # noqa: F401 - the skipif condition reads it
from django.test import Client

from annotation.models import Assignment, CampaignMember
from annotation.services.assignments import assignment_next
from annotation.services.members import member_add, member_record_qualification
from tests.conftest import closing_connections, start_in_thread, wait_for_a_lock_waiter
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import user_with_role

postgresql_only = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="row locks")


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_an_admin_role_change_racing_a_label_submit_does_not_deadlock():
    campaign = CampaignFactory(open_to_all=False)
    PairFactory(campaign=campaign)
    mia = user_with_role("mia")
    member = member_add(campaign=campaign, user=mia)
    lease = assignment_next(campaign=campaign, annotator=mia)
    assert lease is not None
    admin = Client()
    admin.force_login(UserFactory(is_staff=True, is_superuser=True))

    def make_expert() -> int:
        response = admin.post(
            f"/admin/annotation/campaignmember/{member.pk}/change/", {"role": "expert"}
        )
        return response.status_code

    # A label submit's locks, in its order: the lease claimed, then the member's row (the
    # label_submitted hook records a qualifying member's figures).
    with transaction.atomic():
        claimed = Assignment.objects.filter(pk=lease.pk, status=Assignment.Status.ACTIVE).update(
            status=Assignment.Status.SUBMITTED
        )
        assert claimed == 1
        changing = start_in_thread(closing_connections(make_expert))
        wait_for_a_lock_waiter()  # the admin's change waits on the claimed lease
        member_record_qualification(member=member, figures={"checks": 1})

    assert changing.result(timeout=30) == 302
    member.refresh_from_db()
    assert member.role == CampaignMember.Role.EXPERT
    assert member.qualification == {"checks": 1}
