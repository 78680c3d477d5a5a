"""'Ask a model' against a small fake OpenAI-compatible server started by the test."""

from __future__ import annotations

import threading

import pytest
from django.db import connections
from django.test import Client

from annotation.errors import InvalidLabel
from annotation.models import Assignment, Evidence
from annotation.services.labels import LabelInput, label_submit
from annotation.services.tools import ToolUnavailable, llm_ask
from tests.annotation.tools_helpers import local_json_server, open_assignment
from tests.conftest import api_client_for, start_in_thread, wait_for

pytestmark = [pytest.mark.django_db]


def completion(request):
    question = request.body["messages"][-1]["content"].rsplit("## My question\n", 1)[-1]
    return 200, {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "fake-7b",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"About '{question}': B is wrong."},
                "finish_reason": "stop",
            }
        ],
    }


@pytest.fixture
def fake_llm(settings):
    with local_json_server(completion) as server:
        settings.ARBITER = {
            **settings.ARBITER,
            "LLM_URL": f"{server.url}/v1",
            "LLM_MODEL": "fake-7b",
            "LLM_KEY": "k-123",
        }
        yield server


@pytest.fixture
def assignment(campaign, annotator_a):
    return open_assignment(
        campaign,
        annotator_a,
        conversation=[{"role": "user", "content": "How tall is the Eiffel Tower?"}],
        response_a="330 metres.",
        response_b="About 3 km.",
    )


@pytest.mark.smoke
def test_the_model_gets_the_pair_as_shown_and_the_answer_is_evidence(fake_llm, assignment,
                                                                     annotator_a):
    response = api_client_for(annotator_a).post(
        "/api/tools/llm",
        {"assignment": assignment.pk, "question": "Which height is right?"},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["model"] == "fake-7b"
    assert body["answer"] == "About 'Which height is right?': B is wrong."
    [request] = fake_llm.requests
    assert request.method == "POST" and request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer k-123"
    assert request.body["model"] == "fake-7b"
    prompt = request.body["messages"][-1]["content"]
    shown_a, shown_b = ("About 3 km.", "330 metres.") if assignment.swapped else (
        "330 metres.", "About 3 km."
    )
    assert f"## Response A\n{shown_a}" in prompt
    assert f"## Response B\n{shown_b}" in prompt
    assert "How tall is the Eiffel Tower?" in prompt
    [evidence] = Evidence.objects.filter(assignment=assignment)
    assert evidence.kind == Evidence.Kind.LLM
    assert evidence.payload["question"] == "Which height is right?"
    assert evidence.payload["answer"] == body["answer"]


@pytest.mark.smoke
def test_after_consulting_a_model_a_label_needs_a_rationale(fake_llm, assignment, annotator_a):
    api_client_for(annotator_a).post(
        "/api/tools/llm", {"assignment": assignment.pk, "question": "Check B?"}, format="json"
    )
    with pytest.raises(InvalidLabel, match="rationale"):
        label_submit(assignment=assignment, data=LabelInput(preference=1))
    label = label_submit(
        assignment=assignment, data=LabelInput(preference=1, rationale="3 km is absurd.")
    )
    assert label.evidence.get().kind == Evidence.Kind.LLM


def test_the_tool_is_off_unless_configured(assignment, annotator_a):
    response = api_client_for(annotator_a).post(
        "/api/tools/llm", {"assignment": assignment.pk, "question": "Hi?"}, format="json"
    )
    assert response.status_code == 503
    assert not Evidence.objects.exists()


def test_a_failing_endpoint_stores_nothing(settings, assignment, annotator_a):
    with local_json_server(lambda request: (500, {"error": "overloaded"})) as server:
        settings.ARBITER = {**settings.ARBITER, "LLM_URL": server.url, "LLM_MODEL": "m"}
        response = api_client_for(annotator_a).post(
            "/api/tools/llm", {"assignment": assignment.pk, "question": "Hi?"}, format="json"
        )
    assert response.status_code == 503
    assert "500" in response.json()["detail"]
    assert not Evidence.objects.exists()


def test_a_closed_assignment_cannot_consult_the_model(fake_llm, assignment, annotator_a):
    Assignment.objects.filter(pk=assignment.pk).update(status=Assignment.Status.SKIPPED)
    response = api_client_for(annotator_a).post(
        "/api/tools/llm", {"assignment": assignment.pk, "question": "Hi?"}, format="json"
    )
    assert response.status_code == 409
    assert fake_llm.requests == []


def test_the_panel_offers_the_model_when_configured(fake_llm, assignment, annotator_a):
    client = Client()
    client.force_login(annotator_a)
    panel = client.get("/tools/panel", {"assignment": assignment.pk},
                       headers={"HX-Request": "true"})
    assert "Ask a model" in panel.content.decode()
    answer = client.post(
        "/tools/llm", {"assignment": assignment.pk, "question": "<b>Is B right?</b>"},
        headers={"HX-Request": "true"},
    )
    html = answer.content.decode()
    assert "B is wrong." in html
    assert "&lt;b&gt;Is B right?&lt;/b&gt;" in html


@pytest.mark.django_db(transaction=True)  # the first ask runs in a thread of its own
def test_asks_past_the_cap_are_refused_at_once_while_others_wait_on_the_model(
    settings, campaign, annotator_a, annotator_b
):
    release = threading.Event()

    def slow_completion(request):
        release.wait(timeout=30)
        return completion(request)

    first_assignment = open_assignment(campaign, annotator_a)
    second_assignment = open_assignment(campaign, annotator_b)
    def ask_first() -> Evidence:
        try:
            return llm_ask(assignment=first_assignment, question="Which?")
        finally:
            connections.close_all()

    with local_json_server(slow_completion) as server:
        settings.ARBITER = {
            **settings.ARBITER,
            "LLM_URL": f"{server.url}/v1",
            "LLM_CONCURRENT_ASKS": 1,
        }
        first = start_in_thread(ask_first)
        try:
            wait_for(lambda: server.requests, timeout=30, interval=0.01, what="the first ask")
            assert len(server.requests) == 1  # the first ask is waiting on the model
            with pytest.raises(ToolUnavailable, match="ask again in a moment"):
                llm_ask(assignment=second_assignment, question="And?")
            # Refused while the first still waits on the model: not queued behind it.
            assert not first.done()
            assert len(server.requests) == 1
        finally:
            release.set()
        assert first.result(timeout=30).kind == Evidence.Kind.LLM
        # The slot is free again once the first answer is in.
        assert llm_ask(assignment=second_assignment, question="And?").kind == Evidence.Kind.LLM
    assert Evidence.objects.filter(kind=Evidence.Kind.LLM).count() == 2
