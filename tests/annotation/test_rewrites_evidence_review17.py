"""Review 17: what a label carries besides its side (rewrites, the label API's lists) and how
often it may change."""

from __future__ import annotations

import orjson
import pytest
from django.urls import reverse

from annotation.errors import LabelLocked
from annotation.models import Assignment, Label, Rewrite
from annotation.roles import Role, role_groups
from annotation.services.assignments import assignment_next
from annotation.services.labels import (
    LABEL_CHANGES_MAX,
    LabelInput,
    label_change,
    label_submit,
)
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import user_with_role

pytestmark = pytest.mark.django_db


def _shown(assignment: Assignment, side: str) -> str:
    """The canonical side as the annotator was shown it."""
    return {"a": "b", "b": "a"}[side] if assignment.swapped else side


def _label_url(assignment: Assignment) -> str:
    return f"/api/assignments/{assignment.pk}/label"


@pytest.fixture
def rewriting(db):
    return CampaignFactory(allow_rewrites=True)


def test_the_api_keeps_a_rewrite_as_written_and_refuses_unknown_fields_in_it(
    rewriting, annotator_a
):
    """DRF trimmed the text (an indented code block lost its indentation, the answer its last
    newline; the workspace form keeps both), and dropped a misspelt key of the rewrite."""
    PairFactory(campaign=rewriting, response_a="def f():\n    return 1\n")
    assignment = assignment_next(campaign=rewriting, annotator=annotator_a)
    client = api_client_for(annotator_a)
    text = "    def f():\n        return 2\n"
    rewrite = {"text": text, "based_on": _shown(assignment, "a")}

    refused = client.post(
        _label_url(assignment), {"preference": 1, "rewrite": {**rewrite, "basedon": "b"}}, "json"
    )
    assert refused.status_code == 400
    assert refused.json()["code"] == "unknown_field"
    assert "basedon" in refused.json()["detail"]

    stored = client.post(_label_url(assignment), {"preference": 1, "rewrite": rewrite}, "json")
    assert stored.status_code == 201, stored.content
    assert list(Rewrite.objects.values_list("text", "based_on")) == [(text, "a")]


def test_a_workspace_rewrite_keeps_the_original_s_line_breaks(client, rewriting, annotator_a):
    """A browser posts a textarea's lines joined by CRLF: the stored rewrite had them, so every
    exported (rewrite ≻ original) row differed from its original in line endings too."""
    PairFactory(campaign=rewriting, response_a="Step one.\nStep two.")
    assignment = assignment_next(campaign=rewriting, annotator=annotator_a)
    client.force_login(annotator_a)

    response = client.post(
        reverse("assignment-label", args=[assignment.pk]),
        {
            "preference": str(-1 if assignment.swapped else 1),
            "rewrite_text": "Step one.\r\nStep two, done right.",
            "rewrite_based_on": _shown(assignment, "a"),
        },
    )

    assert response.status_code in (200, 302)
    assert list(Rewrite.objects.values_list("text", flat=True)) == [
        "Step one.\nStep two, done right."
    ]
    # An original written with CRLF gets its rewrite's lines joined as it joins its own.
    crlf = PairFactory(campaign=rewriting, response_a="Step one.\r\nStep two.")
    assignment = assignment_next(campaign=rewriting, annotator=annotator_a)
    assert assignment.pair_id == crlf.pk
    rewrite = {"text": "Step one.\nStep two, done right.", "based_on": _shown(assignment, "a")}
    stored = api_client_for(annotator_a).post(
        _label_url(assignment), {"preference": 1, "rewrite": rewrite}, "json"
    )
    assert stored.status_code == 201, stored.content
    assert Rewrite.objects.get(pair=crlf).text == "Step one.\r\nStep two, done right."


def test_an_unchanged_copy_of_the_response_is_no_rewrite(client, rewriting, annotator_a):
    """Choosing a response copies it into the box; submitting it as it was stored (X ≻ X), an
    export row whose chosen and rejected are one answer, and took a "both bad" pair out of the
    rewrite queue. It is refused now, the label with it, and nothing is stored."""
    PairFactory(campaign=rewriting, response_a="Step one.\nStep two.", response_b="Other.")
    assignment = assignment_next(campaign=rewriting, annotator=annotator_a)
    client.force_login(annotator_a)
    shown_a = _shown(assignment, "a")

    page = client.post(
        reverse("assignment-label", args=[assignment.pk]),
        {
            "preference": "both_bad",
            "rewrite_text": "Step one.\r\nStep two.\r\n",  # as the browser posts the copy
            "rewrite_based_on": shown_a,
        },
    )
    assert page.status_code == 422
    assert "unchanged" in page.content.decode()

    api = api_client_for(annotator_a).post(
        _label_url(assignment),
        {"outcome": "both_bad", "rewrite": {"text": " Step two.", "based_on": shown_a}},
        "json",
    )
    assert api.status_code == 201  # another text is a rewrite (and the label goes in)
    unchanged = api_client_for(annotator_a).put(
        _label_url(assignment),
        {"outcome": "both_bad", "rewrite": {"text": "Step one.\nStep two.", "based_on": shown_a}},
        "json",
    )
    assert unchanged.status_code == 400
    assert unchanged.json()["code"] == "invalid_rewrite"
    # The refused change changed nothing: the label and its rewrite are as they were.
    assert list(Rewrite.objects.values_list("text", flat=True)) == [" Step two."]
    assert Label.objects.get(assignment=assignment).history is None


def test_an_expert_s_rewrite_is_not_withdrawn_by_a_change_of_their_own_label(rewriting):
    """Someone who both labels and reviews wrote the same text as an expert that their label
    carried: the expert's 201 named the label's row, which the label's next change deleted."""
    person = user_with_role("both", Role.ANNOTATOR)
    person.groups.add(role_groups()[Role.EXPERT])
    pair = PairFactory(campaign=rewriting)
    assignment = assignment_next(campaign=rewriting, annotator=person)
    client = api_client_for(person)
    rewrite = {"text": "A better answer.", "based_on": _shown(assignment, "a")}
    labelled = client.post(_label_url(assignment), {"preference": 1, "rewrite": rewrite}, "json")
    assert labelled.status_code == 201, labelled.content

    expert = client.post(
        f"/api/pairs/{pair.pk}/rewrites", {"text": "A better answer.", "based_on": "a"}, "json"
    )
    assert expert.status_code == 201, expert.content
    assert client.put(_label_url(assignment), {"preference": 1}, "json").status_code == 200

    (kept,) = Rewrite.objects.all()
    assert (kept.pk, kept.label_id, kept.text) == (expert.json()["id"], None, "A better answer.")


def test_a_label_changes_at_most_label_changes_max_times(campaign, annotator_a):
    """Each change rewrites the label's whole history, which keeps what it replaced: unbounded,
    a grace period of requests grew one row without limit, each write dearer than the last."""
    PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)
    label_submit(assignment=assignment, data=LabelInput(preference=1))
    for n in range(LABEL_CHANGES_MAX):
        label_change(assignment=assignment, data=LabelInput(preference=1 if n % 2 else -1))

    with pytest.raises(LabelLocked, match="changed"):
        label_change(assignment=assignment, data=LabelInput(preference=2))
    response = api_client_for(annotator_a).put(_label_url(assignment), {"preference": 2}, "json")

    assert response.status_code == 409
    assert response.json()["code"] == "label_locked"
    label = Label.objects.get(assignment=assignment)
    assert (len(label.history), abs(label.preference)) == (LABEL_CHANGES_MAX, 1)  # not 2


@pytest.mark.parametrize(
    "body",
    [
        # Each about 2 MB, well under the 16 MiB bound of a JSON body.
        {"ranking": [["x"] * 300_000]},
        {"preference": 1, "flags": ["x"] * 200_000},
        {"preference": 1, "aspect_ratings": {f"k{n}": "x" for n in range(100_000)}},
        {"preference": 1, "aspect_ratings": {"k": {f"s{n}": "x" for n in range(100_000)}}},
    ],
)
def test_a_label_s_lists_are_refused_at_their_first_fault_not_item_by_item(annotator_a, body):
    """DRF validated every item and answered an error for each: a 2 MB body took seconds of
    CPU and came back as a 400 of several megabytes (12 MB for the ranking)."""
    ranking = "ranking" in body
    campaign = CampaignFactory(item_kind="ranking" if ranking else "pair")
    responses = [{"content": f"r{n}"} for n in range(3)] if ranking else None
    PairFactory(campaign=campaign, responses=responses)
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)

    response = api_client_for(annotator_a).post(
        _label_url(assignment), orjson.dumps(body), content_type="application/json"
    )

    assert response.status_code == 400
    assert len(response.content) < 500, response.content[:500]
    assert not Label.objects.exists()
