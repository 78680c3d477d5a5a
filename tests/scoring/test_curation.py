"""Stage-2 curation: the rules with known model answers, decontamination, deduplication."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from django.core.management import call_command

from annotation.models import Pair
from scoring.datasets.curation import (
    CurationError,
    CurationRules,
    EvaluationIndex,
    curation_create,
    curation_models,
    curation_run,
    curation_verdicts,
    evaluation_prompts_read,
    evaluation_set_upload,
    model_version_scorer,
    pool_curate,
)
from scoring.datasets.export import ExportFilters, export_rows
from scoring.jobs.runner import ClaimOutcome
from scoring.models import EvaluationPrompt, Job, ModelVersion, PairScore
from tests.conftest import api_client_for
from tests.factories import PairFactory
from tests.scoring.test_export import add_labels

# --- The rules, with known answers --------------------------------------------------------


def test_a_pair_is_kept_only_when_both_models_agree_with_its_label():
    verdicts = curation_verdicts(
        silver_preferences=[1, 1, -1, -2, 1, 1],
        p_gold=[0.9, 0.9, 0.1, 0.4, 0.5, 0.2],
        p_best=[0.6, 0.4, 0.3, 0.6, 0.9, 0.2],
    )
    # A chosen: p(A) must exceed 0.5 for both; B chosen: p(A) must be below 0.5 for both.
    assert verdicts == ["kept", "discarded", "kept", "discarded", "discarded", "discarded"]


def test_thresholds_are_configurable():
    rules = CurationRules(keep_threshold=0.8)
    verdicts = curation_verdicts(
        silver_preferences=[1, 1, -1], p_gold=[0.85, 0.75, 0.1], p_best=[0.9, 0.9, 0.15],
        rules=rules,
    )
    assert verdicts == ["kept", "discarded", "kept"]


def test_recycling_flips_only_pairs_both_models_confidently_reverse():
    rules = CurationRules(recycle=True, recycle_threshold=0.9)
    verdicts = curation_verdicts(
        silver_preferences=[1, 1, -1, -1, 1],
        p_gold=[0.05, 0.05, 0.95, 0.95, 0.2],
        p_best=[0.08, 0.3, 0.92, 0.85, 0.05],
        rules=rules,
    )
    assert verdicts == ["recycled", "discarded", "recycled", "discarded", "discarded"]
    without = curation_verdicts(
        silver_preferences=[1], p_gold=[0.05], p_best=[0.08], rules=CurationRules()
    )
    assert without == ["discarded"]


def test_a_judge_keeps_a_pair_the_models_reject():
    verdicts = curation_verdicts(
        silver_preferences=[1, 1, -1], p_gold=[0.2, 0.2, 0.9], p_best=[0.3, 0.3, 0.9],
        p_judge=[0.9, 0.1, 0.2],
    )
    assert verdicts == ["kept", "discarded", "kept"]


def test_it_refuses_inconsistent_thresholds_ties_and_bad_probabilities():
    with pytest.raises(CurationError, match=r"keep_threshold must lie in \[0, 1\)"):
        CurationRules(keep_threshold=1.0)
    with pytest.raises(CurationError, match="recycle_threshold must exceed"):
        CurationRules(keep_threshold=0.5, recycle=True, recycle_threshold=0.4)
    with pytest.raises(CurationError, match="a tie carries no chosen/rejected label"):
        curation_verdicts(silver_preferences=[0], p_gold=[0.5], p_best=[0.5])
    with pytest.raises(CurationError, match="one probability in"):
        curation_verdicts(silver_preferences=[1, 1], p_gold=[0.5], p_best=[0.5, 0.5])
    with pytest.raises(CurationError, match="one probability in"):
        curation_verdicts(silver_preferences=[1], p_gold=[1.5], p_best=[0.5])


# --- Decontamination ----------------------------------------------------------------------

PROMPT = (
    "Write a function that returns the nth Fibonacci number using memoization and explain "
    "its time complexity in plain words"
)


def test_a_shared_13_gram_contaminates_whatever_the_case_and_punctuation():
    index = EvaluationIndex()
    index.add(PROMPT)
    words = PROMPT.split()
    thirteen = "Please: " + " ".join(words[3:16]).upper().replace(" ", ",  ") + "!"
    twelve = " ".join(words[3:15])
    assert index.contaminates(["hello", thirteen])
    assert not index.contaminates([twelve + " zebra " + " ".join(words[15:])])
    # n-grams never span two turns
    assert not index.contaminates([" ".join(words[:8]), " ".join(words[8:16])])


def test_a_short_evaluation_prompt_contaminates_only_an_identical_turn():
    index = EvaluationIndex()
    index.add("What is the capital of France?")
    assert index.contaminates(["what is the CAPITAL of france"])
    assert not index.contaminates(["What is the capital of France and of Spain?"])


def test_evaluation_prompts_are_read_from_common_formats():
    jsonl = b'{"prompt": "first"}\n{"conversation": [{"role": "user", "content": "second"}]}\n'
    assert evaluation_prompts_read(io.BytesIO(jsonl), filename="x.jsonl") == ["first", "second"]
    assert evaluation_prompts_read(io.BytesIO(b"one\n\ntwo\n"), filename="x.txt") == [
        "one", "two"
    ]
    with pytest.raises(CurationError, match="cannot read evaluation set x.json"):
        evaluation_prompts_read(io.BytesIO(b"{not json"), filename="x.json")


# --- The pool -----------------------------------------------------------------------------


def silver(campaign, preference, **fields) -> Pair:
    return PairFactory(
        campaign=campaign, silver_preference=preference, status=Pair.Status.POOLED, **fields
    )


def known(answers: dict[int, float]):
    """A scorer whose p(A better) per pair is fixed in advance."""
    calls = []

    def score(items):
        calls.append([item.pair_id for item in items])
        return np.array([answers[item.pair_id] for item in items])

    score.calls = calls  # type: ignore[attr-defined]
    return score


def curation_of(*pairs) -> list[str]:
    return [Pair.objects.get(pk=pair.pk).curation for pair in pairs]


@pytest.mark.smoke
def test_the_pool_is_kept_discarded_or_recycled_and_exports_as_silver(campaign, annotator_a):
    agree, split, reversed_pair, b_chosen = (silver(campaign, p) for p in (1, 1, 2, -1))
    labelled = silver(campaign, 1)
    add_labels(labelled, [annotator_a], [1])  # a human label takes it out of the pool
    gold = known({agree.pk: 0.8, split.pk: 0.7, reversed_pair.pk: 0.02, b_chosen.pk: 0.3})
    best = known({agree.pk: 0.9, split.pk: 0.2, reversed_pair.pk: 0.04, b_chosen.pk: 0.1})

    result = pool_curate(
        campaign=campaign, gold=gold, best=best, rules=CurationRules(recycle=True), batch_size=2
    )
    assert curation_of(agree, split, reversed_pair, b_chosen, labelled) == [
        "kept", "discarded", "recycled", "kept", ""
    ]
    assert (result.pool, result.kept, result.discarded, result.recycled) == (4, 2, 1, 1)
    assert [len(batch) for batch in gold.calls] == [2, 2]

    rows = {
        row["pair_id"]: row
        for ranked, row in export_rows(
            campaign=campaign, filters=ExportFilters(provenance=(), include_silver=True)
        )
        if ranked
    }
    assert set(rows) == {agree.pk, reversed_pair.pk, b_chosen.pk}
    assert rows[reversed_pair.pk]["chosen_side"] == "b"
    assert rows[reversed_pair.pk]["source_label_flipped"] is True
    assert rows[b_chosen.pk]["chosen_side"] == "b"

    again = pool_curate(campaign=campaign, gold=gold, best=best)
    assert again.pool == 0  # curated pairs stay curated unless asked


def test_contaminated_and_duplicate_pairs_are_dropped_before_scoring(campaign, annotator_a):
    evaluation_set_upload(campaign=campaign, set_name="rewardbench", prompts=[PROMPT, "Hi"])
    words = PROMPT.split()
    leaked = silver(
        campaign, 1, conversation=[{"role": "user", "content": " ".join(words[2:15]) + "?"}]
    )
    clean = silver(campaign, 1, conversation=[{"role": "user", "content": "Tell me a joke"}])
    # The same question and answers as `clean`, with A and B swapped (and the label with them).
    swapped = silver(
        campaign, -1, conversation=clean.conversation,
        response_a=clean.response_b, response_b=clean.response_a,
    )
    human = PairFactory(campaign=campaign, status=Pair.Status.COMPLETE, provenance="unanimous",
                        consensus_preference=1)
    add_labels(human, [annotator_a], [1])
    copy_of_human = silver(
        campaign, 1, conversation=human.conversation,
        response_a=human.response_b, response_b=human.response_a,
    )
    scorer = known({clean.pk: 0.9})

    result = pool_curate(campaign=campaign, gold=scorer, best=scorer)
    assert curation_of(leaked, clean, swapped, copy_of_human) == [
        "contaminated", "kept", "duplicate", "duplicate"
    ]
    assert (result.pool, result.contaminated, result.duplicates, result.scored) == (4, 1, 2, 1)
    assert result.evaluation_prompts == 2
    assert scorer.calls == [[clean.pk]]


def test_stored_scores_of_a_version_are_reused_without_loading_it(campaign):
    version = ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint="/does/not/exist"
    )
    pairs = [silver(campaign, 1) for _ in range(2)]
    for pair, p in zip(pairs, (0.8, 0.3), strict=True):
        PairScore.objects.create(
            pair=pair, model_version=version, reward_a=p, reward_b=0.0, p_a_better=p
        )
    scorer = model_version_scorer(version)
    result = pool_curate(campaign=campaign, gold=scorer, best=scorer)
    assert (result.kept, result.discarded) == (1, 1)


def test_the_gold_model_defaults_to_the_active_one_and_best_to_held_out_accuracy(campaign):
    with pytest.raises(CurationError, match="needs a trained model version"):
        curation_models(campaign=campaign)
    for number, accuracy, active in ((1, 0.6, True), (2, 0.8, False), (3, None, False)):
        ModelVersion.objects.create(
            campaign=campaign, number=number, base="b", checkpoint="c",
            heldout_accuracy=accuracy, is_active=active,
        )
    gold, best = curation_models(campaign=campaign)
    assert (gold.number, best.number) == (1, 2)
    gold, best = curation_models(campaign=campaign, gold_number=3, best_number=1)
    assert (gold.number, best.number) == (3, 1)
    with pytest.raises(CurationError, match="no ready model version 9"):
        curation_models(campaign=campaign, gold_number=9)


# --- Jobs, commands, API, and a real checkpoint ---------------------------------------------


@pytest.fixture
def tiny_versions(campaign, tmp_path_factory):
    from scoring.reward_model import build_tiny_reward_model

    folder = tmp_path_factory.mktemp("models")
    versions = []
    for number, seed in ((1, 0), (2, 1)):
        checkpoint = build_tiny_reward_model(folder / f"v{number}", seed=seed)
        versions.append(
            ModelVersion.objects.create(
                campaign=campaign, number=number, base="tiny", checkpoint=str(checkpoint),
                heldout_accuracy=0.5 + number / 10, is_active=number == 1,
            )
        )
    return versions


def test_a_curation_job_scores_the_pool_with_real_checkpoints(campaign, tiny_versions):
    from scoring.reward_model import RewardModel

    pairs = [silver(campaign, 1 if i % 2 else -1) for i in range(12)]
    job = curation_create(
        campaign=campaign,
        params={"recycle": True, "recycle_threshold": 0.51, "train_gold": False},
        enqueue=False,
    )
    job = curation_run(job_id=job.pk).job
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert (job.result["gold_version"], job.result["best_version"]) == (1, 2)
    assert job.result["kept"] + job.result["discarded"] + job.result["recycled"] == 12

    items = [(pair.conversation, pair.response_a, pair.response_b) for pair in pairs]
    p_gold = RewardModel.load(tiny_versions[0].checkpoint).prob_a_better_batch(items)
    p_best = RewardModel.load(tiny_versions[1].checkpoint).prob_a_better_batch(items)
    expected = curation_verdicts(
        silver_preferences=[pair.silver_preference for pair in pairs], p_gold=p_gold,
        p_best=p_best, rules=CurationRules(recycle=True, recycle_threshold=0.51),
    )
    assert curation_of(*pairs) == expected
    again = curation_run(job_id=job.pk)  # delivered twice, runs once
    assert again.outcome == ClaimOutcome.FINISHED


def test_the_command_uploads_an_evaluation_set_and_curates(campaign, tiny_versions, tmp_path):
    words = PROMPT.split()
    leaked = silver(campaign, 1, conversation=[{"role": "user", "content": " ".join(words)}])
    others = [silver(campaign, -1) for _ in range(3)]
    eval_file = tmp_path / "rewardbench.jsonl"
    eval_file.write_text(json.dumps({"prompt": PROMPT}) + "\n")
    stdout = io.StringIO()
    call_command(
        "curate_pool", "--campaign", campaign.name, "--eval-set", str(eval_file),
        "--gold-version", "2", stdout=stdout,
    )
    result = json.loads(stdout.getvalue().strip().splitlines()[-1])
    assert EvaluationPrompt.objects.filter(campaign=campaign, set_name="rewardbench").count() == 1
    assert result["contaminated"] == 1 and result["gold_version"] == 2
    assert result["kept"] + result["discarded"] == 3
    assert curation_of(leaked) == ["contaminated"]
    assert all(value in ("kept", "discarded") for value in curation_of(*others))


def test_only_admins_upload_evaluation_sets_and_start_curation(
    campaign, admin_user, annotator_a, expert, tiny_versions
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    url = f"/api/campaigns/{campaign.pk}/evaluation-sets"
    rows = b"".join(
        json.dumps({"prompt": f"{word} prompt", "chosen": "yes", "rejected": "no"}).encode()
        + b"\n"
        for word in ("first", "second")
    )
    for user in (annotator_a, expert):
        upload = SimpleUploadedFile("set.jsonl", rows)
        assert api_client_for(user).post(url, {"file": upload, "name": "x"}).status_code == 404
        assert api_client_for(user).post(
            f"/api/campaigns/{campaign.pk}/curations", {}, format="json"
        ).status_code == 404
    upload = SimpleUploadedFile("set.jsonl", rows)
    response = api_client_for(admin_user).post(url, {"file": upload, "name": "bench"})
    assert response.status_code == 201 and response.json()["pairs_count"] == 2

    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/curations", {"recycle": True}, format="json"
    )
    assert response.status_code == 202
    job = Job.objects.get(pk=response.data["job"])
    assert (job.kind, job.status, job.params["recycle"]) == ("curate", "queued", True)
    bad = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/curations", {"gold_version": 7}, format="json"
    )
    assert bad.status_code == 400
