"""The expert's page for a ranking item: every response numbered as imported, the annotators'
rankings in those numbers, and a ranking as the decision."""

from __future__ import annotations

from django.urls import reverse

from annotation.importers import content_hash
from annotation.models import ItemKind, Pair
from reviewers.models import Adjudication, Escalation
from reviewers.services.escalations import escalation_claim
from tests.factories import CampaignFactory, PairFactory


def escalated_item(db):  # noqa: ANN001, ANN201
    campaign = CampaignFactory(item_kind=ItemKind.RANKING)
    conversation = [{"role": "user", "content": "Rank them."}]
    item = PairFactory(
        campaign=campaign,
        conversation=conversation,
        responses=[{"content": f"reply number {k}", "model": ""} for k in range(4)],
        content_hash=content_hash(conversation, "review", "page"),
        status=Pair.Status.ESCALATED,
    )
    return Escalation.objects.create(campaign=campaign, pair=item, reason="no_majority")


def test_an_expert_reads_every_response_and_decides_a_ranking(db, client, expert):
    escalation = escalated_item(db)
    escalation_claim(escalation=escalation, expert=expert)
    client.force_login(expert)
    page = client.get(reverse("escalation-review", args=[escalation.pk])).content.decode()
    for k in range(4):
        assert f"reply number {k}" in page
    assert 'name="ranking"' in page and "Decide the ranking below" in page

    url = reverse("escalation-adjudicate", args=[escalation.pk])
    bad = client.post(
        url, {"verdict": "ranking", "ranking": "2 > 1 = 3", "note": "n"}, HTTP_HX_REQUEST="true"
    )
    assert "Rank each of the responses 1 to 4 once (missing: 4)." in bad.content.decode()
    words = client.post(
        url, {"verdict": "ranking", "ranking": "best is 2", "note": "n"}, HTTP_HX_REQUEST="true"
    )
    assert "with &#x27;&gt;&#x27; and &#x27;=&#x27; only" in words.content.decode()
    assert not Adjudication.objects.exists()
    client.post(url, {"verdict": "ranking", "ranking": "2 > 1 = 3 > 4", "note": "2 is right"})
    adjudication = Adjudication.objects.get()
    assert adjudication.ranking == [[1], [0, 2], [3]]
    escalation.pair.refresh_from_db()
    assert escalation.pair.status == Pair.Status.RESOLVED
    assert escalation.pair.consensus_ranking == [[1], [0, 2], [3]]
