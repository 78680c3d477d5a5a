"""Review 20: ``export_dataset`` takes the filters the API and the dashboard take. It had no way
to turn near-duplicate search off (the README's advice for big campaigns: the search keeps about
4.5 KB a written pair, some 180 GB at 40M pairs), nor to leave out "both bad" pairs, add
rewrites, or decontaminate against chosen evaluation sets only; and it did not say where the
outcomes file went."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.models import Label, Outcome
from tests.scoring.test_export import voted_pair

WORDS = " ".join(f"word{n}" for n in range(100))


@pytest.fixture
def annotators(annotator_a, annotator_b, annotator_c):
    return [annotator_a, annotator_b, annotator_c]


@pytest.fixture
def pairs(campaign, annotators):
    """A pair, a near repeat of it (one word of 100 changed), an exact repeat, a both-bad pair."""
    conversation = [{"role": "user", "content": "Recite the words."}]
    common = {"conversation": conversation, "consensus": 1, "provenance": "unanimous"}
    first = voted_pair(
        campaign, annotators, [1, 1, 1], response_a=WORDS, response_b="No.", **common
    )
    near = voted_pair(
        campaign,
        annotators,
        [1, 1, 1],
        response_a=WORDS.replace("word99", "word100"),
        response_b="No!",
        **common,
    )
    exact = voted_pair(
        campaign, annotators, [1, 1, 1], response_a="No.", response_b=WORDS, **common
    )
    both_bad = voted_pair(
        campaign,
        annotators,
        [0, 0, 0],
        consensus=0,
        provenance="unanimous",
        consensus_outcome=Outcome.BOTH_BAD,
    )
    Label.objects.filter(pair=both_bad).update(outcome=Outcome.BOTH_BAD)
    return {"first": first, "near": near, "exact": exact, "both_bad": both_bad}


def _export(*args: str) -> tuple[dict, str]:
    out = io.StringIO()
    call_command("export_dataset", *args, stdout=out, stderr=io.StringIO())
    lines = out.getvalue().strip().splitlines()
    return json.loads(lines[-1]), "\n".join(lines[:-1])


def _ids(path: Path) -> list[int]:
    return [json.loads(line)["pair_id"] for line in path.read_text().splitlines()]


def test_the_command_exports_near_repeats_when_near_duplicate_search_is_off(
    campaign, pairs, tmp_path
):
    out = tmp_path / "default.jsonl"
    manifest, _ = _export(str(out), "--campaign", campaign.name)
    assert _ids(out) == [pairs["first"].pk]
    assert (manifest["deduplication"]["exact"], manifest["deduplication"]["near"]) == (1, 1)

    out = tmp_path / "exact-only.jsonl"
    manifest, _ = _export(
        str(out), "--campaign", campaign.name, "--near-duplicate-threshold", "none"
    )
    assert _ids(out) == [pairs["first"].pk, pairs["near"].pk]
    assert manifest["deduplication"]["near_duplicate_threshold"] is None
    assert manifest["filters"]["near_duplicate_threshold"] is None

    out = tmp_path / "all.jsonl"
    manifest, _ = _export(str(out), "--campaign", campaign.name, "--no-deduplicate")
    assert _ids(out) == [pairs["first"].pk, pairs["near"].pk, pairs["exact"].pk]
    assert manifest["deduplication"]["enabled"] is False


def test_the_command_leaves_out_both_bad_pairs_or_says_where_they_went(campaign, pairs, tmp_path):
    out = tmp_path / "kept.jsonl"
    manifest, said = _export(str(out), "--campaign", campaign.name)
    assert manifest["counts"]["outcomes_written"] == 1
    assert f"wrote 1 to {tmp_path / 'kept.outcomes.jsonl'}" in said

    out = tmp_path / "left-out.jsonl"
    manifest, _ = _export(str(out), "--campaign", campaign.name, "--outcomes", "exclude")
    assert manifest["counts"]["outcomes_written"] == 0 and manifest["counts"]["both_bad"] == 1
    assert not (tmp_path / "left-out.outcomes.jsonl").exists()


def test_the_command_refuses_a_threshold_out_of_range_or_an_unknown_evaluation_set(
    campaign, pairs, tmp_path
):
    out = tmp_path / "x.jsonl"
    with pytest.raises(CommandError, match="near_duplicate_threshold must lie between"):
        _export(str(out), "--campaign", campaign.name, "--near-duplicate-threshold", "0.2")
    with pytest.raises(CommandError, match="unknown evaluation set nope"):
        _export(str(out), "--campaign", campaign.name, "--evaluation-sets", "nope")
    with pytest.raises(CommandError, match="applies without --no-decontaminate only"):
        _export(
            str(out), "--campaign", campaign.name, "--no-decontaminate", "--evaluation-sets", "x"
        )
    # A threshold that --no-deduplicate would silently ignore (review 21).
    with pytest.raises(CommandError, match="applies without --no-deduplicate only"):
        _export(
            str(out),
            "--campaign",
            campaign.name,
            "--no-deduplicate",
            "--near-duplicate-threshold",
            "0.9",
        )
    assert not out.exists()
