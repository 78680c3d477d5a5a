"""Review 18: the length limits of typed text (a rewrite, a rationale) count a line break as
one character, as a textarea's maxlength does. A browser posts a textarea's lines joined by
CRLF, and a rewrite is stored with the original's line breaks; the form, the label API and
the service counted CRLF as two, so a text typed to the limit was refused."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Assignment, Label, Rewrite
from annotation.services.assignments import assignment_next
from annotation.services.labels import RATIONALE_MAX_CHARS
from annotation.services.rewrites import REWRITE_MAX_CHARS, InvalidRewrite, rewrite_by_expert
from core.text import typed_length
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory

pytestmark = pytest.mark.django_db

LINES = 1_000


def _text_of(length: int, *, line_break: str) -> str:
    """A text of ``length`` characters (a line break counted as one), in LINES lines."""
    body = length - (LINES - 1)
    lines = [("x" * (body // LINES + (1 if n < body % LINES else 0))) for n in range(LINES)]
    return line_break.join(lines)


def _leased(campaign, annotator) -> Assignment:  # noqa: ANN001
    assignment = assignment_next(campaign=campaign, annotator=annotator)
    assert assignment is not None
    return assignment


def _shown_a(assignment: Assignment) -> str:
    return "b" if assignment.swapped else "a"


def _form_post(client, assignment: Assignment, text: str):  # noqa: ANN001, ANN202
    return client.post(
        reverse("assignment-label", args=[assignment.pk]),
        {
            "preference": str(-1 if assignment.swapped else 1),
            "rewrite_text": text,
            "rewrite_based_on": _shown_a(assignment),
        },
        headers={"HX-Request": "true"},
    )


def test_a_rewrite_at_the_limit_typed_in_the_browser_is_stored(client, annotator_a):
    campaign = CampaignFactory(allow_rewrites=True)
    PairFactory(campaign=campaign, response_a="Line one.\nLine two.")
    assignment = _leased(campaign, annotator_a)
    client.force_login(annotator_a)
    posted = _text_of(REWRITE_MAX_CHARS, line_break="\r\n")  # as the browser posts it
    assert len(posted) == REWRITE_MAX_CHARS + LINES - 1

    page = _form_post(client, assignment, posted)

    assert page.status_code == 200, page.content.decode()[:2000]
    stored = Rewrite.objects.get(label__assignment=assignment).text
    assert stored == posted.replace("\r\n", "\n") and len(stored) == REWRITE_MAX_CHARS


def test_one_character_over_is_refused_by_the_form_and_nothing_is_stored(client, annotator_a):
    campaign = CampaignFactory(allow_rewrites=True)
    PairFactory(campaign=campaign, response_a="Line one.\nLine two.")
    assignment = _leased(campaign, annotator_a)
    client.force_login(annotator_a)

    page = _form_post(client, assignment, _text_of(REWRITE_MAX_CHARS + 1, line_break="\r\n"))

    assert page.status_code == 422
    assert f"at most {REWRITE_MAX_CHARS:,} characters" in page.content.decode()
    assert not Label.objects.exists() and not Rewrite.objects.exists()
    # The textarea's maxlength is the same limit, counted as the browser counts it.
    assert f'maxlength="{REWRITE_MAX_CHARS}"' in page.content.decode()


def test_the_service_counts_a_line_break_as_one_however_it_is_stored(expert):
    """The service's own check (the label API's, the expert's) counts as the form does: a
    CRLF original's rewrite is stored with CRLF, and its limit still counts each as one."""
    campaign = CampaignFactory(allow_rewrites=True)
    pair = PairFactory(campaign=campaign, response_a="Line one.\r\nLine two.")
    at_the_limit = _text_of(REWRITE_MAX_CHARS, line_break="\r\n")

    rewrite = rewrite_by_expert(pair=pair, expert=expert, text=at_the_limit, based_on="a")

    assert rewrite.text == at_the_limit
    with pytest.raises(InvalidRewrite, match="at most"):
        rewrite_by_expert(
            pair=pair,
            expert=expert,
            text=_text_of(REWRITE_MAX_CHARS + 1, line_break="\r\n"),
            based_on="a",
        )


def test_the_label_api_takes_a_rewrite_at_the_limit_with_crlf_line_breaks(annotator_a):
    campaign = CampaignFactory(allow_rewrites=True)
    PairFactory(campaign=campaign, response_a="Line one.\nLine two.")
    assignment = _leased(campaign, annotator_a)
    client = api_client_for(annotator_a)
    url = f"/api/assignments/{assignment.pk}/label"

    def rewrite(length: int) -> dict:
        text = _text_of(length, line_break="\r\n")
        return {"preference": 1, "rewrite": {"text": text, "based_on": _shown_a(assignment)}}

    over = client.post(url, rewrite(REWRITE_MAX_CHARS + 1), "json")
    assert over.status_code == 400, over.content
    assert f"at most {REWRITE_MAX_CHARS:,} characters" in over.content.decode()
    assert not Label.objects.exists()

    stored = client.post(url, rewrite(REWRITE_MAX_CHARS), "json")
    assert stored.status_code == 201, stored.content[:500]
    assert len(Rewrite.objects.get(label__assignment=assignment).text) == REWRITE_MAX_CHARS


def test_a_rationale_at_the_limit_typed_in_the_browser_is_stored(client, annotator_a):
    campaign = CampaignFactory()
    PairFactory(campaign=campaign)
    assignment = _leased(campaign, annotator_a)
    client.force_login(annotator_a)

    def post(rationale: str):  # noqa: ANN202
        return client.post(
            reverse("assignment-label", args=[assignment.pk]),
            {"preference": str(-1 if assignment.swapped else 1), "rationale": rationale},
            headers={"HX-Request": "true"},
        )

    over = post(_text_of(RATIONALE_MAX_CHARS + 1, line_break="\r\n"))
    assert over.status_code == 422
    assert f"At most {RATIONALE_MAX_CHARS:,} characters." in over.content.decode()
    assert f'maxlength="{RATIONALE_MAX_CHARS}"' in over.content.decode()
    assert not Label.objects.exists()

    at_the_limit = _text_of(RATIONALE_MAX_CHARS, line_break="\r\n")
    assert len(at_the_limit) > RATIONALE_MAX_CHARS  # as posted
    assert post(at_the_limit).status_code == 200
    assert typed_length(Label.objects.get(assignment=assignment).rationale) == RATIONALE_MAX_CHARS
