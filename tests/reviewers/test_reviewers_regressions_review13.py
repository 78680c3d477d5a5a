"""Regressions from review 13 of reviewers/ (rv5): the expert e-mail respects the domain
wait, a label change keeps a pending re-test, the review marks set-aside labels, the pay report
leaves out quarantines before the period, and the queue page refuses a NUL in its filter."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
import time_machine
from celery import current_app
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from annotation.models import Assignment, Pair
from annotation.roles import Role
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_change
from annotation.services.members import member_add, member_quarantine, member_restore
from reviewers.models import Escalation, ExpertSettings
from reviewers.selectors.queue import escalation_queue
from reviewers.services.escalations import escalation_open
from reviewers.services.notifications import experts_notify
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import judge, judged_pair, user_with_role

pytestmark = pytest.mark.django_db


def _expert(username: str, domains: list[str]):
    user = user_with_role(username, Role.EXPERT)
    user.email = f"{username}@example.org"
    user.save()
    if domains:
        ExpertSettings.objects.create(user=user, domains=domains)
    return user


def test_a_generalist_is_mailed_about_a_reserved_escalation_only_once_it_opens_to_all(
    monkeypatch,
):
    _expert("maths-expert", ["math"])
    generalist = _expert("generalist", [])
    sent = []
    monkeypatch.setattr(
        current_app,
        "send_task",
        lambda name, args=(), **options: sent.append((name, args, options)),
    )
    campaign = CampaignFactory(escalation_domain_wait_minutes=90)
    pair = PairFactory(campaign=campaign, task_category="math")
    escalation = escalation_open(pair=pair, reason=Escalation.Reason.MANUAL, detail="look")
    assert escalation is not None and escalation.open_to_all_at is not None
    assert list(escalation_queue(viewer=generalist)) == []

    assert experts_notify(escalation_id=escalation.pk) == 1
    assert [message.to for message in mail.outbox] == [["maths-expert@example.org"]]
    # The same task is scheduled for the end of the wait, to tell the others then.
    assert sent == [
        ("reviewers.notify_experts", (escalation.pk,), {"eta": escalation.open_to_all_at})
    ]

    # At the end of the wait (past the hourly slot too): the generalist now, with the escalation
    # counted; not the mathematician again, whose first e-mail counted it already.
    later = escalation.open_to_all_at + timedelta(seconds=1)
    assert experts_notify(escalation_id=escalation.pk, now=later) == 1
    assert [message.to for message in mail.outbox[1:]] == [["generalist@example.org"]]
    assert "1 escalation waiting" in mail.outbox[1].subject
    assert len(sent) == 1  # nothing more to schedule


def test_an_expert_is_not_counted_escalations_still_reserved_for_another_domain(monkeypatch):
    monkeypatch.setattr(current_app, "send_task", lambda name, args=(), **options: None)
    _expert("coder", ["code"])
    generalist = _expert("generalist", [])
    campaign = CampaignFactory(escalation_domain_wait_minutes=60)
    reserved = PairFactory(campaign=campaign, task_category="code")
    escalation_open(pair=reserved, reason=Escalation.Reason.MANUAL, detail="look")
    open_pair = PairFactory(campaign=campaign, task_category="")  # no category: open at once
    escalation = escalation_open(pair=open_pair, reason=Escalation.Reason.MANUAL, detail="look")
    assert escalation is not None
    mail.outbox.clear()
    experts_notify(escalation_id=escalation.pk)
    subjects = {message.to[0]: message.subject for message in mail.outbox}
    assert subjects[generalist.email] == "Arbiter: 1 escalation waiting"


def _change(user, pair, preference):
    assignment = Assignment.objects.get(pair=pair, annotator=user)
    shown = -preference if assignment.swapped else preference
    return label_change(assignment=assignment, data=LabelInput(preference=shown))


def test_an_undisputed_label_change_keeps_the_pending_retest():
    campaign = CampaignFactory(retest_share=1.0)
    users = UserFactory.create_batch(3)
    pair = judged_pair(campaign, [1, 1, 1], users=users)
    assert pair.status == Pair.Status.IN_ANNOTATION and pair.slot_cap == 4  # re-test waits
    _change(users[0], pair, 2)  # still unanimous: nothing to dispute
    pair.refresh_from_db()
    assert (pair.status, pair.slots_taken, pair.slot_cap) == (Pair.Status.IN_ANNOTATION, 3, 4)
    assert pair.consensus_preference is not None  # the verdict is stored all the same
    retest = assignment_next(campaign=campaign, annotator=UserFactory())
    assert retest is not None and retest.kind == Assignment.Kind.RETEST


def test_a_retest_handed_out_when_a_label_changes_is_not_lost_if_its_lease_ends():
    from annotation.services.assignments import assignment_skip

    campaign = CampaignFactory(retest_share=1.0)
    users = UserFactory.create_batch(3)
    pair = judged_pair(campaign, [1, 1, 1], users=users)
    first_retester = UserFactory()
    retest = assignment_next(campaign=campaign, annotator=first_retester)
    assert retest is not None and retest.kind == Assignment.Kind.RETEST
    _change(users[0], pair, 2)  # every slot taken: the pair settles complete
    pair.refresh_from_db()
    assert pair.status == Pair.Status.COMPLETE
    assignment_skip(assignment=retest)  # the re-tester gives the slot back
    pair.refresh_from_db()
    assert (pair.status, pair.slots_taken, pair.slot_cap) == (Pair.Status.IN_ANNOTATION, 3, 4)
    again = assignment_next(campaign=campaign, annotator=UserFactory())
    assert again is not None and again.pair_id == pair.pk
    assert again.kind == Assignment.Kind.RETEST


def test_a_label_change_with_no_free_slot_still_completes_the_pair():
    campaign = CampaignFactory(retest_share=0.0)
    users = UserFactory.create_batch(3)
    pair = judged_pair(campaign, [1, 1, 1], users=users)
    assert pair.status == Pair.Status.COMPLETE
    _change(users[0], pair, 2)
    pair.refresh_from_db()
    assert pair.status == Pair.Status.COMPLETE


def test_the_expert_review_marks_a_set_aside_label_as_not_counted(client):
    campaign = CampaignFactory(annotators_per_pair=3)
    pair = PairFactory(campaign=campaign)
    quarantined = user_with_role("qq")
    a, b, c = (user_with_role(name) for name in ("aa", "bb", "cc"))
    judge(campaign, quarantined, 2)
    member = member_add(campaign=campaign, user=quarantined)
    assert member_quarantine(member=member, reason="test") == 1
    for user, preference in ((a, 1), (b, -1), (c, 0)):
        judge(campaign, user, preference)
    pair.refresh_from_db()
    assert pair.status == Pair.Status.ESCALATED  # no majority among the 3 counted labels
    escalation = Escalation.objects.get(pair=pair)
    expert = user_with_role("ex", Role.EXPERT)

    body = api_client_for(expert).get(reverse("api-escalation-detail", args=[escalation.pk])).json()
    kinds = [(label["preference"], label["kind"]) for label in body["labels"]]
    assert kinds == [(2, "set aside"), (1, ""), (-1, ""), (0, "")]

    client.force_login(expert)  # the page too: the same entries, marked
    page = client.get(reverse("escalation-review", args=[escalation.pk])).content.decode()
    assert "set aside" in page and "not counted" in page


def test_the_report_omits_an_annotator_quarantined_only_before_the_period(client, admin_user):
    campaign = CampaignFactory()
    old = user_with_role("old-timer")
    member = member_add(campaign=campaign, user=old)
    with time_machine.travel(timezone.now() - timedelta(days=5), tick=False):
        member_quarantine(member=member, reason="test")
    with time_machine.travel(timezone.now() - timedelta(days=4), tick=False):
        member.refresh_from_db()
        assert member_restore(member=member)
    client.force_login(admin_user)
    today = timezone.localdate().isoformat()
    response = client.get(
        reverse("annotator-report"), {"format": "csv", "start": today, "end": today}
    )
    rows = {row["username"]: row for row in csv.DictReader(io.StringIO(response.content.decode()))}
    assert "old-timer" not in rows, rows.get("old-timer")
    # Over the days it was quarantined, it is listed.
    start = (timezone.localdate() - timedelta(days=6)).isoformat()
    response = client.get(
        reverse("annotator-report"), {"format": "csv", "start": start, "end": today}
    )
    rows = {row["username"]: row for row in csv.DictReader(io.StringIO(response.content.decode()))}
    assert float(rows["old-timer"]["quarantine_seconds"]) > 0


def test_the_queue_page_answers_400_to_a_nul_in_the_domain_filter(client):
    expert = user_with_role("ex", Role.EXPERT)
    client.force_login(expert)
    client.raise_request_exception = False
    response = client.get(reverse("expert-queue"), {"domain": "ma\x00th"})
    assert response.status_code == 400
    assert client.get(reverse("expert-queue"), {"domain": " math "}).status_code == 200
