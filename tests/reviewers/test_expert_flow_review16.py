"""Review 16 of the expert flow: a claim expiring while the expert writes, the API's bounds on
a decision, a ranking item read through the detail API, and the flow under real concurrency."""

from __future__ import annotations

import functools
import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, connections
from django.urls import reverse
from django.utils import timezone

from annotation.importers import content_hash
from annotation.models import Assignment, ItemKind, Label, Pair
from annotation.roles import Role
from reviewers.errors import AlreadyDecided, ClaimRequired
from reviewers.models import Adjudication, Escalation
from reviewers.services.adjudications import adjudication_resolve
from reviewers.services.escalations import escalation_claim, escalation_open
from tests.conftest import api_client_for, run_concurrently
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import user_with_role

# The page's form takes notes up to this long (reviewers/forms.py AdjudicationForm.note).
ADJUDICATION_NOTE_MAX_CHARS = 20_000
NOTE = "Response A cites the 2019 paper correctly; B invents a table."


def _open_escalation(campaign=None) -> Escalation:
    pair = PairFactory(campaign=campaign or CampaignFactory())
    escalation = escalation_open(pair=pair, reason=Escalation.Reason.MANUAL, detail="look")
    assert escalation is not None
    return escalation


@pytest.mark.django_db
def test_a_claim_expiring_while_the_expert_writes_keeps_their_decision_and_note(client, expert):
    escalation = _open_escalation()
    client.force_login(expert)
    client.post(reverse("escalation-claim", args=[escalation.pk]))
    url = reverse("escalation-adjudicate", args=[escalation.pk])
    with time_machine.travel(timezone.now() + timedelta(minutes=45)):
        panel = client.post(url, {"verdict": "1", "note": NOTE}, HTTP_HX_REQUEST="true")
        text = panel.content.decode()
        # Nobody else took the pair: the claim is the expert's again and the form keeps what
        # they wrote, to record with one more click.
        assert NOTE in text
        assert "checked" in text
        assert not Adjudication.objects.exists()
        escalation.refresh_from_db()
        assert escalation.claimed_by_id == expert.pk
        client.post(url, {"verdict": "1", "note": NOTE}, HTTP_HX_REQUEST="true")
    adjudication = Adjudication.objects.get()
    assert adjudication.note == NOTE and adjudication.preference == 1


@pytest.mark.django_db
def test_a_plain_post_after_the_claim_expired_shows_the_note_again(client, expert):
    escalation = _open_escalation()
    client.force_login(expert)
    client.post(reverse("escalation-claim", args=[escalation.pk]))
    url = reverse("escalation-adjudicate", args=[escalation.pk])
    with time_machine.travel(timezone.now() + timedelta(minutes=45)):
        page = client.post(url, {"verdict": "-1", "note": NOTE}, follow=True)
    assert NOTE in page.content.decode()
    assert not Adjudication.objects.exists()


@pytest.mark.django_db
def test_a_note_lost_to_another_experts_claim_is_shown_back_unrecorded(client, expert):
    escalation = _open_escalation()
    rival = user_with_role("rival", Role.EXPERT)
    client.force_login(expert)
    client.post(reverse("escalation-claim", args=[escalation.pk]))
    url = reverse("escalation-adjudicate", args=[escalation.pk])
    with time_machine.travel(timezone.now() + timedelta(minutes=45)):
        escalation_claim(escalation=escalation, expert=rival)
        panel = client.post(url, {"verdict": "1", "note": NOTE}, HTTP_HX_REQUEST="true")
    text = panel.content.decode()
    assert NOTE in text and "not recorded" in text
    assert not Adjudication.objects.exists()
    escalation.refresh_from_db()
    assert escalation.claimed_by_id == rival.pk


@pytest.mark.django_db
def test_the_api_refuses_a_note_longer_than_the_page_takes_storing_nothing(expert):
    escalation = _open_escalation()
    api = api_client_for(expert)
    assert api.post(f"/api/escalations/{escalation.pk}/claim").status_code == 200
    body = {"decision": "preference", "preference": 1}
    url = f"/api/escalations/{escalation.pk}/adjudicate"
    huge = api.post(url, {**body, "note": "x" * (ADJUDICATION_NOTE_MAX_CHARS + 1)}, format="json")
    assert huge.status_code == 400, huge.content
    assert not Adjudication.objects.exists()
    escalation.pair.refresh_from_db()
    assert escalation.pair.status == Pair.Status.ESCALATED
    with pytest.raises(Exception, match="note"):
        adjudication_resolve(
            escalation=escalation,
            expert=expert,
            decision="preference",
            preference=1,
            note="y" * (ADJUDICATION_NOTE_MAX_CHARS + 1),
        )
    assert not Adjudication.objects.exists()
    ok = api.post(url, {**body, "note": "x" * ADJUDICATION_NOTE_MAX_CHARS}, format="json")
    assert ok.status_code == 201


RANKINGS = ([[3], [2], [1], [0]], [[0], [1], [2], [3]])


def _ranking_item(annotators) -> Escalation:
    campaign = CampaignFactory(item_kind=ItemKind.RANKING)
    conversation = [{"role": "user", "content": "Rank them."}]
    item = PairFactory(
        campaign=campaign,
        conversation=conversation,
        response_a="reply number 0",
        response_b="reply number 1",
        responses=[{"content": f"reply number {k}", "model": f"m{k}"} for k in range(4)],
        content_hash=content_hash(conversation, "api", "ranking"),
        status=Pair.Status.ESCALATED,
    )
    now = timezone.now()
    for annotator, ranking in zip(annotators, RANKINGS, strict=True):
        assignment = Assignment.objects.create(
            campaign=campaign,
            pair=item,
            annotator=annotator,
            status=Assignment.Status.SUBMITTED,
            swapped=False,
            leased_at=now,
            lease_expires_at=now + timedelta(minutes=15),
            finished_at=now,
            display_order=[0, 1, 2, 3],
        )
        Label.objects.create(
            assignment=assignment,
            campaign=campaign,
            pair=item,
            annotator=annotator,
            preference=-1 if ranking[0] == [3] else 1,
            ranking=ranking,
        )
    return Escalation.objects.create(campaign=campaign, pair=item, reason="opposite_directions")


@pytest.mark.django_db
def test_the_detail_api_gives_a_ranking_item_every_response_and_each_labels_ranking(expert):
    annotators = [user_with_role(name) for name in ("una", "vic")]
    escalation = _ranking_item(annotators)
    api = api_client_for(expert)
    detail = api.get(f"/api/escalations/{escalation.pk}").json()
    # Deciding a ranking by the API needs what the page shows: all K responses, as imported
    # (without model names, as annotators saw them), and how each annotator ranked them.
    assert [r["content"] for r in detail["responses"]] == [f"reply number {k}" for k in range(4)]
    assert "m2" not in str(detail["responses"])
    assert [label["ranking"] for label in detail["labels"]] == [
        [[3], [2], [1], [0]],
        [[0], [1], [2], [3]],
    ]
    assert api.post(f"/api/escalations/{escalation.pk}/claim").status_code == 200
    decided = api.post(
        f"/api/escalations/{escalation.pk}/adjudicate",
        {"decision": "preference", "ranking": [[2], [0, 1], [3]], "note": "2 is right"},
        format="json",
    )
    assert decided.status_code == 201
    assert decided.json()["ranking"] == [[2], [0, 1], [3]]
    again = api.get(f"/api/escalations/{escalation.pk}").json()
    assert again["adjudication"]["ranking"] == [[2], [0, 1], [3]]


@pytest.mark.django_db
def test_a_pair_escalation_answers_responses_null(expert):
    escalation = _open_escalation()
    detail = api_client_for(expert).get(f"/api/escalations/{escalation.pk}").json()
    assert detail["responses"] is None


@pytest.mark.django_db(transaction=True)
def test_two_experts_racing_claim_then_decide_record_exactly_one_decision():
    if connection.vendor != "postgresql":
        pytest.skip("needs real concurrent transactions (PostgreSQL)")
    escalation = _open_escalation()
    experts = [user_with_role(f"racer{i}", Role.EXPERT) for i in range(6)]
    start = threading.Barrier(len(experts))
    outcomes: list[str] = []

    def claim_and_decide(expert):
        try:
            start.wait(timeout=30)
            row = Escalation.objects.get(pk=escalation.pk)
            try:
                escalation_claim(escalation=row, expert=expert)
            except Exception as error:  # noqa: BLE001 - the loser's refusal, recorded
                outcomes.append(type(error).__name__)
                return
            adjudication_resolve(
                escalation=row, expert=expert, decision="discard", note=f"by {expert.pk}"
            )
            outcomes.append("decided")
        finally:
            connections.close_all()

    run_concurrently([functools.partial(claim_and_decide, e) for e in experts], timeout=60)
    assert outcomes.count("decided") == 1
    assert Adjudication.objects.count() == 1
    escalation.pair.refresh_from_db()
    assert escalation.pair.status == Pair.Status.DISCARDED


@pytest.mark.django_db
def test_a_claim_expiring_between_claim_and_decision_is_refused_storing_nothing(expert):
    escalation = _open_escalation()
    escalation_claim(escalation=escalation, expert=expert)
    later = timezone.now() + timedelta(minutes=31)
    with pytest.raises(ClaimRequired):
        adjudication_resolve(
            escalation=escalation, expert=expert, decision="discard", note="x", now=later
        )
    assert not Adjudication.objects.exists()
    escalation.pair.refresh_from_db()
    assert escalation.pair.status == Pair.Status.ESCALATED
    with pytest.raises(AlreadyDecided):
        escalation.status = Escalation.Status.RESOLVED
        Escalation.objects.filter(pk=escalation.pk).update(status=Escalation.Status.RESOLVED)
        adjudication_resolve(escalation=escalation, expert=expert, decision="discard", note="x")


@pytest.mark.browser
def test_in_the_browser_a_lapsed_claim_keeps_the_typed_note_for_one_more_click(
    page, browser_context, live_server, watched
):
    from tests.browser_support import log_in_with_session

    expert = user_with_role("erin", Role.EXPERT)
    log_in_with_session(browser_context, live_server, expert)
    escalation = _open_escalation()
    page.goto(f"{live_server.url}/experts/queue/")
    page.get_by_role("button", name=f"Pair {escalation.pair_id}").click()  # opens and claims
    page.get_by_role("button", name="Record final decision").wait_for()
    page.keyboard.press("2")  # A better
    page.keyboard.press("r")
    page.keyboard.type(NOTE)
    # The expert took longer than the claim lasts.
    Escalation.objects.filter(pk=escalation.pk).update(
        claim_expires_at=timezone.now() - timedelta(minutes=1)
    )
    page.keyboard.press("Control+Enter")
    page.get_by_text("Your claim had expired").wait_for()
    assert page.locator("textarea[name=note]").input_value() == NOTE
    assert not Adjudication.objects.exists()
    page.get_by_role("button", name="Record final decision").click()
    page.get_by_text("This decision is final").wait_for()
    adjudication = Adjudication.objects.get()
    assert (adjudication.preference, adjudication.note) == (1, NOTE)
    assert watched.page_errors == []
