"""Review 20p: a model answer of megabytes (a model repeating itself until its context is full)
was kept whole as evidence, read back by the panel, the review page and the export on every
look; now the evidence keeps its first 20,000 characters and says it was cut."""

from __future__ import annotations

import pytest

from annotation.models import Evidence
from tests.annotation.tools_helpers import local_json_server, open_assignment
from tests.conftest import api_client_for


@pytest.mark.django_db
def test_a_huge_model_answer_is_kept_cut_to_a_few_pages(settings, annotator_a, campaign):
    assignment = open_assignment(campaign, annotator_a)
    rambling = "The answer is A. " * 60_000  # about 1 MB, within the endpoint's 4 MiB
    answer = {"model": "m", "choices": [{"message": {"role": "assistant", "content": rambling}}]}
    with local_json_server(lambda request: (200, answer)) as server:
        settings.ARBITER = {**settings.ARBITER, "LLM_URL": f"{server.url}/v1"}
        response = api_client_for(annotator_a).post(
            "/api/tools/llm", {"assignment": assignment.pk, "question": "Which?"}, format="json"
        )
    assert response.status_code == 201, response.content[:200]
    kept = Evidence.objects.get(assignment=assignment, kind=Evidence.Kind.LLM).payload["answer"]
    # A few pages, the start of the answer, and a word that the rest was cut.
    assert len(kept) < 25_000
    assert rambling.startswith(kept[:20_000])
    assert kept.endswith("[… the rest of the answer was cut for length …]")
    assert response.json()["answer"] == kept


@pytest.mark.django_db
def test_an_answer_of_ordinary_length_is_kept_whole(settings, annotator_a, campaign):
    assignment = open_assignment(campaign, annotator_a)
    text = "B cites the treaty correctly. " * 100
    answer = {"model": "m", "choices": [{"message": {"role": "assistant", "content": text}}]}
    with local_json_server(lambda request: (200, answer)) as server:
        settings.ARBITER = {**settings.ARBITER, "LLM_URL": f"{server.url}/v1"}
        response = api_client_for(annotator_a).post(
            "/api/tools/llm",
            {"assignment": assignment.pk, "question": "Is B right?"},
            format="json",
        )
    assert response.status_code == 201
    assert Evidence.objects.get(kind=Evidence.Kind.LLM).payload["answer"] == text
