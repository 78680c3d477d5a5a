"""Tool inputs and outputs that once gave a 500 or left a row stuck: NUL bytes (PostgreSQL
jsonb refuses them), non-finite search scores, a K-wise item shown to the model as a pair, and
the stale-run sweep that forgot the run's evidence."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from annotation.importers import content_hash
from annotation.models import CodeRun, Evidence, ItemKind
from annotation.services.assignments import assignment_next
from annotation.services.tools import (
    ToolError,
    _code_run_finish,
    code_run_create,
    code_run_execute,
    code_runs_fail_stale,
    evidence_line,
    llm_ask,
)
from annotation.tools import SandboxUnavailable, preflight
from tests.annotation.tools_helpers import local_json_server, open_assignment
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory


def _sandbox_problem() -> str | None:
    try:
        preflight()
    except SandboxUnavailable as exc:
        return str(exc)
    return None


needs_sandbox = pytest.mark.skipif(
    _sandbox_problem() is not None, reason=f"no sandbox here: {_sandbox_problem()}"
)

ANSWER_OK = {"model": "m", "choices": [{"message": {"role": "assistant", "content": "ok"}}]}


def _htmx_client(user) -> Client:  # noqa: ANN001
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


# --- a program that prints NUL ----------------------------------------------------------------


@needs_sandbox
@pytest.mark.alone  # a timed sandbox run, like test_code_run_task's
@pytest.mark.django_db
def test_code_run_printing_nul_byte_finishes(annotator_a, campaign):
    assignment = open_assignment(campaign, annotator_a)
    run = CodeRun.objects.create(
        user=annotator_a,
        assignment=assignment,
        language="python",
        code="import sys; sys.stdout.write('a\\x00b'); sys.stderr.write('c\\x00d')",
    )
    Evidence.objects.create(
        assignment=assignment,
        kind=Evidence.Kind.CODE_RUN,
        payload={"code_run_id": run.pk, "language": "python"},
    )
    code_run_execute(code_run_id=run.pk)
    run.refresh_from_db()
    assert run.status == CodeRun.Status.DONE, run.status
    assert run.result["stdout"] == "a\ufffdb"
    assert run.result["stderr"] == "c\ufffdd"
    evidence = Evidence.objects.get(assignment=assignment, kind=Evidence.Kind.CODE_RUN)
    assert evidence.payload["status"] == CodeRun.Status.DONE
    assert evidence.payload["stdout"] == "a\ufffdb"


@pytest.mark.django_db
def test_a_result_the_database_refuses_fails_the_run_with_a_reason(annotator_a, campaign):
    assignment = open_assignment(campaign, annotator_a)
    run = code_run_create(
        user=annotator_a, language="python", code="print(1)", assignment=assignment
    )
    CodeRun.objects.filter(pk=run.pk).update(status=CodeRun.Status.RUNNING)
    run.refresh_from_db()
    # Whatever else a result may hold that jsonb refuses, the run must not stay "running".
    _code_run_finish(run, CodeRun.Status.DONE, {"status": "ok", "stdout": "\x00"})
    run.refresh_from_db()
    assert run.status == CodeRun.Status.FAILED
    assert run.result["error"]
    assert run.finished_at is not None
    evidence = Evidence.objects.get(assignment=assignment, kind=Evidence.Kind.CODE_RUN)
    assert "queued" not in evidence_line(evidence), evidence_line(evidence)
    assert evidence.payload["status"] == CodeRun.Status.FAILED


# --- NUL through the tools page and the model ---------------------------------------------------


@pytest.mark.django_db
def test_page_attach_note_with_nul_is_not_500(annotator_a, campaign):
    assignment = open_assignment(campaign, annotator_a)
    response = _htmx_client(annotator_a).post(
        "/tools/attach",
        {"assignment": assignment.pk, "title": "t", "note": "x\x00y"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200, response.status_code
    evidence = Evidence.objects.get(assignment=assignment, kind=Evidence.Kind.ATTACHED_RESULT)
    assert "\x00" not in evidence.payload["note"]
    assert evidence.payload["note"].startswith("x")
    assert evidence.payload["note"].endswith("y")


@pytest.mark.django_db
def test_llm_answer_with_nul_is_not_500(settings, annotator_a, campaign):
    assignment = open_assignment(campaign, annotator_a)
    answer = {
        "model": "m\x00n",
        "choices": [{"message": {"role": "assistant", "content": "a\x00b"}}],
    }
    with local_json_server(lambda request: (200, answer)) as server:
        settings.ARBITER = {**settings.ARBITER, "LLM_URL": f"{server.url}/v1"}
        client = api_client_for(annotator_a)
        client.raise_request_exception = False
        response = client.post(
            "/api/tools/llm", {"assignment": assignment.pk, "question": "q"}, format="json"
        )
    assert response.status_code == 201, response.status_code
    evidence = Evidence.objects.get(assignment=assignment, kind=Evidence.Kind.LLM)
    assert evidence.payload["answer"] == "a\ufffdb"
    assert evidence.payload["model"] == "m\ufffdn"


@pytest.mark.django_db
def test_page_llm_question_with_nul_is_refused_before_the_model_is_asked(
    settings, annotator_a, campaign
):
    assignment = open_assignment(campaign, annotator_a)
    with local_json_server(lambda request: (200, ANSWER_OK)) as server:
        settings.ARBITER = {**settings.ARBITER, "LLM_URL": f"{server.url}/v1"}
        response = _htmx_client(annotator_a).post(
            "/tools/llm",
            {"assignment": assignment.pk, "question": "q\x00"},
            HTTP_HX_REQUEST="true",
        )
    # The panel shows a refusal inside its fragment (htmx swaps only 2xx answers).
    assert response.status_code == 200, response.status_code
    assert 'class="alert"' in response.content.decode()
    assert "NUL" in response.content.decode()
    assert server.requests == []
    assert not Evidence.objects.filter(assignment=assignment, kind=Evidence.Kind.LLM).exists()


@pytest.mark.django_db
def test_a_question_with_nul_is_a_tool_error_before_the_model_is_asked(
    settings, annotator_a, campaign
):
    assignment = open_assignment(campaign, annotator_a)
    with local_json_server(lambda request: (200, ANSWER_OK)) as server:
        settings.ARBITER = {**settings.ARBITER, "LLM_URL": f"{server.url}/v1"}
        with pytest.raises(ToolError) as refused:
            llm_ask(assignment=assignment, question="Is \x00 fine?")
    assert refused.value.status == 400
    assert server.requests == []


# --- web-search scores --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "score", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1" + b"0" * 400, b"true", b'"9"']
)
def test_web_search_unusable_score_ranks_by_position(settings, annotator_a, score):
    body = (
        b'{"results": [{"title": "t", "snippet": "s", "url": "https://x", "score": '
        + score
        + b'}, {"title": "u", "snippet": "s", "url": "https://y", "score": 0.5}]}'
    )
    with local_json_server(lambda request: (200, body)) as server:
        settings.ARBITER = {
            **settings.ARBITER,
            "SEARCH_BACKEND": "web",
            "WEB_SEARCH_URL": f"{server.url}/search",
        }
        client = api_client_for(annotator_a)
        client.raise_request_exception = False
        response = client.get("/api/tools/search", {"q": "eiffel", "k": 5})
    assert response.status_code == 200, response.status_code
    hits = response.json()["hits"]
    assert [hit["title"] for hit in hits] == ["t", "u"]
    assert hits[0]["score"] == 5.0  # k - rank, as for a missing score
    assert hits[1]["score"] == 0.5


# --- the model sees every response of a ranking item ---------------------------------------------


@pytest.mark.django_db
def test_llm_sees_every_response_of_a_ranking_item_in_display_order(settings, annotator_a):
    ranking = CampaignFactory(item_kind=ItemKind.RANKING)
    texts = ["first answer", "second answer", "third answer", "fourth answer"]
    conversation = [{"role": "user", "content": "Rank these."}]
    PairFactory(
        campaign=ranking,
        conversation=conversation,
        response_a=texts[0],
        response_b=texts[1],
        responses=[{"content": text, "model": ""} for text in texts],
        content_hash=content_hash(conversation, "k", "wise"),
    )
    assignment = assignment_next(campaign=ranking, annotator=annotator_a)
    assert assignment is not None
    with local_json_server(lambda request: (200, ANSWER_OK)) as server:
        settings.ARBITER = {**settings.ARBITER, "LLM_URL": f"{server.url}/v1"}
        response = api_client_for(annotator_a).post(
            "/api/tools/llm",
            {"assignment": assignment.pk, "question": "Which is best?"},
            format="json",
        )
    assert response.status_code == 201
    system, user = server.requests[0].body["messages"]
    prompt = user["content"]
    assert not [text for text in texts if text not in prompt]
    order = assignment.display_order or list(range(len(texts)))
    positions = [
        prompt.index(f"## Response {shown}\n{texts[index]}")
        for shown, index in enumerate(order, start=1)
    ]
    assert positions == sorted(positions)
    assert "Response A" not in prompt
    assert "4 AI responses" in system["content"]


@pytest.mark.django_db
def test_llm_still_sees_a_pair_as_a_and_b(settings, annotator_a, campaign):
    assignment = open_assignment(campaign, annotator_a, response_a="alpha", response_b="beta")
    with local_json_server(lambda request: (200, ANSWER_OK)) as server:
        settings.ARBITER = {**settings.ARBITER, "LLM_URL": f"{server.url}/v1"}
        response = api_client_for(annotator_a).post(
            "/api/tools/llm", {"assignment": assignment.pk, "question": "q"}, format="json"
        )
    assert response.status_code == 201
    system, user = server.requests[0].body["messages"]
    left, right = ("beta", "alpha") if assignment.swapped else ("alpha", "beta")
    assert f"## Response A\n{left}" in user["content"]
    assert f"## Response B\n{right}" in user["content"]
    assert "(A and B)" in system["content"]


# --- the stale-run sweep ------------------------------------------------------------------------


@pytest.mark.django_db
def test_stale_sweep_updates_code_run_evidence(annotator_a, campaign):
    assignment = open_assignment(campaign, annotator_a)
    run = code_run_create(
        user=annotator_a, language="python", code="print(1)", assignment=assignment
    )
    CodeRun.objects.filter(pk=run.pk).update(status=CodeRun.Status.RUNNING)
    fresh = code_run_create(user=annotator_a, language="python", code="print(2)")
    assert code_runs_fail_stale(now=timezone.now() + timedelta(hours=1)) == 2
    run.refresh_from_db()
    fresh.refresh_from_db()
    assert run.status == fresh.status == CodeRun.Status.FAILED
    evidence = Evidence.objects.get(assignment=assignment, kind=Evidence.Kind.CODE_RUN)
    assert "queued" not in evidence_line(evidence), evidence_line(evidence)
    assert evidence.payload["status"] == CodeRun.Status.FAILED
    assert "stopped" in evidence.payload["message"]
    # A second sweep finds nothing left to fail.
    assert code_runs_fail_stale(now=timezone.now() + timedelta(hours=1)) == 0


@pytest.mark.django_db
def test_a_late_finish_does_not_overwrite_a_swept_runs_evidence(annotator_a, campaign):
    assignment = open_assignment(campaign, annotator_a)
    run = code_run_create(
        user=annotator_a, language="python", code="print(1)", assignment=assignment
    )
    CodeRun.objects.filter(pk=run.pk).update(status=CodeRun.Status.RUNNING)
    assert code_runs_fail_stale(now=timezone.now() + timedelta(hours=1)) == 1
    run.refresh_from_db()
    # The worker was only slow: its result arrives after the sweep failed the run.
    _code_run_finish(run, CodeRun.Status.DONE, {"status": "ok", "stdout": "1\n"})
    stored = CodeRun.objects.get(pk=run.pk)
    assert stored.status == CodeRun.Status.FAILED
    evidence = Evidence.objects.get(assignment=assignment, kind=Evidence.Kind.CODE_RUN)
    assert evidence.payload["status"] == CodeRun.Status.FAILED
    assert evidence.payload["stdout"] == ""
