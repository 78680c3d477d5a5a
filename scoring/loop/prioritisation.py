"""Error-driven prioritisation (Skywork-Reward-V2, Stage 1 "adaptive retrieval").

For each pair with a human preference (consensus, and gold unless excluded) the version's
``p`` is the probability that it agrees with the humans: ``p(A better)`` when they prefer A,
else ``1 - p(A better)``. A pair the model gets wrong (``p < 0.5``) or only weakly right pulls
in its ``k`` most similar unlabelled pool pairs, ``k = retrieval_k`` (8) if ``p < 0.5`` else
``int(retrieval_k * (1 - p))`` (see ``scoring.loop.retrieval.retrieval_count``); similarity is the
cosine of the pairs' context vectors (conversation plus attributes).

Priority rule: a retrieved pair's priority becomes ``max(priority, 1 - p)`` with ``p`` from the
most mispredicted pair that retrieved it, so pairs near the model's worst mistakes come first
(all retrieved pairs rank above never-retrieved ones at priority 0), and a priority never drops
(an admin's manual priority is kept). Each retrieved pair gets one ``Retrieval`` row and a
``priority_reason`` naming that pair and its ``p``.

A model confident the other way (``p < 1 - escalation_rules["model_confidence"]``, 0.9 by
default) about a unanimous human label opens a model-contradiction escalation, once per pair.

Gold pairs as sources: they steer which pool pairs humans see next, which makes accuracy on
those same gold pairs an optimistic estimate over rounds. Jobs may pass
``retrieve_from_gold=False`` to keep the gold set a clean held-out measure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import transaction

from annotation.models import Pair
from annotation.services.pair_state import pairs_raise_priority
from reviewers.models import Escalation
from reviewers.services.escalations import (
    escalation_model_contradiction,
    model_contradiction_threshold,
    model_contradicts,
)
from scoring.jobs.runner import JobContext
from scoring.loop.embeddings import pair_vectors_load
from scoring.loop.pool_scoring import judged_pairs, pool_pairs, retrieval_encoder_key
from scoring.loop.retrieval import nearest_neighbours, retrieval_count
from scoring.models import ModelVersion, PairScore, Retrieval


@dataclass(frozen=True)
class _Pull:
    boost: float
    source_id: int
    p: float
    similarity: float


def reason_text(*, source_id: int, p: float, similarity: float) -> str:
    verdict = "mispredicted" if p < 0.5 else "low confidence"
    return f"similar to pair {source_id} (cosine {similarity:.2f}), {verdict} at p = {p:.2f}"


def pool_prioritise(
    *, version: ModelVersion, context: JobContext, include_gold: bool = True
) -> dict[str, Any]:
    """Raise the priority of pool pairs similar to the pairs ``version`` gets wrong."""
    campaign = version.campaign
    judged = judged_pairs(campaign=campaign, include_gold=include_gold)
    scores = dict(
        PairScore.objects.filter(model_version=version, pair_id__in=judged.pair_ids).values_list(
            "pair_id", "p_a_better"
        )
    )
    sources: list[tuple[Pair, float, int]] = []
    agreement: list[tuple[Pair, float]] = []
    for pair, preference in zip(judged.pairs, judged.preferences, strict=True):
        if pair.pk not in scores:
            continue
        p_a = scores[pair.pk]
        p_agree = p_a if preference > 0 else 1.0 - p_a
        agreement.append((pair, p_agree))
        k = retrieval_count(p_agree, campaign.retrieval_k)
        if k > 0:
            sources.append((pair, p_agree, k))
    key = retrieval_encoder_key(version)
    # Pairs imported since the pool was scored have no vectors yet: candidates next time.
    pool = list(
        pool_pairs(campaign=campaign)
        .filter(embedding__encoder=key)
        .order_by("id")
        .values_list("id", "priority")
    )
    pulls = _retrieve(key, sources, [pair_id for pair_id, _ in pool])
    context.check()
    retrieved = _apply(version=version, context=context, pulls=pulls, priorities=dict(pool))
    escalated = _escalate_contradictions(campaign_rules=campaign.escalation_rules, pairs=agreement)
    summary = {
        "judged": len(agreement),
        "mispredicted": sum(1 for _, p in agreement if p < 0.5),
        "sources": len(sources),
        "retrieved": retrieved,
        "escalated": escalated,
        "pool": len(pool),
    }
    context.log(
        f"{summary['mispredicted']} of {summary['judged']} judged pairs mispredicted; "
        f"{summary['sources']} pulled in {retrieved} pool pairs; {escalated} escalated"
    )
    return summary


def _retrieve(
    key: str, sources: list[tuple[Pair, float, int]], pool_ids: list[int]
) -> dict[int, _Pull]:
    """For each pool pair retrieved, the strongest pull (highest 1 - p, then similarity)."""
    if not sources or not pool_ids:
        return {}
    pool_vectors = pair_vectors_load(pair_ids=pool_ids, key=key).context
    source_vectors = pair_vectors_load(pair_ids=[pair.pk for pair, _, _ in sources], key=key)
    k_max = max(k for _, _, k in sources)
    indices, similarities = nearest_neighbours(source_vectors.context, pool_vectors, k_max)
    pulls: dict[int, _Pull] = {}
    for row, (pair, p_agree, k) in enumerate(sources):
        for column in range(min(k, indices.shape[1])):
            pool_id = pool_ids[int(indices[row, column])]
            pull = _Pull(1.0 - p_agree, pair.pk, p_agree, float(similarities[row, column]))
            best = pulls.get(pool_id)
            if best is None or (pull.boost, pull.similarity) > (best.boost, best.similarity):
                pulls[pool_id] = pull
    return pulls


def _apply(
    *,
    version: ModelVersion,
    context: JobContext,
    pulls: dict[int, _Pull],
    priorities: dict[int, float],
) -> int:
    retrievals = []
    raised = []
    for pool_id, pull in pulls.items():
        reason = reason_text(source_id=pull.source_id, p=pull.p, similarity=pull.similarity)
        retrievals.append(
            Retrieval(
                campaign=version.campaign,
                job=context.job,
                pair_id=pool_id,
                similar_to_id=pull.source_id,
                p=pull.p,
                similarity=pull.similarity,
                reason=reason[:300],
            )
        )
        if pull.boost >= priorities.get(pool_id, 0.0):
            raised.append(Pair(pk=pool_id, priority=pull.boost, priority_reason=reason))
    with transaction.atomic():
        # One transaction: a cancelled or failed job never leaves half the pool re-ranked.
        Retrieval.objects.bulk_create(retrievals, batch_size=1000)
        pairs_raise_priority(pairs=raised)
    return len(retrievals)


def _escalate_contradictions(
    *, campaign_rules: dict[str, Any] | None, pairs: list[tuple[Pair, float]]
) -> int:
    threshold = model_contradiction_threshold(campaign_rules)
    if threshold is None:
        return 0
    candidates = [
        (pair, p)
        for pair, p in pairs
        if model_contradicts(p_agree=p, threshold=threshold)
        and pair.provenance == Pair.Provenance.UNANIMOUS
    ]
    if not candidates:
        return 0
    already = set(
        Escalation.objects.filter(
            pair_id__in=[pair.pk for pair, _ in candidates],
            reason=Escalation.Reason.MODEL_CONTRADICTION,
        ).values_list("pair_id", flat=True)
    )
    opened = 0
    for pair, p in candidates:
        if pair.pk not in already and _open_escalation(pair=pair, p_agree=p, threshold=threshold):
            opened += 1
    return opened


def _open_escalation(*, pair: Pair, p_agree: float, threshold: float) -> bool:
    p_agree = float(np.clip(p_agree, 0.0, 1.0))
    opened = escalation_model_contradiction(pair=pair, p_agree=p_agree, threshold=threshold)
    return opened is not None
