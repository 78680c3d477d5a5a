"""Review 19o of the annotator tools: a corpus zipped on a Mac, the upload's report of documents
already there, two loads into one corpus at once, a search that ends after the label, and a
model or web-search service whose JSON escapes a lone surrogate (a 500 before)."""

from __future__ import annotations

import io
import json
import threading
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection  # noqa: F401 - read by the skipif condition
from django.test import Client
from django.urls import reverse

from annotation.models import Corpus, Document, Evidence
from annotation.services.corpus import DocumentInput, corpus_load, documents_from_folder
from annotation.services.labels import LabelInput, label_submit
from annotation.services.tools import AssignmentClosed, tool_search
from annotation.tools import search as search_module
from tests.annotation.tools_helpers import local_json_server, open_assignment
from tests.conftest import (
    api_client_for,
    closing_connections,
    lock_waiters,
    start_in_thread,
    wait_for,
)

# An AppleDouble file: binary metadata, not UTF-8, named like the document it describes.
APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x02\xff\xfe\x80"


def _admin_client(user) -> Client:  # noqa: ANN001
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def _messages(response) -> list[str]:  # noqa: ANN001
    return [str(message) for message in response.context["messages"]]


@pytest.mark.django_db
def test_a_zip_made_by_macos_loads_its_documents_and_ignores_the_metadata(admin_user):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("notes/tides.md", "# Ocean tides\n\nThe Moon pulls the oceans.\n")
        zipped.writestr("__MACOSX/notes/._tides.md", APPLEDOUBLE)
        zipped.writestr("__MACOSX/notes/notes.txt", APPLEDOUBLE)
    response = _admin_client(admin_user).post(
        reverse("tools-corpora"),
        {"name": "mac", "files": SimpleUploadedFile("notes.zip", archive.getvalue())},
        follow=True,
    )
    assert response.status_code == 200
    assert _messages(response) == ["Loaded 1 documents into mac."]
    assert list(Document.objects.values_list("title", "source")) == [
        ("Ocean tides", "notes/tides.md")
    ]


def test_a_folder_copied_from_a_mac_skips_its_appledouble_files(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "tides.md").write_text("# Ocean tides\n\nThe Moon pulls the oceans.\n")
    (folder / "._tides.md").write_bytes(APPLEDOUBLE)
    documents = list(documents_from_folder(folder))
    assert [document.title for document in documents] == ["Ocean tides"]


@pytest.mark.django_db
def test_the_upload_says_how_many_documents_the_corpus_already_had(admin_user):
    lines = (json.dumps({"title": "Moon", "body": "A satellite."}) + "\n") * 3
    client = _admin_client(admin_user)

    def upload():  # noqa: ANN202
        file = SimpleUploadedFile("facts.jsonl", lines.encode())
        return client.post(reverse("tools-corpora"), {"name": "facts", "files": file}, follow=True)

    assert _messages(upload()) == ["Loaded 1 documents into facts, 2 already in the corpus."]
    assert _messages(upload()) == ["Loaded 0 documents into facts, 3 already in the corpus."]
    assert Document.objects.count() == 1


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="row locks")
@pytest.mark.django_db(transaction=True)
def test_two_loads_into_one_corpus_at_once_add_each_document_once():
    Corpus.objects.create(name="facts")
    moon = DocumentInput(title="Moon", body="A satellite.")
    first_inside, release_first = threading.Event(), threading.Event()

    def first_documents():  # noqa: ANN202
        yield moon
        first_inside.set()  # inside corpus_load's transaction, its document not yet written
        release_first.wait(30)

    first = start_in_thread(
        closing_connections(lambda: corpus_load(name="facts", documents=first_documents()))
    )
    assert first_inside.wait(30)
    second = start_in_thread(
        closing_connections(lambda: corpus_load(name="facts", documents=[moon]))
    )
    # The second load waits for the first (or, unserialised, finishes at once).
    wait_for(lambda: second.done() or lock_waiters() > 0, timeout=20, what="the second load")
    release_first.set()
    results = [first.result(timeout=30), second.result(timeout=30)]
    assert Document.objects.count() == 1
    assert sorted((result.created, result.duplicates) for result in results) == [(0, 1), (1, 0)]


@pytest.mark.django_db
def test_a_search_that_ends_after_the_label_was_submitted_records_nothing(
    campaign, annotator_a, monkeypatch
):
    corpus_load(name="facts", documents=[DocumentInput(title="Moon", body="A satellite.")])
    assignment = open_assignment(campaign, annotator_a)
    search = search_module.search

    def search_while_the_label_is_submitted(query, k, *, corpus_id=None):  # noqa: ANN001, ANN202
        hits = search(query, k, corpus_id=corpus_id)
        label_submit(assignment=assignment, data=LabelInput(preference=1))
        return hits

    monkeypatch.setattr(search_module, "search", search_while_the_label_is_submitted)
    with pytest.raises(AssignmentClosed):
        tool_search(query="moon", assignment=assignment, user=annotator_a)
    # Written after the submit, the search's evidence would belong to no label.
    assert not Evidence.objects.filter(label__isnull=True).exists()


# A lone surrogate, escaped as JSON allows; json.loads decodes it to a str nothing can encode.
LONE = "\\ud800"


@pytest.mark.django_db
def test_a_model_answer_with_a_lone_surrogate_is_kept_with_a_replacement_character(
    settings, campaign, annotator_a
):
    answer = '{"model": "m@", "choices": [{"message": {"content": "Yes @."}}]}'.replace("@", LONE)
    with local_json_server(lambda request: (200, answer.encode())) as server:
        settings.ARBITER = {**settings.ARBITER, "LLM_URL": f"{server.url}/v1"}
        assignment = open_assignment(campaign, annotator_a)
        client = api_client_for(annotator_a)
        client.raise_request_exception = False
        response = client.post(
            "/api/tools/llm",
            {"assignment": assignment.pk, "question": "Is A right?"},
            format="json",
        )
    assert response.status_code == 201
    assert response.json()["answer"] == "Yes \ufffd."
    assert Evidence.objects.get().payload["model"] == "m\ufffd"


@pytest.mark.django_db
@pytest.mark.parametrize("with_assignment", [True, False])
def test_a_web_hit_with_a_lone_surrogate_is_shown_and_recorded(
    settings, campaign, annotator_a, with_assignment
):
    results = '{"results": [{"title": "Moon@", "snippet": "moon @", "url": "https://m/@"}]}'
    answer = results.replace("@", LONE).encode()
    with local_json_server(lambda request: (200, answer)) as server:
        settings.ARBITER = {
            **settings.ARBITER,
            "SEARCH_BACKEND": "web",
            "WEB_SEARCH_URL": server.url,
        }
        query = {"q": "moon"}
        if with_assignment:
            query["assignment"] = open_assignment(campaign, annotator_a).pk
        client = api_client_for(annotator_a)
        client.raise_request_exception = False
        response = client.get("/api/tools/search", query)
        page = _admin_client(annotator_a).get("/tools/search", query, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    [hit] = response.json()["hits"]
    assert (hit["title"], hit["source"]) == ("Moon\ufffd", "https://m/\ufffd")
    assert page.status_code == 200 and "Moon\ufffd" in page.content.decode()
    recorded = Evidence.objects.filter(kind=Evidence.Kind.SEARCH)
    assert recorded.count() == (2 if with_assignment else 0)
