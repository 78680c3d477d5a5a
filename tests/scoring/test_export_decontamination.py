"""Every pair an export writes is decontaminated (13-gram against the evaluation sets) and
deduplicated, exact and near (MinHash), human-labelled and gold pairs included; the manifest
counts what was left out."""

from __future__ import annotations

import json

import pytest

from annotation.models import Pair
from scoring.datasets.curation.consistency import CurationError, CurationParams
from scoring.datasets.curation.near_duplicates import (
    EXACT,
    NEAR,
    DuplicateFinder,
    minhash_similarity,
)
from scoring.datasets.export import ExportFilters, InvalidExport, export_write
from scoring.models import EvaluationItem, EvaluationSet
from scoring.reward_model import load_hh_rlhf
from tests.conftest import HH_RLHF
from tests.factories import PairFactory
from tests.scoring.test_export import voted_pair

EVAL_PROMPT = (
    "Explain in plain words why the sky looks blue on a clear afternoon and red at dusk "
    "to a curious child"
)


@pytest.fixture
def annotators(annotator_a, annotator_b, annotator_c):
    return [annotator_a, annotator_b, annotator_c]


@pytest.fixture
def evaluation_set(campaign):
    evaluation_set = EvaluationSet.objects.create(
        campaign=campaign, name="bench", sha256="0" * 64, pairs_count=1
    )
    EvaluationItem.objects.create(
        evaluation_set=evaluation_set,
        position=0,
        subset="chat",
        conversation=[{"role": "user", "content": EVAL_PROMPT}],
        chosen="c",
        rejected="r",
        prompt=EVAL_PROMPT,
    )
    return evaluation_set


def _leaking(words: int = 13) -> list[dict[str, str]]:
    shared = " ".join(EVAL_PROMPT.split()[2 : 2 + words])
    return [{"role": "user", "content": f"Quick question, please: {shared}?"}]


def _export(campaign, tmp_path, **filters):
    path = tmp_path / "out.jsonl"
    result = export_write(
        campaign=campaign,
        filters=ExportFilters(**filters),
        file_format="jsonl",
        destination=path,
    )
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {row["pair_id"] for row in rows}, result.manifest


def test_a_human_labelled_pair_sharing_a_13_gram_with_an_evaluation_prompt_is_left_out(
    campaign, annotators, evaluation_set, tmp_path
):
    leaked = voted_pair(
        campaign,
        annotators,
        [1, 1, 1],
        consensus=1,
        provenance="unanimous",
        conversation=_leaking(13),
    )
    twelve = voted_pair(  # twelve shared words are no 13-gram: kept
        campaign,
        annotators,
        [-1, -1, -1],
        consensus=-1,
        provenance="unanimous",
        conversation=_leaking(12),
    )
    gold = PairFactory(
        campaign=campaign,
        is_gold=True,
        gold_preference=1,
        status=Pair.Status.COMPLETE,
        provenance="gold",
        conversation=_leaking(13),
        response_a="gold a",
        response_b="gold b",
    )
    clean = voted_pair(campaign, annotators, [2, 1, 2], consensus=2, provenance="majority")

    exported, manifest = _export(campaign, tmp_path)
    assert exported == {twelve.pk, clean.pk}
    assert leaked.pk not in exported and gold.pk not in exported
    assert manifest["decontamination"] == {
        "enabled": True,
        "ngram": 13,
        "evaluation_prompts": 1,
        "dropped": 2,
        "by_provenance": {"gold": 1, "unanimous": 1},
    }
    assert manifest["counts"]["rows"] == 2
    # Turned off, everything is written and nothing counted.
    exported, manifest = _export(campaign, tmp_path, decontaminate=False)
    assert exported == {leaked.pk, twelve.pk, gold.pk, clean.pk}
    assert manifest["decontamination"]["dropped"] == 0


def _hh_pairs(count: int):
    return [
        ([dict(turn) for turn in example.conversation], example.chosen, example.rejected)
        for example in load_hh_rlhf(HH_RLHF, limit=count)
    ]


def _edited(text: str) -> str:
    words = text.split()
    words[len(words) // 2] = "indeed"
    return " ".join(words)


def test_minhash_finds_a_near_duplicate_and_not_a_distinct_pair():
    pairs = [pair for pair in _hh_pairs(40) if len(" ".join(pair[1].split())) > 200][:3]
    original, distinct, other = pairs
    conversation, chosen, rejected = original
    near = (conversation, _edited(chosen), rejected)
    context_similarity, response_similarity = minhash_similarity(original, near)
    assert context_similarity == 1.0 and 0.8 < response_similarity < 1.0
    assert max(minhash_similarity(original, distinct)) < 0.2
    # The same prompt with other responses is another pair, not a repeat.
    other_answers = (conversation, distinct[1], distinct[2])
    assert minhash_similarity(original, other_answers)[1] < 0.2
    finder = DuplicateFinder(threshold=0.8)
    assert finder.check(*original) is None
    assert finder.check(*distinct) is None
    assert finder.check(*near) == NEAR
    assert finder.check(conversation, rejected, chosen) == EXACT  # A and B swapped
    assert finder.check(*other) is None
    assert finder.check(*other_answers) is None
    assert DuplicateFinder(threshold=None).check(*near) is None  # exact only


def test_an_export_drops_exact_and_near_duplicates_and_counts_them(campaign, annotators, tmp_path):
    original, distinct = [pair for pair in _hh_pairs(40) if len(pair[1]) > 200][:2]
    conversation, chosen, rejected = original
    first = voted_pair(
        campaign,
        annotators,
        [1, 1, 1],
        consensus=1,
        provenance="unanimous",
        conversation=conversation,
        response_a=chosen,
        response_b=rejected,
    )
    swapped = PairFactory(  # the same pair with A and B swapped: a silver repeat
        campaign=campaign,
        status=Pair.Status.POOLED,
        silver_preference=-1,
        conversation=conversation,
        response_a=rejected,
        response_b=chosen,
    )
    near = voted_pair(
        campaign,
        annotators,
        [1, 1, 1],
        consensus=1,
        provenance="unanimous",
        conversation=conversation,
        response_a=_edited(chosen),
        response_b=rejected,
    )
    other = voted_pair(
        campaign,
        annotators,
        [-1, -1, -1],
        consensus=-1,
        provenance="unanimous",
        conversation=distinct[0],
        response_a=distinct[2],
        response_b=distinct[1],
    )
    exported, manifest = _export(campaign, tmp_path, include_silver=True)
    assert exported == {first.pk, other.pk}
    assert manifest["deduplication"] == {
        "enabled": True,
        "near_duplicate_threshold": 0.8,
        "exact": 1,
        "near": 1,
        "exact_by_provenance": {"silver": 1},
        "near_by_provenance": {"unanimous": 1},
    }
    exported, _ = _export(campaign, tmp_path, include_silver=True, near_duplicate_threshold=None)
    assert exported == {first.pk, near.pk, other.pk} and swapped.pk not in exported
    exported, _ = _export(campaign, tmp_path, include_silver=True, deduplicate=False)
    assert exported == {first.pk, swapped.pk, near.pk, other.pk}
    for threshold in (1.5, 0.0, 0.49, 1e-300):
        # Below one half the LSH index proposes nearly every pair (review 19: quadratic).
        with pytest.raises(InvalidExport, match="between 0.5 and 1"):
            ExportFilters(near_duplicate_threshold=threshold)
    with pytest.raises(CurationError, match="between 0.5 and 1"):
        CurationParams.from_params({"near_duplicate_threshold": 0.1})


def test_minhash_estimates_are_the_same_in_every_process():
    # Python's hash() is salted per process: sketches built on it gave a pair near the
    # threshold a different verdict from one run to the next.
    import os
    import subprocess
    import sys

    code = (
        "import django; django.setup();"
        "from scoring.datasets.curation.near_duplicates import minhash_similarity;"
        "a = ([{'role': 'user', 'content': 'how do I bake bread at home'}],"
        " 'Mix flour, water, salt and yeast, knead it, let it rise and bake it hot.', 'No.');"
        "b = (a[0], 'Mix flour, water, salt and yeast, knead it well, let it rise and bake it.',"
        " 'No.');"
        "print(minhash_similarity(a, b))"
    )
    estimates = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in (1, 2, 3)
    }
    assert len(estimates) == 1, estimates


def test_curation_drops_a_silver_near_duplicate_of_a_verified_pair_when_asked(campaign, annotators):
    import numpy as np

    from scoring.datasets.curation import pool_curate

    original, distinct = [pair for pair in _hh_pairs(40) if len(pair[1]) > 200][:2]
    conversation, chosen, rejected = original
    voted_pair(
        campaign,
        annotators,
        [1, 1, 1],
        consensus=1,
        provenance="unanimous",
        conversation=conversation,
        response_a=chosen,
        response_b=rejected,
    )
    near = PairFactory(
        campaign=campaign,
        status=Pair.Status.POOLED,
        silver_preference=1,
        conversation=conversation,
        response_a=_edited(chosen),
        response_b=rejected,
    )
    other = PairFactory(
        campaign=campaign,
        status=Pair.Status.POOLED,
        silver_preference=1,
        conversation=distinct[0],
        response_a=distinct[1],
        response_b=distinct[2],
    )

    def agree(items):
        return np.full(len(items), 0.9)

    result = pool_curate(campaign=campaign, gold=agree, best=agree, near_duplicate_threshold=0.8)
    assert (result.duplicates, result.near_duplicates, result.kept) == (1, 1, 1)
    near.refresh_from_db()
    other.refresh_from_db()
    assert (near.curation, other.curation) == ("duplicate", "kept")
