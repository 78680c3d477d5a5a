"""Review 15, bad input in annotation: a corpus line with a lone surrogate or a source that is
not a string, file names over 255 bytes given to import_pairs and load_corpus, and an e-mail
create_user's column cannot hold are each refused with where and why, and nothing is stored."""

from __future__ import annotations

import html
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client

from annotation.models import Campaign, Corpus, Document
from annotation.services.corpus import CorpusError, documents_from_jsonl

pytestmark = [pytest.mark.django_db]

GOOD = b'{"title": "Rome", "body": "capital of Italy"}\n'
NOT_UNICODE = "is not valid Unicode (it holds a lone surrogate such as \\ud800)"
SURROGATE_LINES = {
    "title": b'{"title": "Paris\\udc00", "body": "capital"}\n',
    "body": b'{"title": "Paris", "body": "capital\\ud800"}\n',
    "source": b'{"title": "Paris", "body": "capital", "source": "\\ud800"}\n',
    "attribution": b'{"title": "Paris", "body": "capital", "attribution": "\\udfff"}\n',
}


def _documents(content: bytes) -> list:
    return list(documents_from_jsonl(io.BytesIO(content), name="facts.jsonl"))


# --- corpus lines --------------------------------------------------------------------------


@pytest.mark.parametrize("field", SURROGATE_LINES)
def test_a_corpus_line_with_a_lone_surrogate_is_refused_with_its_number(field) -> None:
    with pytest.raises(CorpusError) as raised:
        _documents(GOOD + SURROGATE_LINES[field])
    assert str(raised.value) == f'line 2: "{field}" {NOT_UNICODE}'


@pytest.mark.parametrize(
    "line, key",
    [
        (b'{"title": "t", "body": "b", "source": {"a": 1}}', "source"),
        (b'{"title": "t", "body": "b", "url": ["https://example.org"]}', "url"),
        (b'{"title": "t", "body": "b", "source": 12}', "source"),
        (b'{"title": "t", "body": "b", "attribution": false}', "attribution"),
    ],
    ids=["object", "list-url", "number", "boolean-attribution"],
)
def test_a_corpus_source_that_is_not_a_string_is_refused(line, key) -> None:
    with pytest.raises(CorpusError) as raised:
        _documents(line)
    assert str(raised.value) == f'line 1: "{key}" must be a string'


def test_a_null_source_falls_back_to_the_url() -> None:
    [document] = _documents(b'{"title": "t", "body": "b", "source": null, "url": "https://x.org"}')
    assert (document.source, document.attribution) == ("https://x.org", "")


@pytest.mark.parametrize("field", SURROGATE_LINES)
def test_the_corpus_page_shows_the_line_and_stores_nothing(field, admin_user) -> None:
    browser = Client(raise_request_exception=False)
    browser.force_login(admin_user)
    upload = SimpleUploadedFile("facts.jsonl", GOOD + SURROGATE_LINES[field])
    response = browser.post("/tools/corpora/", {"name": "facts", "files": [upload]})
    assert response.status_code == 200
    assert f'line 2: "{field}" {NOT_UNICODE}' in html.unescape(response.content.decode())
    assert not Document.objects.exists()


@pytest.mark.parametrize("field", SURROGATE_LINES)
def test_load_corpus_names_the_line_and_stores_nothing(field, tmp_path) -> None:
    path = tmp_path / "facts.jsonl"
    path.write_bytes(GOOD + SURROGATE_LINES[field])
    with pytest.raises(CommandError) as raised:
        call_command("load_corpus", str(path), "--name", "facts", stdout=io.StringIO())
    assert str(raised.value) == f'{path}: line 2: "{field}" {NOT_UNICODE}'
    assert not Document.objects.exists()


# --- file names over 255 bytes -------------------------------------------------------------


def test_import_pairs_refuses_a_file_name_over_255_bytes(tmp_path) -> None:
    path = tmp_path / ("f" * 300)
    with pytest.raises(CommandError) as raised:
        call_command("import_pairs", str(path), "--campaign", "c")
    assert str(raised.value) == f"cannot read {path}: File name too long"
    assert not Campaign.objects.exists()


def test_load_corpus_refuses_a_file_name_over_255_bytes(tmp_path) -> None:
    path = tmp_path / ("f" * 300)
    with pytest.raises(CommandError) as raised:
        call_command("load_corpus", str(path), "--name", "c")
    assert str(raised.value) == f"cannot read {path}: File name too long"
    assert not Corpus.objects.exists()


# --- create_user ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value, why",
    [
        ("--email", "x" * 250 + "@e.co", "email: Ensure this value has at most 254 characters"),
        ("--email", "a@\udc80.co", "email: not valid UTF-8 text"),
        ("--password", "Long-enough-\udc80-pass", "password: not valid UTF-8 text"),
    ],
    ids=["email-too-long", "email-surrogate", "password-surrogate"],
)
def test_create_user_refuses_what_it_cannot_store_and_stores_nothing(option, value, why) -> None:
    with pytest.raises(CommandError) as raised:
        call_command(
            "create_user", "newuser", "--role", "annotator", option, value, stdout=io.StringIO()
        )
    assert str(raised.value).startswith(f"invalid user 'newuser': {why}")
    assert not get_user_model().objects.exists()


def test_create_user_takes_an_email_of_254_characters() -> None:
    email = "x" * 249 + "@e.co"
    call_command(
        "create_user", "newuser", "--role", "annotator", "--email", email, stdout=io.StringIO()
    )
    assert get_user_model().objects.get().email == email
