"""Export and curation defects a reviewer reproduced (review 14): an unverified silver pair
written instead of the gold or human-verified copy of the same comparison; evaluation prompts
under 13 words (every unspaced CJK prompt) missed inside a longer turn; a near-duplicate
threshold above ~0.98 crashing datasketch's LSH; export_dataset exporting nothing for a round
the campaign lacks."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotation.models import Pair, Round
from scoring.datasets.curation import pool_curate
from scoring.datasets.curation.decontamination import (
    EvaluationIndex,
    normalised_words,
    turn_texts,
)
from scoring.datasets.curation.near_duplicates import EXACT, NEAR, DuplicateFinder
from scoring.datasets.export import (
    ExportFilters,
    InvalidExport,
    export_condition,
    export_create,
    export_queryset,
    export_run,
    export_write,
)
from scoring.models import EvaluationItem, EvaluationSet, ExportSnapshot, Job
from tests.factories import PairFactory

# --- A: a verified pair beats an unverified silver repeat ----------------------------------

CONVERSATION = [{"role": "user", "content": "Which reply is kinder to a grieving friend?"}]
KIND, UNKIND = "I am so sorry, I am here for you.", "Get over it."


def _silver_repeat(campaign) -> Pair:
    """An unverified silver pair whose source prefers the unkind reply, imported first."""
    return PairFactory(
        campaign=campaign,
        conversation=CONVERSATION,
        response_a=UNKIND,
        response_b=KIND,
        silver_preference=1,
        content_hash="s" * 64,
    )


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("verified", ["gold", "unanimous"])
def test_a_verified_pair_is_written_rather_than_an_earlier_silver_repeat(
    campaign, tmp_path, verified
):
    silver = _silver_repeat(campaign)
    if verified == "gold":
        fields = {"is_gold": True, "gold_preference": 2, "provenance": "gold"}
    else:
        fields = {"provenance": "unanimous", "labels_count": 3}
    human = PairFactory(
        campaign=campaign,
        conversation=CONVERSATION,
        response_a=KIND,
        response_b=UNKIND,
        consensus_preference=2 if verified == "gold" else 1,
        status=Pair.Status.COMPLETE,
        content_hash="h" * 64,
        **fields,
    )
    other_silver = PairFactory(campaign=campaign, silver_preference=1)
    assert silver.pk < human.pk < other_silver.pk
    path = tmp_path / "out.jsonl"
    result = export_write(
        campaign=campaign,
        filters=ExportFilters(include_silver=True),
        file_format="jsonl",
        destination=path,
    )
    rows = _read_jsonl(path)
    written = {(row["pair_id"], row["provenance"], row["chosen"][-1]["content"]) for row in rows}
    assert written == {
        (human.pk, verified, KIND),
        (other_silver.pk, "silver", other_silver.response_a),
    }
    manifest = result.manifest
    assert manifest["counts"]["rows"] == 2
    assert manifest["counts"]["by_provenance"] == {verified: 1, "silver": 1}
    assert manifest["deduplication"]["exact"] == 1
    assert manifest["deduplication"]["exact_by_provenance"] == {"silver": 1}
    assert manifest["max_pair_id"] == other_silver.pk


def test_the_export_reads_the_verified_pass_before_the_silver_one(campaign):
    from scoring.datasets.export.filters import export_conditions

    silver = PairFactory(campaign=campaign, silver_preference=1)
    gold = PairFactory(campaign=campaign, is_gold=True, gold_preference=1, provenance="gold")
    filters = ExportFilters(include_silver=True)
    first, second = export_conditions(filters)
    pairs = Pair.objects.filter(campaign=campaign)
    assert list(pairs.filter(first).values_list("pk", flat=True)) == [gold.pk]
    assert list(pairs.filter(second).values_list("pk", flat=True)) == [silver.pk]
    # export_condition and export_queryset still select both passes together.
    assert set(pairs.filter(export_condition(filters)).values_list("pk", flat=True)) == {
        silver.pk,
        gold.pk,
    }
    assert export_queryset(campaign=campaign, filters=filters).count() == 2
    assert len(export_conditions(ExportFilters())) == 1
    assert len(export_conditions(ExportFilters(provenance=(), include_silver=True))) == 1


# --- B: short and CJK evaluation prompts ---------------------------------------------------

CJK_PROMPT = (
    "请详细解释为什么晴朗的下午天空看起来是蓝色的，而在黄昏时分天空却呈现出红色和橙色，"
    "并举例说明瑞利散射的原理"
)
TWELVE_WORDS = "What is the capital city of Australia and why was it chosen?"


def test_cjk_characters_are_tokens_of_their_own():
    assert normalised_words("晴朗的天空, Blue sky! カナ 한국") == [
        "晴", "朗", "的", "天", "空", "blue", "sky", "カ", "ナ", "한", "국"
    ]  # fmt: skip


@pytest.mark.parametrize("prompt", [CJK_PROMPT, TWELVE_WORDS], ids=["cjk", "english_12_words"])
def test_an_evaluation_prompt_copied_inside_a_longer_turn_contaminates(prompt):
    index = EvaluationIndex()
    index.add(prompt)
    assert index.contaminates(turn_texts([{"role": "user", "content": f"Answer: {prompt} Ta"}]))
    assert not index.contaminates(["An unrelated question about the weather in Paris today."])


def test_a_cjk_13_gram_contaminates_and_a_12_gram_does_not():
    index = EvaluationIndex()
    index.add(CJK_PROMPT)
    assert index.contaminates(["问题：" + CJK_PROMPT[2:15] + "？"])  # 13 of its characters
    assert not index.contaminates(["问题：" + CJK_PROMPT[2:14] + "？"])  # 12


def test_a_prompt_of_a_few_words_still_contaminates_only_an_identical_turn():
    index = EvaluationIndex()
    index.add("Tell me a joke")
    index.add("什么是机器学习")  # 7 tokens
    assert index.contaminates(["tell me a JOKE!"])
    assert index.contaminates(["什么是机器学习？"])
    assert not index.contaminates(["Tell me a joke about cats, please."])
    assert not index.contaminates(["请问什么是机器学习的基本原理"])


def test_the_export_leaves_out_a_pair_embedding_a_cjk_evaluation_prompt(campaign, tmp_path):
    evaluation_set = EvaluationSet.objects.create(
        campaign=campaign, name="bench-zh", sha256="0" * 64, pairs_count=1
    )
    EvaluationItem.objects.create(
        evaluation_set=evaluation_set,
        position=0,
        subset="chat",
        conversation=[{"role": "user", "content": CJK_PROMPT}],
        chosen="c",
        rejected="r",
        prompt=CJK_PROMPT,
    )
    PairFactory(
        campaign=campaign,
        conversation=[{"role": "user", "content": "请回答：" + CJK_PROMPT + "。谢谢！"}],
        status=Pair.Status.COMPLETE,
        provenance="unanimous",
        consensus_preference=1,
        labels_count=3,
    )
    kept = PairFactory(
        campaign=campaign,
        status=Pair.Status.COMPLETE,
        provenance="unanimous",
        consensus_preference=1,
        labels_count=3,
    )
    path = tmp_path / "out.jsonl"
    result = export_write(
        campaign=campaign, filters=ExportFilters(), file_format="jsonl", destination=path
    )
    assert [row["pair_id"] for row in _read_jsonl(path)] == [kept.pk]
    assert result.manifest["decontamination"]["dropped"] == 1


# --- C: a near-duplicate threshold up to 1 -------------------------------------------------


@pytest.mark.parametrize("threshold", [0.99, 1.0])
def test_a_threshold_near_one_builds_the_finder_and_confirms_against_itself(threshold):
    finder = DuplicateFinder(threshold=threshold)
    conversation = [{"role": "user", "content": "How do I boil an egg so the yolk stays soft?"}]
    answers = ("Boil it for six minutes, then cool it.", "Fry it instead.")
    assert finder.check(conversation, *answers) is None
    assert finder.check(conversation, *reversed(answers)) == EXACT
    # The same words in another case and punctuation: another exact key, the same shingles.
    same_words = [{"role": "user", "content": "how do i boil an egg, so the yolk stays soft"}]
    assert finder.check(same_words, "boil it for six minutes then cool it", answers[1]) == NEAR
    # One word changed: far below the threshold, so not a near-duplicate.
    assert finder.check(conversation, answers[0], "Poach it instead.") is None


def test_an_export_with_threshold_one_succeeds(campaign, admin_user, sent_tasks, tmp_path):
    PairFactory(
        campaign=campaign,
        status=Pair.Status.COMPLETE,
        provenance="unanimous",
        consensus_preference=1,
        labels_count=3,
    )
    snapshot = export_create(
        campaign=campaign,
        file_format="jsonl",
        filters=ExportFilters(near_duplicate_threshold=1.0),
        user=admin_user,
    )
    export_run(job_id=snapshot.job_id, reraise=False)
    job = Job.objects.get(pk=snapshot.job_id)
    assert job.status == Job.Status.SUCCEEDED, job.error[:300]
    snapshot = ExportSnapshot.objects.get(pk=snapshot.pk)
    assert snapshot.manifest["counts"]["rows"] == 1


def test_pool_curation_with_threshold_one_runs(campaign):
    PairFactory(campaign=campaign, silver_preference=1)

    def agree(items):
        return [1.0] * len(items)

    result = pool_curate(campaign=campaign, gold=agree, best=agree, near_duplicate_threshold=1.0)
    assert result.pool == 1


# --- D: export_dataset refuses what the campaign lacks, as the API does --------------------


def test_export_dataset_refuses_a_round_the_campaign_lacks(campaign, tmp_path):
    first = Round.objects.create(campaign=campaign, number=1)
    PairFactory(
        campaign=campaign,
        round=first,
        status=Pair.Status.COMPLETE,
        provenance="unanimous",
        consensus_preference=1,
        labels_count=3,
    )
    out = tmp_path / "out.jsonl"
    with pytest.raises(CommandError, match="rounds: this campaign has no round 11"):
        call_command(
            "export_dataset",
            str(out),
            "--campaign",
            campaign.name,
            "--rounds",
            "1",
            "11",
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )
    assert list(tmp_path.iterdir()) == []
    stdout = io.StringIO()
    call_command(
        "export_dataset",
        str(out),
        "--campaign",
        campaign.name,
        "--rounds",
        "1",
        stdout=stdout,
        stderr=io.StringIO(),
    )
    assert json.loads(stdout.getvalue().strip().splitlines()[-1])["counts"]["rows"] == 1


def test_export_create_still_refuses_an_unknown_round_or_evaluation_set(campaign):
    with pytest.raises(InvalidExport, match="rounds: this campaign has no round 4"):
        export_create(campaign=campaign, file_format="jsonl", filters=ExportFilters(rounds=(4,)))
    with pytest.raises(InvalidExport, match="evaluation_sets: unknown evaluation set nope"):
        export_create(
            campaign=campaign,
            file_format="jsonl",
            filters=ExportFilters(evaluation_sets=("nope",)),
        )
    assert not ExportSnapshot.objects.filter(campaign=campaign).exists()
