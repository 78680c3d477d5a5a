"""Corpus search through the backend of the database under test: PostgreSQL full-text search
in the main run, SQLite FTS5 in the smoke run (both marked smoke, so each runs on both)."""

from __future__ import annotations

import pytest
from django.db import connection

from annotation.models import Corpus, Document
from annotation.services.corpus import DocumentInput, corpus_load
from annotation.tools.search import get_backend, render_snippet, search
from annotation.tools.search_sqlite import to_fts5_query

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

HOSTILE_QUERIES = [
    "",
    "   ",
    '"',
    '"unbalanced quote',
    "a OR OR b",
    "OR",
    "AND NOT",
    "-",
    "--volcano",
    "-volcano",
    "title:volcano",
    "volcano*",
    "NEAR(volcano lava)",
    "(((",
    "'; DROP TABLE annotation_document; --",
    "volcano & | ! <-> :*",
    "\x00volcano\x01",
    "^volcano$ {1,2} [a-z]",
    "日本語 テキスト",
    "x" * 5000,
]


@pytest.fixture
def corpus():
    return corpus_load(
        name="facts",
        documents=[
            DocumentInput(
                title="Volcano",
                body="A rupture in the crust of a planet through which lava escapes.",
                source="https://en.wikipedia.org/wiki/Volcano",
            ),
            DocumentInput(
                title="Mountain ranges",
                body="Ranges form by tectonics; some peaks are an old volcano, eroded by ice.",
                source="https://en.wikipedia.org/wiki/Mountain_range",
            ),
            DocumentInput(
                title="Script injection",
                body='Never trust <img src=x onerror=alert(1)> markup: if x < 3 && y > 2, '
                '"volcano" is <script>alert(2)</script> bad.',
                source="javascript:alert(1)",
            ),
            DocumentInput(
                title="Photosynthesis",
                body="Plants turn light, water and carbon dioxide into sugar and oxygen.",
                source="biology notes, chapter 3",
            ),
        ],
    ).corpus


def test_the_backend_follows_the_database_vendor():
    expected = "postgres" if connection.vendor == "postgresql" else "sqlite"
    assert get_backend().name == expected


def test_a_title_match_ranks_above_body_matches(corpus):
    hits = search("volcano", 10)
    titles = [hit.title for hit in hits]
    assert titles[0] == "Volcano"
    assert set(titles) == {"Volcano", "Mountain ranges", "Script injection"}
    assert hits[0].score > hits[1].score
    assert hits[0].document_id == Document.objects.get(title="Volcano").pk
    assert hits[0].source == "https://en.wikipedia.org/wiki/Volcano"


def test_matches_are_highlighted_with_mark(corpus):
    [hit] = search("photosynthesis sugar", 5)
    assert "<mark>sugar</mark>" in hit.snippet


def test_stemming_finds_other_word_forms(corpus):
    assert [hit.title for hit in search("ranging mountains", 5)] == ["Mountain ranges"]


def test_snippets_escape_html_from_documents(corpus):
    [hit] = search("script injection markup", 5)
    assert "<script" not in hit.snippet and "<img" not in hit.snippet
    assert "x &lt; 3 &amp;&amp; y &gt; 2" in hit.snippet
    assert "&quot;volcano" in hit.snippet
    # Only <mark> tags survive as markup.
    without_marks = hit.snippet.replace("<mark>", "").replace("</mark>", "")
    assert "<" not in without_marks and ">" not in without_marks


def test_a_non_web_source_is_never_offered_as_a_link(corpus):
    [hit] = search("script injection", 5)
    assert hit.source == "javascript:alert(1)"
    assert hit.url == ""
    assert search("volcano", 1)[0].url.startswith("https://")


def test_web_search_syntax_phrases_and_exclusions(corpus):
    assert [hit.title for hit in search('"old volcano"', 5)] == ["Mountain ranges"]
    titles = {hit.title for hit in search("volcano -ice", 5)}
    assert titles == {"Volcano", "Script injection"}
    either = {hit.title for hit in search("photosynthesis or lava", 5)}
    assert either == {"Photosynthesis", "Volcano"}


def test_k_limits_the_hits(corpus):
    assert len(search("volcano", 1)) == 1


def test_search_can_be_limited_to_one_corpus(corpus):
    other = corpus_load(
        name="other", documents=[DocumentInput(title="Volcano elsewhere", body="Lava lakes.")]
    ).corpus
    assert {hit.title for hit in search("volcano", 10, corpus_id=other.pk)} == {
        "Volcano elsewhere"
    }
    assert "Volcano elsewhere" not in {
        hit.title for hit in search("volcano", 10, corpus_id=corpus.pk)
    }


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_hostile_queries_never_raise(corpus, query):
    hits = search(query, 5)
    assert isinstance(hits, list)
    for hit in hits:
        assert "<script>" not in hit.snippet


def test_empty_and_operator_only_queries_return_nothing(corpus):
    assert search("", 5) == []
    assert search('" "', 5) == []
    assert search("-volcano", 5) == []


def test_edited_and_deleted_documents_are_reindexed(corpus):
    document = Document.objects.get(title="Photosynthesis")
    document.body = "Chlorophyll absorbs light."
    document.save()
    assert search("sugar", 5) == []
    assert [hit.title for hit in search("chlorophyll", 5)] == ["Photosynthesis"]
    document.delete()
    assert search("chlorophyll", 5) == []


def test_deleting_a_corpus_removes_its_documents_from_search(corpus):
    Corpus.objects.filter(pk=corpus.pk).delete()
    assert search("volcano", 5) == []


def test_render_snippet_escapes_text_and_keeps_marks_balanced():
    assert render_snippet('a \x02<b>\x03 "c"') == "a <mark>&lt;b&gt;</mark> &quot;c&quot;"
    assert render_snippet("\x02open") == "<mark>open</mark>"
    assert render_snippet("stray\x03 \x02\x02x\x03") == "stray <mark>x</mark>"


def test_fts5_translation_quotes_every_word():
    assert to_fts5_query('volcano "old lava" -ice') == '(("volcano" AND "old lava") NOT ("ice"))'
    assert to_fts5_query("a or b") == '("a") OR ("b")'
    assert to_fts5_query('NEAR(x) title:y *') == '("NEAR x" AND "title y")'
    assert to_fts5_query("-only") == ""


def test_a_title_match_still_ranks_first_among_hundreds_of_body_matches(corpus):
    # More matches than the PostgreSQL backend ranks exactly (BODY_SAMPLE): the title match
    # must not be lost to the sampling.
    corpus_load(
        name="crowd",
        documents=[
            DocumentInput(title=f"Report {n}", body=f"Field note {n} mentions a glacier.")
            for n in range(700)
        ]
        + [DocumentInput(title="Glacier", body="A persistent body of dense ice.")],
    )
    hits = search("glacier", 5)
    assert hits[0].title == "Glacier"
    assert len(hits) == 5
