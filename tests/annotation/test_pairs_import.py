"""Importing through the service and the command: all or nothing, deduplicated."""

from __future__ import annotations

import gzip
import json
import sys
from io import StringIO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from annotation.importers import ATTRIBUTE_NAMES, ImportFormatError
from annotation.importers import row_fields as row_shapes
from annotation.models import Campaign, Pair
from annotation.services import imports
from annotation.services.imports import pairs_import
from tests.conftest import HH_RLHF
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def native_rows(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "conversation": [{"role": "user", "content": f"What is {i} + {i}?"}],
            "response_a": f"{2 * i}",
            "response_b": f"{2 * i + 1}",
            "external_id": f"q{i}",
            "attributes": {"task_category": "math", "objectivity": "objective"},
            "preferred": "a",
        }
        for i in range(start, start + n)
    ]


def write_jsonl(path, rows, *, gz=False):
    text = "".join(json.dumps(row) + "\n" for row in rows)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_it_imports_every_row_with_attributes_and_silver_label(tmp_path, campaign):
    result = pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "p.jsonl", native_rows(5)))
    assert (result.rows_read, result.created, result.duplicates) == (5, 5, 0)
    pair = Pair.objects.get(campaign=campaign, external_id="q3")
    assert pair.conversation == [{"role": "user", "content": "What is 3 + 3?"}]
    assert pair.task_category == "math" and pair.objectivity == "objective"
    assert pair.silver_preference == 1
    assert pair.status == Pair.Status.QUEUED and pair.round.number == 1
    assert pair.slot_cap == campaign.annotators_per_pair


def test_it_skips_duplicates_within_the_file_and_against_the_campaign(tmp_path, campaign):
    pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "a.jsonl", native_rows(3)))
    rows = native_rows(5) + native_rows(2)  # 3 already imported, 2 repeated within the file
    result = pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "b.jsonl", rows))
    assert (result.rows_read, result.created, result.duplicates) == (7, 2, 5)
    assert Pair.objects.filter(campaign=campaign).count() == 5


def test_a_repeat_of_a_pair_from_an_earlier_batch_is_skipped(tmp_path, campaign, small_batches):
    rows = native_rows(3500) + native_rows(1, start=10) + native_rows(1, start=2400)
    result = pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "p.jsonl", rows))
    assert (result.rows_read, result.created, result.duplicates) == (3502, 3500, 2)
    assert Pair.objects.filter(campaign=campaign).count() == 3500
    assert Pair.objects.get(campaign=campaign, external_id="q2400").response_a == "4800"


def test_the_import_leaves_the_thread_switch_interval_as_it_was(tmp_path, campaign):
    before = sys.getswitchinterval()
    pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "good.jsonl", native_rows(3)))
    assert sys.getswitchinterval() == before
    bad = native_rows(3)
    bad[1]["response_a"] = ""
    with pytest.raises(ImportFormatError, match="^line 2: response_a is empty"):
        pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "bad.jsonl", bad))
    assert sys.getswitchinterval() == before


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of 1,000 rows, so that a few thousand rows keep several batches in flight."""
    monkeypatch.setattr(imports, "_BATCH", 1000)


def test_a_bad_row_rejects_the_whole_file_naming_its_line(tmp_path, campaign, small_batches):
    rows = native_rows(6000)  # batches are written and waiting when the fault is found
    rows[5500]["response_b"] = ""
    path = write_jsonl(tmp_path / "bad.jsonl.gz", rows, gz=True)
    with pytest.raises(ImportFormatError, match="^line 5501: response_b is empty") as excinfo:
        pairs_import(campaign=campaign, path=path)
    assert excinfo.value.line == 5501
    assert "5501" in str(excinfo.value)
    assert not Pair.objects.filter(campaign=campaign).exists()


def test_a_lone_surrogate_in_a_source_rejects_the_file_naming_its_item(tmp_path, campaign):
    # json.dumps escapes "\ud800" as the JSON text \\ud800, which decodes back to a lone surrogate.
    rows = native_rows(3)
    rows[1]["source"] = "web\ud800"
    path = tmp_path / "p.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(ImportFormatError, match="^item 2: source is not valid Unicode"):
        pairs_import(campaign=campaign, path=path)
    assert not Pair.objects.filter(campaign=campaign).exists()


def test_broken_json_in_the_middle_leaves_nothing_behind(tmp_path, campaign):
    path = write_jsonl(tmp_path / "p.jsonl", native_rows(4))
    lines = path.read_text().splitlines()
    lines.insert(2, '{"conversation": [')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImportFormatError, match="^line 3: invalid JSON") as excinfo:
        pairs_import(campaign=campaign, path=path)
    assert excinfo.value.line == 3
    assert Pair.objects.count() == 0


def test_parquet_and_hh_rlhf_import(tmp_path, campaign):
    table = pa.Table.from_pylist(
        [{"prompt": f"Say {i}", "chosen": f"{i}", "rejected": f"not {i}"} for i in range(10)]
    )
    pq.write_table(table, tmp_path / "p.parquet")
    assert pairs_import(campaign=campaign, path=tmp_path / "p.parquet").created == 10
    # A fresh campaign, so that no pair of the file can count as a duplicate of an earlier one:
    # every one of the 2,312 distinct transcript pairs must be created.
    fresh = CampaignFactory()
    result = pairs_import(campaign=fresh, path=HH_RLHF)
    assert (result.rows_read, result.created, result.duplicates) == (2312, 2312, 0)
    assert Pair.objects.filter(campaign=fresh).count() == 2312
    # The file's first row, found by its content: its shared turns become the conversation,
    # its chosen final reply response A and its rejected one response B.
    with gzip.open(HH_RLHF, "rt", encoding="utf-8") as lines:
        first = json.loads(next(lines))
    chosen_reply = first["chosen"].rsplit("\n\nAssistant:", 1)[1].strip()
    rejected_reply = first["rejected"].rsplit("\n\nAssistant:", 1)[1].strip()
    opening = first["chosen"].split("\n\nAssistant:", 1)[0].removeprefix("\n\nHuman:").strip()
    sample = Pair.objects.get(campaign=fresh, response_a__startswith=chosen_reply[:60])
    assert sample.conversation[0] == {"role": "user", "content": opening}
    assert sample.response_a.strip() == chosen_reply
    assert sample.response_b.strip() == rejected_reply
    assert sample.silver_preference == 1


def test_gold_import_needs_labels_and_is_never_queued(tmp_path, campaign):
    result = pairs_import(
        campaign=campaign, path=write_jsonl(tmp_path / "g.jsonl", native_rows(3)), as_gold=True
    )
    assert result.created == 3
    gold = Pair.objects.filter(campaign=campaign)
    assert all(p.is_gold and p.gold_preference == 1 and p.round is None for p in gold)
    assert {p.status for p in gold} == {Pair.Status.COMPLETE}
    unlabeled = native_rows(2, start=10)
    for row in unlabeled:
        del row["preferred"]
    with pytest.raises(ImportFormatError, match="^line 1: a gold import needs") as excinfo:
        pairs_import(
            campaign=campaign, path=write_jsonl(tmp_path / "u.jsonl", unlabeled), as_gold=True
        )
    assert excinfo.value.line == 1


@pytest.mark.smoke
def test_the_command_creates_the_campaign_and_reports_counts(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", native_rows(4))
    out = StringIO()
    call_command("import_pairs", str(path), "--campaign", "cmd", stdout=out)
    report = json.loads(out.getvalue().strip().splitlines()[-1])
    assert report["created"] == 4 and report["campaign"] == "cmd"
    assert Campaign.objects.get(name="cmd").pairs.count() == 4


def test_the_command_rejects_a_bad_file_with_the_line(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt,response_a,response_b\nhi,hello,hey\nhi again,,yo\n")
    with pytest.raises(CommandError, match="line 3"):
        call_command("import_pairs", str(path), "--campaign", "csv")
    assert not Pair.objects.exists()


def test_every_field_of_a_row_lands_in_its_own_column(tmp_path, campaign):
    # The importer builds rows as bare tuples in _COLUMNS order (for COPY): a value in the
    # wrong position would still fit most text columns, so each gets a value of its own.
    attributes = {
        "task_category": "cat-value",
        "objectivity": "obj-value",
        "controversiality": "con-value",
        "desired_attributes": "des-value",
        "annotation_guideline": "gui-value",
    }
    row = {
        "conversation": [{"role": "user", "content": "prompt-value"}],
        "response_a": "a-value",
        "response_b": "b-value",
        "source": "source-value",
        "external_id": "id-value",
        "attributes": attributes,
        "preferred": "b",
    }
    pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "one.jsonl", [row]))
    pair = Pair.objects.get(campaign=campaign)
    assert pair.conversation == row["conversation"]
    assert (pair.response_a, pair.response_b) == ("a-value", "b-value")
    assert (pair.source, pair.external_id) == ("source-value", "id-value")
    assert {name: getattr(pair, name) for name in attributes} == attributes
    assert pair.silver_preference == -1 and not pair.is_gold and pair.gold_preference is None
    assert (pair.priority, pair.priority_reason, pair.curation) == (0.0, "", "")
    assert (pair.slots_taken, pair.labels_count, pair.slot_cap) == (0, 0, 3)
    assert pair.status == Pair.Status.QUEUED and pair.round is not None
    assert pair.provenance == Pair.Provenance.NONE and pair.consensus_preference is None
    assert pair.disagreement is None and pair.created_at is not None
    assert len(pair.content_hash) == 64


def test_the_importers_length_limits_are_the_columns():
    assert Pair._meta.get_field("external_id").max_length == row_shapes.EXTERNAL_ID_MAX_CHARS
    assert Pair._meta.get_field("source").max_length == row_shapes.SOURCE_MAX_CHARS
    for name, max_chars in row_shapes.SHORT_ATTRIBUTE_MAX_CHARS.items():
        assert Pair._meta.get_field(name).max_length == max_chars
    limited = {
        field.name
        for field in Pair._meta.get_fields()
        if getattr(field, "max_length", None) and field.name in ATTRIBUTE_NAMES
    }
    assert limited == set(row_shapes.SHORT_ATTRIBUTE_MAX_CHARS)


def test_a_category_too_long_for_its_column_rejects_the_file_naming_its_line(tmp_path, campaign):
    bad = native_rows(4)
    bad[2]["attributes"]["task_category"] = "c" * 101
    with pytest.raises(ImportFormatError, match="^line 3: attributes.task_category") as excinfo:
        pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "long.jsonl", bad))
    assert excinfo.value.line == 3
    assert not Pair.objects.filter(campaign=campaign).exists()
