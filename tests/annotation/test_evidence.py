"""What annotators searched, attached, ran and asked is kept with their label."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from annotation.models import Assignment, CodeRun, Evidence
from annotation.services.corpus import DocumentInput, corpus_load
from annotation.services.labels import LabelInput, label_submit
from annotation.services.tools import evidence_summary
from tests.annotation.tools_helpers import open_assignment
from tests.conftest import api_client_for

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def documents():
    return corpus_load(
        name="facts",
        documents=[
            DocumentInput(
                title="Great Wall of China",
                body="It is not visible to the naked eye from the Moon.",
                source="https://en.wikipedia.org/wiki/Great_Wall_of_China",
                attribution="Wikipedia contributors, CC BY-SA 4.0",
            ),
            DocumentInput(title="Moon", body="Earth's only natural satellite."),
        ],
    ).corpus


@pytest.fixture
def assignment(campaign, annotator_a):
    return open_assignment(campaign, annotator_a)


@pytest.mark.smoke
def test_a_search_for_an_open_assignment_is_recorded(documents, assignment, annotator_a):
    response = api_client_for(annotator_a).get(
        "/api/tools/search", {"q": "great wall moon", "k": 5, "assignment": assignment.pk}
    )
    assert response.status_code == 200
    hits = response.json()["hits"]
    assert hits[0]["title"] == "Great Wall of China"
    assert "<mark>" in hits[0]["snippet"]
    [evidence] = Evidence.objects.filter(assignment=assignment)
    assert evidence.kind == Evidence.Kind.SEARCH
    assert evidence.payload["query"] == "great wall moon"
    assert [hit["title"] for hit in evidence.payload["hits"]] == [hit["title"] for hit in hits]
    assert evidence.payload["hits"][0]["id"] == hits[0]["document_id"]


def test_a_search_without_an_assignment_records_nothing(documents, annotator_a):
    response = api_client_for(annotator_a).get("/api/tools/search", {"q": "moon"})
    assert response.status_code == 200
    assert len(response.json()["hits"]) == 2
    assert not Evidence.objects.exists()


@pytest.mark.parametrize("query", ['"', "-moon", "OR AND", "a" * 3000])
def test_odd_queries_answer_200(documents, annotator_a, query):
    response = api_client_for(annotator_a).get("/api/tools/search", {"q": query, "k": 3})
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        assert isinstance(response.json()["hits"], list)


def test_tools_are_closed_to_people_without_a_role(documents, outsider):
    client = api_client_for(outsider)
    assert client.get("/api/tools/search", {"q": "moon"}).status_code == 403
    assert client.get("/api/tools/languages").status_code == 403


def test_someone_elses_assignment_is_not_found(documents, assignment, annotator_b):
    response = api_client_for(annotator_b).get(
        "/api/tools/search", {"q": "moon", "assignment": assignment.pk}
    )
    assert response.status_code == 404
    assert not Evidence.objects.exists()


def test_a_finished_or_expired_assignment_takes_no_evidence(documents, assignment, annotator_a):
    Assignment.objects.filter(pk=assignment.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    client = api_client_for(annotator_a)
    response = client.get("/api/tools/search", {"q": "moon", "assignment": assignment.pk})
    assert response.status_code == 409
    assert response.json()["code"] == "assignment_closed"
    response = client.post(
        "/api/tools/evidence", {"assignment": assignment.pk, "title": "x"}, format="json"
    )
    assert response.status_code == 409
    assert not Evidence.objects.exists()


@pytest.mark.smoke
def test_attaching_a_document_takes_its_facts_from_the_database(documents, assignment,
                                                                annotator_a):
    wall = documents.documents.get(title="Great Wall of China")
    response = api_client_for(annotator_a).post(
        "/api/tools/evidence",
        {
            "assignment": assignment.pk,
            "document_id": wall.pk,
            "title": "forged title",
            "source": "https://evil.example",
            "snippet": 'not <mark>visible</mark><script>alert(1)</script><img src=x onerror=a()>',
            "query": "great wall",
            "note": "B repeats the myth",
        },
        format="json",
    )
    assert response.status_code == 201
    evidence = Evidence.objects.get(pk=response.json()["id"])
    assert evidence.kind == Evidence.Kind.ATTACHED_RESULT
    payload = evidence.payload
    assert payload["title"] == "Great Wall of China"
    assert payload["source"] == "https://en.wikipedia.org/wiki/Great_Wall_of_China"
    assert payload["attribution"] == "Wikipedia contributors, CC BY-SA 4.0"
    assert payload["snippet"] == "not <mark>visible</mark>"
    assert payload["note"] == "B repeats the myth"


def test_attaching_an_unknown_document_is_refused(assignment, annotator_a):
    response = api_client_for(annotator_a).post(
        "/api/tools/evidence", {"assignment": assignment.pk, "document_id": 999999},
        format="json",
    )
    assert response.status_code == 400
    assert not Evidence.objects.exists()


@pytest.mark.smoke
def test_submitting_the_label_links_the_evidence_and_summarises_it(documents, assignment,
                                                                   annotator_a):
    client = api_client_for(annotator_a)
    client.get("/api/tools/search", {"q": "great wall", "assignment": assignment.pk})
    wall = documents.documents.get(title="Great Wall of China")
    client.post(
        "/api/tools/evidence",
        {"assignment": assignment.pk, "document_id": wall.pk, "note": "myth"},
        format="json",
    )
    run = CodeRun.objects.create(user=annotator_a, assignment=assignment, language="python",
                                 code="print(1)", status=CodeRun.Status.DONE)
    Evidence.objects.create(
        assignment=assignment,
        kind=Evidence.Kind.CODE_RUN,
        payload={"code_run_id": run.pk, "language": "python", "status": "done",
                 "result_status": "ok", "tests_outcome": "pass", "duration_ms": 41},
    )
    Evidence.objects.create(
        assignment=assignment,
        kind=Evidence.Kind.LLM,
        payload={"question": "Is the wall visible?", "answer": "No.", "model": "tiny"},
    )
    label = label_submit(
        assignment=assignment, data=LabelInput(preference=1, rationale="A is right: myth.")
    )
    assert set(label.evidence.values_list("kind", flat=True)) == {
        "search", "attached_result", "code_run", "llm"
    }
    summary = evidence_summary(label).splitlines()
    assert summary == [
        'Searched "great wall" (1 hits: Great Wall of China)',
        'Attached "Great Wall of China" <https://en.wikipedia.org/wiki/Great_Wall_of_China>'
        " — myth",
        "Ran python: ok, tests pass in 41 ms",
        'Asked tiny: "Is the wall visible?" → "No."',
    ]


def test_a_label_without_evidence_has_an_empty_summary(assignment):
    label = label_submit(assignment=assignment, data=LabelInput(preference=1))
    assert evidence_summary(label) == ""


# --- the htmx panel ---------------------------------------------------------------------------


def _page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.smoke
def test_the_panel_offers_search_and_the_installed_languages(assignment, annotator_a):
    from annotation.tools import available_languages

    response = _page_client(annotator_a).get(
        "/tools/panel", {"assignment": assignment.pk}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="q"' in html
    for language in available_languages():
        assert f'<option value="{language}">' in html
    assert "Ask a model" not in html  # off unless configured


def test_the_search_fragment_lists_hits_with_an_attach_form(documents, assignment, annotator_a):
    response = _page_client(annotator_a).get(
        "/tools/search", {"q": "wall naked eye", "assignment": assignment.pk},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<mark>naked</mark>" in html
    assert "Attach as evidence" in html
    assert Evidence.objects.filter(assignment=assignment, kind="search").count() == 1


def test_the_attach_fragment_stores_the_result(documents, assignment, annotator_a):
    wall = documents.documents.get(title="Great Wall of China")
    response = _page_client(annotator_a).post(
        "/tools/attach",
        {"assignment": assignment.pk, "document_id": wall.pk, "query": "wall"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "Attached as evidence" in response.content.decode()
    assert Evidence.objects.get(kind="attached_result").payload["title"] == wall.title


def test_the_panel_is_closed_to_people_without_a_role(outsider):
    assert _page_client(outsider).get("/tools/panel").status_code == 403
