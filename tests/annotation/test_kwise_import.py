"""Importing K-wise items: native `responses` rows, UltraFeedback `completions` rows, bad rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from annotation.importers import ImportFormatError, parse_all
from annotation.models import Campaign, ItemKind, Pair
from annotation.services.imports import pairs_import
from tests.factories import CampaignFactory


def jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def kwise_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "prompt": "Name a prime number.",
        "responses": ["2", {"content": "4", "model": "small"}, {"content": "7"}, "9"],
    }
    row.update(overrides)
    return row


def ultrafeedback_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source": "evol_instruct",
        "instruction": "Write a haiku about rain.",
        "models": ["m1", "m2", "m3", "m4"],
        "completions": [
            {"model": "m1", "response": "Rain taps the window", "overall_score": 6.5},
            {"model": "m2", "response": "Clouds weep softly down", "overall_score": 8.0},
            {"model": "m3", "response": "Drops on the tin roof", "overall_score": 6.5},
            {"model": "m4", "response": "It is raining.", "overall_score": 2.0},
        ],
    }
    row.update(overrides)
    return row


def test_it_reads_native_kwise_rows_with_strings_and_objects(tmp_path):
    (record,) = parse_all(jsonl(tmp_path / "items.jsonl", [kwise_row()]))
    assert record.raw_format == "native_kwise"
    assert record.responses == (
        {"content": "2", "model": ""},
        {"content": "4", "model": "small"},
        {"content": "7", "model": ""},
        {"content": "9", "model": ""},
    )
    assert (record.response_a, record.response_b) == ("2", "4")
    assert record.conversation == ({"role": "user", "content": "Name a prime number."},)
    assert record.silver_ranking is None


def test_a_native_row_may_carry_a_silver_ranking(tmp_path):
    row = kwise_row(silver_ranking=[[2, 0], [1, 3]])
    (record,) = parse_all(jsonl(tmp_path / "items.jsonl", [row]))
    assert record.silver_ranking == ((0, 2), (1, 3))


def test_ultrafeedback_scores_become_a_silver_ranking_with_ties(tmp_path):
    (record,) = parse_all(jsonl(tmp_path / "uf.jsonl", [ultrafeedback_row()]))
    assert record.raw_format == "ultrafeedback"
    assert [response["model"] for response in record.responses or ()] == ["m1", "m2", "m3", "m4"]
    assert record.responses and record.responses[3]["content"] == "It is raining."
    # 8.0 best; the two 6.5s tie; 2.0 worst.
    assert record.silver_ranking == ((1,), (0, 2), (3,))
    assert record.source == "evol_instruct"


def test_ultrafeedback_rows_without_every_score_have_no_silver_ranking(tmp_path):
    row = ultrafeedback_row()
    del row["completions"][2]["overall_score"]
    (record,) = parse_all(jsonl(tmp_path / "uf.jsonl", [row]))
    assert record.silver_ranking is None


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (kwise_row(responses=["only one"]), "responses must hold 2 to 9 responses, got 1"),
        (kwise_row(responses=[str(n) for n in range(10)]), "must hold 2 to 9 responses, got 10"),
        (kwise_row(responses="2, 4, 7"), "responses must be a list of responses, got string"),
        (kwise_row(responses=["2", 4]), "responses[1] must be a string or an object"),
        (kwise_row(responses=["2", {"model": "x"}]), "missing field responses[1].content"),
        (kwise_row(responses=["2", "3", "2"]), "responses[0] and responses[2] are identical"),
        (kwise_row(silver_ranking=[[0, 1], [2]]), "silver_ranking must name every response"),
        (
            ultrafeedback_row(completions=[{"model": "m1", "response": "x"}]),
            "completions must hold 2 to 9 responses, got 1",
        ),
        (
            ultrafeedback_row(completions=["a", "b"]),
            "completions[0] must be an object with response, got string",
        ),
    ],
)
def test_bad_kwise_rows_name_their_line(tmp_path, row, message):
    path = jsonl(tmp_path / "bad.jsonl", [kwise_row(), row])
    with pytest.raises(ImportFormatError) as caught:
        parse_all(path)
    assert caught.value.line == 2
    assert message in str(caught.value)
    assert str(caught.value).startswith("line 2: ")


def test_kwise_items_are_stored_in_a_ranking_campaign(db, tmp_path):
    campaign = CampaignFactory(item_kind=ItemKind.RANKING)
    path = jsonl(tmp_path / "items.jsonl", [kwise_row(), ultrafeedback_row(), kwise_row()])
    result = pairs_import(campaign=campaign, path=path)
    assert (result.created, result.duplicates) == (2, 1)
    native, uf = Pair.objects.filter(campaign=campaign).order_by("id")
    assert [r["content"] for r in native.responses] == ["2", "4", "7", "9"]
    assert native.responses[1]["model"] == "small"
    assert (native.response_a, native.response_b) == ("2", "4")
    assert uf.silver_ranking == [[1], [0, 2], [3]]
    assert native.silver_ranking is None


def test_a_pair_campaign_refuses_kwise_rows_and_a_ranking_campaign_ab_rows(db, tmp_path):
    pairs_campaign = CampaignFactory()
    with pytest.raises(ImportFormatError, match="line 1: rows with several responses"):
        pairs_import(campaign=pairs_campaign, path=jsonl(tmp_path / "k.jsonl", [kwise_row()]))
    ranking_campaign = CampaignFactory(item_kind=ItemKind.RANKING)
    ab = {"prompt": "Hi?", "response_a": "Hello", "response_b": "Go away"}
    with pytest.raises(ImportFormatError, match="line 1: a ranking campaign takes rows"):
        pairs_import(campaign=ranking_campaign, path=jsonl(tmp_path / "ab.jsonl", [ab]))
    assert not Pair.objects.exists()


def test_the_import_command_creates_a_ranking_campaign_with_its_rule(db, tmp_path, capsys):
    path = jsonl(tmp_path / "uf.jsonl", [ultrafeedback_row(), kwise_row()])
    call_command("import_pairs", str(path), "--campaign", "uf", "--rankings", "adjacent")
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["created"] == 2
    campaign = Campaign.objects.get(name="uf")
    assert (campaign.item_kind, campaign.ranking_expansion) == ("ranking", "adjacent")
    assert Pair.objects.filter(campaign=campaign, responses__isnull=False).count() == 2
