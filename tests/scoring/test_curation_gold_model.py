"""Stage 2 as Skywork runs it: a gold model trained on human-verified pairs only, a version of
its own kind; the best model chosen on the evaluation sets; the job says which and why."""

from __future__ import annotations

import pytest

from annotation.models import Pair
from scoring.datasets.curation import (
    CurationError,
    best_model_choice,
    curation_create,
    curation_run,
)
from scoring.datasets.curation.consistency import CurationParams
from scoring.loop.judged_pairs import gold_training_pairs
from scoring.loop.registry import RegistryError, model_version_activate
from scoring.models import EvaluationResult, EvaluationSet, Job, ModelVersion
from tests.factories import CampaignFactory, PairFactory
from tests.scoring.loop_support import use_tiny_base


def _verified(campaign, provenance, count, preference=1):
    return [
        PairFactory(
            campaign=campaign,
            status=Pair.Status.COMPLETE,
            provenance=provenance,
            consensus_preference=preference if i % 2 == 0 else -preference,
            labels_count=3,
        )
        for i in range(count)
    ]


def _seed(campaign):
    pairs = {
        "unanimous": _verified(campaign, Pair.Provenance.UNANIMOUS, 4),
        "adjudicated": _verified(campaign, Pair.Provenance.ADJUDICATED, 3),
        "majority": _verified(campaign, Pair.Provenance.MAJORITY, 5),
        "gold": [
            PairFactory(
                campaign=campaign,
                status=Pair.Status.COMPLETE,
                is_gold=True,
                provenance=Pair.Provenance.GOLD,
                gold_preference=p,
                consensus_preference=p,
            )
            for p in (1, -1)
        ],
        "silver": [
            PairFactory(campaign=campaign, status=Pair.Status.POOLED, silver_preference=s)
            for s in (1, -1, 1, -1)
        ],
    }
    # A tie settles no side: never trained on.
    _verified(campaign, Pair.Provenance.UNANIMOUS, 1, preference=0)
    return pairs


def test_gold_training_uses_no_silver_or_majority_pair_when_told_so(db):
    campaign = CampaignFactory()
    pairs = _seed(campaign)
    data = gold_training_pairs(campaign=campaign, sources=("gold", "adjudicated", "unanimous"))
    expected = {p.pk for name in ("gold", "adjudicated", "unanimous") for p in pairs[name]}
    assert set(data.pair_ids) == expected
    assert not set(data.pair_ids) & {p.pk for p in pairs["majority"] + pairs["silver"]}
    with_majority = gold_training_pairs(campaign=campaign, sources=("majority",))
    assert set(with_majority.pair_ids) == {p.pk for p in pairs["majority"]}
    assert CurationParams().gold_sources == ("gold", "adjudicated", "unanimous")
    with pytest.raises(CurationError, match="unknown gold_sources silver"):
        CurationParams.from_params({"gold_sources": ["silver"]})


def test_a_curation_job_trains_a_gold_model_of_its_own_kind(db, settings, tmp_path):
    from scoring.reward_model import build_tiny_reward_model

    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = CampaignFactory()
    pairs = _seed(campaign)
    loop = ModelVersion.objects.create(
        campaign=campaign,
        number=1,
        base="tiny",
        heldout_accuracy=0.6,
        is_active=True,
        checkpoint=str(build_tiny_reward_model(tmp_path / "v1", seed=3)),
    )
    job = curation_create(
        campaign=campaign, params={"gold_sources": ["adjudicated", "unanimous"]}, enqueue=False
    )
    job = curation_run(job_id=job.pk).job
    assert job.status == Job.Status.SUCCEEDED, job.error
    gold = ModelVersion.objects.get(campaign=campaign, kind=ModelVersion.Kind.GOLD)
    assert gold.number == 2 and not gold.is_active
    # Trained on the 7 adjudicated and unanimous pairs alone; the gold pairs held out.
    assert gold.label_snapshot["pairs"] == 7
    assert gold.label_snapshot["by_provenance"] == {"adjudicated": 3, "unanimous": 4}
    assert gold.label_snapshot["sources"] == ["adjudicated", "unanimous"]
    assert gold.metrics["heldout"]["n"] == 2
    result = job.result
    assert (result["gold_version"], result["best_version"]) == (2, 1)
    assert result["gold_model"]["kind"] == "gold"
    assert "human-verified pairs only (adjudicated, unanimous)" in result["gold_model"]["chosen_by"]
    assert result["best_model"]["chosen_by"].startswith("held-out gold accuracy: the campaign has")
    assert result["kept"] + result["discarded"] == len(pairs["silver"])
    # A gold model never serves, and is not "the best model" of a later curation.
    with pytest.raises(RegistryError, match="gold model"):
        model_version_activate(version=gold)
    assert best_model_choice(campaign=campaign).version == loop
    loop.refresh_from_db()
    assert loop.is_active


def test_without_verified_pairs_the_gold_model_cannot_be_trained(db, settings, tmp_path):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = CampaignFactory()
    PairFactory(campaign=campaign, status=Pair.Status.POOLED, silver_preference=1)
    ModelVersion.objects.create(campaign=campaign, number=1, base="b", checkpoint="c")
    job = curation_create(campaign=campaign, enqueue=False)
    job = curation_run(job_id=job.pk, reraise=False).job
    assert job.status == Job.Status.FAILED
    assert "no human-verified pairs (gold, adjudicated, unanimous)" in job.error


def _evaluated(version, evaluation_set, accuracy):
    EvaluationResult.objects.create(
        model_version=version,
        evaluation_set=evaluation_set,
        set_sha256=evaluation_set.sha256,
        accuracy=accuracy,
        n=100,
        ci_low=accuracy - 0.1,
        ci_high=accuracy + 0.1,
    )


def test_the_best_model_is_the_best_on_the_evaluation_sets(db):
    campaign = CampaignFactory()
    v1, v2, v3 = (
        ModelVersion.objects.create(
            campaign=campaign, number=n, base="b", checkpoint="c", heldout_accuracy=acc
        )
        for n, acc in ((1, 0.9), (2, 0.6), (3, 0.99))
    )
    ModelVersion.objects.create(
        campaign=campaign, number=4, base="b", checkpoint="c", kind="gold", heldout_accuracy=1.0
    )
    own = EvaluationSet.objects.create(campaign=campaign, name="own", sha256="a" * 64)
    shared = EvaluationSet.objects.create(campaign=None, name="shared-set", sha256="b" * 64)
    choice = best_model_choice(campaign=campaign)
    assert choice.version == v3 and "no version is evaluated on every" in choice.chosen_by
    for version, accuracies in ((v1, (0.70, 0.60)), (v2, (0.80, 0.75))):
        _evaluated(version, own, accuracies[0])
        _evaluated(version, shared, accuracies[1])
    _evaluated(v3, own, 0.95)  # not on every set: does not compete
    choice = best_model_choice(campaign=campaign)
    assert choice.version == v2
    assert choice.evaluation_accuracy == pytest.approx(0.775)
    assert choice.chosen_by == "mean accuracy over the campaign's 2 evaluation sets"
    # A result of a set whose content changed since is stale: no longer counted.
    EvaluationSet.objects.filter(pk=shared.pk).update(sha256="c" * 64)
    assert best_model_choice(campaign=campaign).version == v3
    EvaluationSet.objects.all().delete()
    choice = best_model_choice(campaign=campaign)
    assert choice.version == v3
    assert choice.chosen_by == "held-out gold accuracy: the campaign has no evaluation set"
