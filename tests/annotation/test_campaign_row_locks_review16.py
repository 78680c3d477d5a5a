"""Review 16: locking a member, a round or a model version never locks its campaign's row.

Their default orderings join the campaign (and the member's user), and a plain FOR UPDATE
locked every joined row. Every label's commit in the campaign checks its foreign key to the
campaign (a key-share lock on its row), so while a quarantine's pass after commit held its
member row and waited for a pair, the submit holding that pair could not commit: a deadlock,
a 503 and a lost label (seen with two annotators quarantined by crossed submits)."""

from __future__ import annotations

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from annotation.models import CampaignMember, Round
from annotation.services.members import _set_aside_after_commit, member_add, member_remove
from scoring.evaluation.services import _version_evaluations_lock
from scoring.loop.rounds import round_close
from tests.annotation.test_member_state_concurrency import (
    _holding,
    _x_with_two_unsettled_labels,
)
from tests.conftest import start_in_thread, wait_for_a_lock_waiter
from tests.factories import CampaignFactory, UserFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="row locks"),
]


def test_a_label_commits_while_a_quarantines_pass_waits_for_a_pair():
    campaign, member, _p0, p, _x_on_p, _b = _x_with_two_unsettled_labels()
    CampaignMember.objects.filter(pk=member.pk).update(state=CampaignMember.State.QUARANTINED)
    holder, release = _holding(p)

    def set_aside():
        try:
            _set_aside_after_commit(member, pair_ids=[p.pk])
        finally:
            connections.close_all()

    waiting = start_in_thread(set_aside)
    try:
        wait_for_a_lock_waiter()  # the pass holds the member's row and waits for P
        writer = connections.create_connection("default")
        try:
            with writer.cursor() as cursor:
                cursor.execute("SET lock_timeout = '3s'")
                cursor.execute("BEGIN")
                # Any row referencing the campaign: its foreign-key check at commit.
                cursor.execute(
                    "INSERT INTO annotation_round (campaign_id, number, status, opened_at) "
                    "VALUES (%s, 99, 'closed', now())",
                    [campaign.pk],
                )
                cursor.execute("COMMIT")
        finally:
            writer.close()
    finally:
        release.set()
        holder.result(timeout=30)
        waiting.result(timeout=30)
    assert Round.objects.filter(campaign=campaign, number=99).exists()


def _for_update_joins(queries) -> list[str]:  # noqa: ANN001 - captured query dicts
    return [
        query["sql"]
        for query in queries
        if "FOR UPDATE" in query["sql"] or "FOR NO KEY UPDATE" in query["sql"]
        if " JOIN " in query["sql"] and " OF " not in query["sql"].rsplit("FOR ", 1)[1]
    ]


def test_removing_a_member_locks_no_joined_row():
    campaign = CampaignFactory()
    user = UserFactory()
    member_add(campaign=campaign, user=user)
    with CaptureQueriesContext(connection) as queries:
        member_remove(campaign=campaign, user_id=user.pk)
    assert _for_update_joins(queries.captured_queries) == []


def test_closing_a_round_locks_no_joined_row():
    campaign = CampaignFactory()
    Round.objects.create(campaign=campaign, number=1)
    with CaptureQueriesContext(connection) as queries:
        assert round_close(campaign=campaign) is not None
    assert _for_update_joins(queries.captured_queries) == []


def test_locking_a_model_version_locks_no_joined_row():
    from scoring.models import ModelVersion

    version = ModelVersion.objects.create(
        campaign=CampaignFactory(), number=1, base="base", checkpoint="/nowhere"
    )
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        _version_evaluations_lock(version)
    assert _for_update_joins(queries.captured_queries) == []
