"""Review 18: an expert's decision note typed to its textarea's limit is taken. The browser
posts a textarea's lines joined by CRLF and its maxlength counts each as one; the form, the
API and the service counted CRLF as two, so a note typed to the limit was refused."""

from __future__ import annotations

import pytest
from django.urls import reverse

from core.text import typed_length
from reviewers.models import Adjudication
from reviewers.services.adjudications import ADJUDICATION_NOTE_MAX_CHARS
from tests.conftest import api_client_for
from tests.reviewers.test_expert_flow_review16 import _open_escalation

pytestmark = pytest.mark.django_db


def _typed(length: int) -> str:
    """``length`` characters as typed (a line break one), posted with CRLF line breaks."""
    text = "\r\n".join(["x" * 99] * (length // 100))  # 100 k - 1 characters as typed
    text += "y" * (length - typed_length(text))
    assert typed_length(text) == length and len(text) > length
    return text


def test_the_review_page_takes_a_note_at_the_limit_with_crlf_line_breaks(client, expert):
    escalation = _open_escalation()
    client.force_login(expert)
    client.post(reverse("escalation-claim", args=[escalation.pk]))
    url = reverse("escalation-adjudicate", args=[escalation.pk])

    over = client.post(
        url,
        {"verdict": "1", "note": _typed(ADJUDICATION_NOTE_MAX_CHARS + 1)},
        HTTP_HX_REQUEST="true",
    )
    assert f"At most {ADJUDICATION_NOTE_MAX_CHARS:,} characters." in over.content.decode()
    assert f'maxlength="{ADJUDICATION_NOTE_MAX_CHARS}"' in over.content.decode()
    assert not Adjudication.objects.exists()

    note = _typed(ADJUDICATION_NOTE_MAX_CHARS)
    client.post(url, {"verdict": "1", "note": note}, HTTP_HX_REQUEST="true")
    assert typed_length(Adjudication.objects.get().note) == ADJUDICATION_NOTE_MAX_CHARS


def test_the_api_takes_a_note_at_the_limit_with_crlf_line_breaks(expert):
    escalation = _open_escalation()
    api = api_client_for(expert)
    assert api.post(f"/api/escalations/{escalation.pk}/claim").status_code == 200
    url = f"/api/escalations/{escalation.pk}/adjudicate"
    body = {"decision": "preference", "preference": 1}

    over = api.post(url, {**body, "note": _typed(ADJUDICATION_NOTE_MAX_CHARS + 1)}, format="json")
    assert over.status_code == 400
    assert f"at most {ADJUDICATION_NOTE_MAX_CHARS:,} characters" in over.content.decode()

    ok = api.post(url, {**body, "note": _typed(ADJUDICATION_NOTE_MAX_CHARS)}, format="json")
    assert ok.status_code == 201, ok.content[:300]
