"""The demo's search works: `seed_demo` loads a corpus that answers every factual question the
demo asks, and with no corpus at all the search says so instead of "No results"."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command

from annotation.demo_data import DEMO_CORPUS_NAME, generate_demo_pairs
from annotation.models import Corpus
from annotation.tools.search import search

pytestmark = pytest.mark.django_db

# The fact in the correct response: "**Paris**", "`Fe`", "**Earth** is the third planet".
FACT = re.compile(r"\*\*([^*]+)\*\*|`([^`]+)`")


def _factual_questions() -> list[tuple[str, str]]:
    questions = []
    for row in generate_demo_pairs(300, seed=0):
        if row["attributes"]["task_category"] != "factual":
            continue
        correct = row["response_a"] if row["expected_preference"] > 0 else row["response_b"]
        match = FACT.search(correct)
        assert match is not None, correct
        questions.append((row["conversation"][-1]["content"], match.group(1) or match.group(2)))
    return questions


def test_seed_demo_loads_a_corpus_that_answers_the_demo_questions(capsys):
    call_command("seed_demo", pairs=3, gold=0)
    corpus = Corpus.objects.get(name=DEMO_CORPUS_NAME)
    assert "documents for the search tool" in capsys.readouterr().out
    questions = _factual_questions()
    assert len(questions) > 50
    for question, fact in questions:
        hits = search(question, 3, corpus_id=corpus.pk)
        assert hits, question
        top = re.sub(r"</?mark>", "", hits[0].snippet) + " " + hits[0].title
        assert re.search(rf"\b{re.escape(fact)}\b", top), (question, fact, hits[0])
    # Seeding again replaces the corpus rather than doubling it.
    count = corpus.documents.count()
    call_command("seed_demo", pairs=3, gold=0)
    assert Corpus.objects.get(name=DEMO_CORPUS_NAME).documents.count() == count


def test_search_without_a_corpus_says_there_is_none(client, annotator_a):
    client.force_login(annotator_a, backend="django.contrib.auth.backends.ModelBackend")
    html = client.get("/tools/search", {"q": "capital of France"}).content.decode()
    assert "has no corpus to search" in html
    assert "No results" not in html
