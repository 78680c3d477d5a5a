"""Member state changes under concurrency, on PostgreSQL's row locks.

* Two annotators quarantined by concurrent label submits: each submit holds the pair it just
  labelled, and each quarantine wants the pair the other holds. Neither waits now (pairs held
  by others are set aside after commit), so both labels are in and both are quarantined.
* A pair that settled (and reopened for its re-test) while a quarantine waited for its lock
  keeps the label: it counts in the stored consensus.
* A restore is one transaction: cut short, it leaves the member quarantined; racing a removal,
  it answers no 500.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import (  # noqa: F401 - connection: the skipif condition reads it
    OperationalError,
    connection,
    connections,
    transaction,
)
from django.utils import timezone

from annotation.models import Assignment, CampaignMember, Label, MemberTransition, Pair
from annotation.roles import Role
from annotation.services import members as members_service
from annotation.services.labels import LabelInput, label_submit
from annotation.services.members import member_add, member_quarantine
from tests.conftest import (
    api_client_for,
    run_concurrently,
    start_in_thread,
    wait_for_a_lock_waiter,
)
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import add_label, user_with_role

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="row locks"),
]


def _lease(pair: Pair, user) -> Assignment:
    now = timezone.now()
    return Assignment.objects.create(
        campaign=pair.campaign,
        pair=pair,
        annotator=user,
        round_id=pair.round_id,
        swapped=False,
        leased_at=now,
        lease_expires_at=now + timedelta(minutes=15),
    )


def _in_annotation(campaign, labels: int) -> Pair:
    return PairFactory(
        campaign=campaign, status=Pair.Status.IN_ANNOTATION, slots_taken=3, labels_count=labels
    )


def _state(campaign, user) -> str:
    return CampaignMember.objects.get(campaign=campaign, user=user).state


def _crossed_submits():
    """P1: Y and G1 said A, X holds the last slot; P2: X and G2 said A, Y holds the last
    slot. X and Y both answer B: each pair settles against them and they are quarantined
    (agreement 0/1 < 0.6), each wanting the other's pair."""
    campaign = CampaignFactory(
        open_to_all=False,
        annotators_per_pair=3,
        quarantine_min_agreement=0.6,
        quarantine_min_checks=1,
        quarantine_window=10,
    )
    x, y, g1, g2 = (user_with_role(name) for name in ("x", "y", "g1", "g2"))
    for user in (x, y, g1, g2):
        member_add(campaign=campaign, user=user)
    p1, p2 = _in_annotation(campaign, 2), _in_annotation(campaign, 2)
    add_label(p1, y, 1)
    add_label(p1, g1, 1)
    add_label(p2, x, 1)
    add_label(p2, g2, 1)
    return campaign, x, y, _lease(p1, x), _lease(p2, y)


def test_two_quarantines_in_crossed_submits_both_land(monkeypatch):
    campaign, x, y, x_lease, y_lease = _crossed_submits()
    # Only timing: each quarantine looks at the other's pair once both submits hold theirs.
    barrier = threading.Barrier(2)
    local = threading.local()
    original = members_service.pair_lock_open

    def lock_open(*, pair_id, wait=True):
        if not getattr(local, "waited", False):
            local.waited = True
            barrier.wait(timeout=10)
        return original(pair_id=pair_id, wait=wait)

    monkeypatch.setattr(members_service, "pair_lock_open", lock_open)

    def submit(assignment):
        def run():
            try:
                label_submit(assignment=assignment, data=LabelInput(preference=-1))
            finally:
                connections.close_all()

        return run

    run_concurrently([submit(x_lease), submit(y_lease)], timeout=60)
    assert Label.objects.filter(assignment__in=[x_lease, y_lease]).count() == 2
    assert _state(campaign, x) == _state(campaign, y) == CampaignMember.State.QUARANTINED
    # Both pairs settled with all three labels: nothing of theirs was unsettled to set aside.
    assert not Label.objects.filter(campaign=campaign, set_aside=True).exists()


def test_crossed_submits_through_the_api_both_get_201():
    campaign, x, y, x_lease, y_lease = _crossed_submits()
    start = threading.Barrier(2)

    def post(user, assignment):
        def run():
            client = api_client_for(user)
            client.raise_request_exception = False
            try:
                start.wait(10)
                return client.post(
                    f"/api/assignments/{assignment.pk}/label", {"preference": -1}, format="json"
                ).status_code
            finally:
                connections.close_all()

        return run

    assert run_concurrently([post(x, x_lease), post(y, y_lease)], timeout=60) == [201, 201]


def _holding(pair: Pair, *, then=None):
    """A transaction elsewhere holds the pair's lock (a submit in flight) until released;
    ``then`` runs inside it before the release."""
    holding, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                list(Pair.objects.select_for_update().filter(pk=pair.pk).values_list("pk"))
                holding.set()
                release.wait(30)
                if then is not None:
                    then()
        finally:
            connections.close_all()

    future = start_in_thread(hold)
    assert holding.wait(10)
    return future, release


def _quarantine_in_thread(member):
    def run():
        try:
            return member_quarantine(member=member, reason="test")
        finally:
            connections.close_all()

    return start_in_thread(run)


def _x_with_two_unsettled_labels(**campaign_fields):
    campaign = CampaignFactory(annotators_per_pair=3, **campaign_fields)
    x, a, b = (user_with_role(name) for name in ("x", "a", "b"))
    member = member_add(campaign=campaign, user=x)
    member.campaign = campaign
    p0 = PairFactory(campaign=campaign, status=Pair.Status.IN_ANNOTATION, slots_taken=1)
    add_label(p0, x, 1)
    Pair.objects.filter(pk=p0.pk).update(labels_count=1)
    p = _in_annotation(campaign, 2)
    x_on_p = add_label(p, x, 1)
    add_label(p, a, 1)
    return campaign, member, p0, p, x_on_p, b


def test_a_pair_held_elsewhere_is_set_aside_once_released():
    campaign, member, p0, p, x_on_p, _b = _x_with_two_unsettled_labels()
    holder, release = _holding(p)
    quarantined = _quarantine_in_thread(member)
    wait_for_a_lock_waiter()  # the pass after commit waits for P
    release.set()
    holder.result(timeout=30)
    assert quarantined.result(timeout=30) == 1  # P0 at once; P after the release
    x_on_p.refresh_from_db()
    p.refresh_from_db()
    assert x_on_p.set_aside and (p.labels_count, p.slots_taken) == (1, 2)
    transition = MemberTransition.objects.get(to_state=CampaignMember.State.QUARANTINED)
    assert transition.figures["labels_set_aside"] == 2


def test_a_pair_that_settled_and_reopened_meanwhile_keeps_the_label():
    campaign, member, p0, p, x_on_p, b = _x_with_two_unsettled_labels(retest_share=1.0)
    b_lease = _lease(p, b)
    # B's submit holds P: it settles P unanimous (A) and the re-test share reopens it.
    holder, release = _holding(
        p, then=lambda: label_submit(assignment=b_lease, data=LabelInput(preference=1))
    )
    quarantined = _quarantine_in_thread(member)
    wait_for_a_lock_waiter()
    release.set()
    holder.result(timeout=30)
    assert quarantined.result(timeout=30) == 1
    p.refresh_from_db()
    x_on_p.refresh_from_db()
    assert (p.status, p.provenance) == (Pair.Status.IN_ANNOTATION, Pair.Provenance.UNANIMOUS)
    assert not x_on_p.set_aside and p.labels_count == 3
    transition = MemberTransition.objects.get(to_state=CampaignMember.State.QUARANTINED)
    assert transition.figures["labels_set_aside"] == 1


def _quarantined_member():
    campaign = CampaignFactory(
        open_to_all=False,
        annotators_per_pair=3,
        quarantine_min_agreement=0.6,
        quarantine_min_checks=2,
        quarantine_window=10,
    )
    bad, g1, g2 = (user_with_role(name) for name in ("bad", "g1", "g2"))
    for user in (bad, g1, g2):
        member_add(campaign=campaign, user=user)
    for _ in range(2):  # two settled pairs (A) on which bad said B: agreement 0/2
        pair = PairFactory(
            campaign=campaign,
            status=Pair.Status.COMPLETE,
            slots_taken=3,
            labels_count=3,
            consensus_preference=1,
            provenance=Pair.Provenance.MAJORITY,
        )
        add_label(pair, g1, 1)
        add_label(pair, g2, 1)
        add_label(pair, bad, -1)
    member = CampaignMember.objects.select_related("campaign").get(campaign=campaign, user=bad)
    assert member_quarantine(member=member, reason="automatic: test") == 0
    return campaign, bad, user_with_role("boss", Role.ADMIN)


def test_a_restore_cut_short_leaves_the_member_quarantined(monkeypatch):
    campaign, bad, admin = _quarantined_member()
    original = MemberTransition.objects.create

    def create(**fields):
        if fields.get("to_state") == CampaignMember.State.ACTIVE:
            raise OperationalError("server closed the connection unexpectedly")
        return original(**fields)

    monkeypatch.setattr(MemberTransition.objects, "create", create)
    url = f"/api/campaigns/{campaign.pk}/members/{bad.pk}"
    client = api_client_for(admin)
    assert client.post(url, {"action": "restore"}, format="json").status_code == 503
    assert _state(campaign, bad) == CampaignMember.State.QUARANTINED
    monkeypatch.undo()
    response = client.post(url, {"action": "restore"}, format="json")  # the retry asked for
    assert response.status_code == 200 and response.json()["state"] == "active"
    assert MemberTransition.objects.filter(user=bad, to_state="active").count() == 1


def test_a_restore_racing_a_removal_answers_no_500(monkeypatch):
    campaign, bad, admin = _quarantined_member()
    updated, removed = threading.Event(), threading.Event()
    original = MemberTransition.objects.create

    def create(**fields):
        if fields.get("to_state") == CampaignMember.State.ACTIVE:
            updated.set()  # the restore's UPDATE is done
            removed.wait(5)  # the removal tries to land here (it waits for the row now)
        return original(**fields)

    monkeypatch.setattr(MemberTransition.objects, "create", create)
    url = f"/api/campaigns/{campaign.pk}/members/{bad.pk}"

    def restore():
        client = api_client_for(admin)
        client.raise_request_exception = False
        try:
            return client.post(url, {"action": "restore"}, format="json").status_code
        finally:
            connections.close_all()

    def remove():
        try:
            assert updated.wait(20)
            return api_client_for(admin).delete(url).status_code
        finally:
            removed.set()
            connections.close_all()

    assert run_concurrently([restore, remove], timeout=60) == [200, 204]
    states = list(
        MemberTransition.objects.filter(user=bad).order_by("at", "id").values_list("to_state")
    )
    assert states == [("quarantined",), ("active",), ("removed",)]


def test_the_sweep_sets_aside_what_a_killed_quarantine_left_behind(monkeypatch):
    """A quarantine's pass after commit never ran (its process was killed): the member is
    quarantined and a label of theirs still counts on an unsettled pair. The periodic sweep
    (annotation.fail_stale_work) sets it aside and gives the slot back."""
    from annotation.services.members import members_set_aside_left_behind
    from annotation.tasks import fail_stale_work_task

    campaign, member, p0, p, x_on_p, _b = _x_with_two_unsettled_labels()
    holder, release = _holding(p)
    # The quarantine as it stood when its process died: P skipped, the pass never run.
    monkeypatch.setattr(members_service, "_set_aside_after_commit", lambda *a, **k: None)
    assert member_quarantine(member=member, reason="test") == 1
    monkeypatch.undo()
    # Still held elsewhere: the sweep skips it (the next sweep takes it).
    assert members_set_aside_left_behind() == 0
    release.set()
    holder.result(timeout=30)
    assert fail_stale_work_task() >= 1
    x_on_p.refresh_from_db()
    p.refresh_from_db()
    assert x_on_p.set_aside and (p.labels_count, p.slots_taken) == (1, 2)
    transition = MemberTransition.objects.get(to_state=CampaignMember.State.QUARANTINED)
    assert transition.figures["labels_set_aside"] == 2
    assert members_set_aside_left_behind() == 0  # idempotent
