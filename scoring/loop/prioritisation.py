"""Error-driven prioritisation (Skywork-Reward-V2, Stage 1 "adaptive retrieval").

For each pair with a human preference (consensus, and gold unless excluded) the version's
``p`` is the probability that it agrees with the humans: ``p(A better)`` when they prefer A,
else ``1 - p(A better)``. A verified ranking item is judged by the pairs its consensus ranking
expands into under the campaign's rule (what training learns from it): its ``p`` is the lowest
``sigmoid(r(chosen) - r(rejected))`` over them, from the reward of every response its score
holds, so one misordered pair makes it a source, and a tie between responses 0 and 1 does
not keep it out (an item with every response tied gives no pair and is not judged).

A pair the model gets wrong (``p <= 0.5``: at 0.5 it has no preference, see
``scoring.loop.retrieval.is_mispredicted``) or only weakly right pulls in its ``k`` most
similar unlabelled pool pairs, ``k = retrieval_k`` (8) if ``p <= 0.5`` else
``int(retrieval_k * (1 - p))`` (see ``scoring.loop.retrieval.retrieval_count``); similarity is the
cosine of the pairs' context vectors (conversation plus attributes).

Priority rule: a retrieved pair's priority becomes ``max(priority, 1 - p)`` with ``p`` from the
most mispredicted pair that retrieved it, so pairs near the model's worst mistakes come first
(all retrieved pairs rank above never-retrieved ones at priority 0), and a priority never drops
(an admin's manual priority is kept). Each retrieved pair gets one ``Retrieval`` row and a
``priority_reason`` naming that pair and its ``p``. A judged pair without a context vector for
the version's encoder pulls in nothing this run (the log says how many were skipped).

A model confident the other way (``p < 1 - escalation_rules["model_confidence"]``, 0.9 by
default) about a unanimous human label opens a model-contradiction escalation, once per pair.

Gold pairs as sources: they steer which pool pairs humans see next, which makes accuracy on
those same gold pairs an optimistic estimate over rounds. Jobs may pass
``retrieve_from_gold=False`` to keep the gold set a clean held-out measure.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import QuerySet

from annotation.models import Pair
from annotation.services.pair_state import pairs_raise_priority_to
from reviewers.models import Escalation
from reviewers.services.escalations import (
    escalation_model_contradiction,
    model_contradiction_threshold,
    model_contradicts,
)
from scoring.jobs.runner import JobContext
from scoring.loop.embeddings import pair_context_load, pair_embeddings_missing
from scoring.loop.pool_scoring import judged_targets, pool_pairs, retrieval_encoder_key
from scoring.loop.ranking_pairs import ranking_pairs
from scoring.loop.retrieval import agreement_of, is_mispredicted, retrieval_count
from scoring.loop.vector_index import campaign_index
from scoring.models import ModelVersion, PairScore, Retrieval


def reason_text(*, source_id: int, p: float, similarity: float) -> str:
    verdict = "mispredicted" if is_mispredicted(p) else "low confidence"
    return f"similar to pair {source_id} (cosine {similarity:.2f}), {verdict} at p = {p:.2f}"


_BATCH = 1024  # sources searched, and priorities written, per statement
_LOOKUP = 65_536  # sources checked for a context vector per call


def _judged_agreement(
    *, version: ModelVersion, include_gold: bool
) -> Iterator[tuple[int, float, bool]]:
    """(pair id, p_agree, unanimous) of each judged pair that ``version`` scored, streamed."""
    campaign = version.campaign
    judged = judged_targets(campaign=campaign, include_gold=include_gold)
    rows = (
        PairScore.objects.filter(model_version=version, pair__in=judged)
        .order_by("pair_id")
        .values_list(
            "pair_id",
            "p_a_better",
            "reward_a",
            "reward_b",
            "rewards",
            "pair__is_gold",
            "pair__gold_preference",
            "pair__consensus_preference",
            "pair__consensus_ranking",
            "pair__provenance",
        )
        .iterator(chunk_size=5000)
    )
    for row in rows:
        pair_id, p_a, reward_a, reward_b, rewards, is_gold, gold_pref = row[:7]
        consensus_pref, ranking, provenance = row[7:]
        unanimous = provenance == Pair.Provenance.UNANIMOUS
        p_agree: float | None
        if ranking is not None and not is_gold:
            p_agree = ranking_agreement(
                rewards=rewards or [reward_a, reward_b],
                ranking=ranking,
                rule=campaign.ranking_expansion,
            )
        else:
            preference = gold_pref if is_gold else consensus_pref
            if not preference:  # the filter above keeps decided pairs only
                continue
            p_agree = float(agreement_of(p_a, preference))
        # A checkpoint's non-finite reward (NaN, or infinity against infinity) gives a NaN p:
        # such a pair is left out, as a ranking item's null rewards are, rather than failing
        # the whole prioritisation on it.
        if p_agree is not None and math.isfinite(p_agree):
            yield pair_id, p_agree, unanimous


def ranking_agreement(
    *, rewards: list[float | None], ranking: list[list[int]], rule: str
) -> float | None:
    """The lowest p over the pairs ``ranking`` expands into by ``rule`` whose responses have a
    reward (a score written before every response's reward was kept holds responses 0 and 1
    only; a non-finite reward is stored as null); None when there is no such pair (every
    response tied). Shared with the dashboard's hit rate (``scoring.dashboard.loop_effect``),
    so a ranking item is judged there as it is here."""

    def known(index: int) -> bool:
        return index < len(rewards) and rewards[index] is not None

    pairs = [
        (pair.chosen, pair.rejected)
        for pair in ranking_pairs(ranking, rule)
        if known(pair.chosen) and known(pair.rejected)
    ]
    if not pairs:
        return None
    values = np.array([np.nan if r is None else r for r in rewards], dtype=np.float64)
    chosen, rejected = np.array(pairs, dtype=np.int64).T
    margins = values[chosen] - values[rejected]
    return float(np.min(0.5 * (1.0 + np.tanh(0.5 * margins))))


def pool_prioritise(
    *, version: ModelVersion, context: JobContext, include_gold: bool = True
) -> dict[str, Any]:
    """Raise the priority of pool pairs similar to the pairs ``version`` gets wrong.

    Bounded memory: judged pairs are streamed (a few numbers each are kept, never the pool),
    neighbours come from the campaign's faiss index (``scoring.loop.vector_index``) in batches
    of sources (an IVF index's candidates re-ranked against only their own stored vectors),
    and priorities are written by set-based UPDATEs in batches. What it keeps a source is 20
    bytes (typed arrays, not Python objects), and the hits are reduced to one pull per pool
    pair as they are found (``_Strongest``), so they grow with the pool pairs retrieved, not
    with ``k`` times the sources.
    """
    campaign = version.campaign
    source_ids = array("q")
    source_p = array("d")
    source_k = array("i")
    # Only the pairs the model contradicts are kept (not every unanimous one): bounded by the
    # model's confident mistakes, not the judged set.
    threshold = model_contradiction_threshold(campaign.escalation_rules)
    contradiction_ids = array("q")
    contradiction_p = array("d")
    judged = mispredicted = 0
    for pair_id, p_agree, unanimous in _judged_agreement(
        version=version, include_gold=include_gold
    ):
        judged += 1
        mispredicted += int(is_mispredicted(p_agree))
        k = retrieval_count(p_agree, campaign.retrieval_k)
        if k > 0:
            source_ids.append(pair_id)
            source_p.append(p_agree)
            source_k.append(k)
        if (
            unanimous
            and threshold is not None
            and model_contradicts(p_agree=p_agree, threshold=threshold)
        ):
            contradiction_ids.append(pair_id)
            contradiction_p.append(p_agree)
    key = retrieval_encoder_key(version)
    pool = pool_pairs(campaign=campaign)
    pool_size = pool.count()  # prioritising moves no pair in or out of the pool
    pulls = _retrieve(
        key=key,
        campaign_id=campaign.pk,
        sources=(
            np.frombuffer(source_ids, dtype=np.int64),
            np.frombuffer(source_p, dtype=np.float64),
            np.asarray(source_k),
        ),
        pool=pool,
        pool_size=pool_size,
        context=context,
    )
    context.check()
    retrieved = _apply(version=version, context=context, pulls=pulls)
    escalated = _escalate_contradictions(
        threshold=threshold,
        pair_ids=np.frombuffer(contradiction_ids, dtype=np.int64),
        p_agree=np.frombuffer(contradiction_p, dtype=np.float64),
    )
    summary = {
        "judged": judged,
        "mispredicted": mispredicted,
        "sources": len(source_ids),
        "retrieved": retrieved,
        "escalated": escalated,
        "pool": pool_size,
    }
    context.log(
        f"{summary['mispredicted']} of {summary['judged']} judged pairs mispredicted; "
        f"{summary['sources']} pulled in {retrieved} pool pairs; {escalated} escalated"
    )
    return summary


@dataclass(frozen=True)
class Pulls:
    """For each retrieved pool pair (sorted by id), its strongest pull."""

    pool_ids: np.ndarray
    boost: np.ndarray
    source_ids: np.ndarray
    p: np.ndarray
    similarity: np.ndarray

    def __len__(self) -> int:
        return len(self.pool_ids)


def _retrieve(
    *,
    key: str,
    campaign_id: int,
    sources: tuple[np.ndarray, np.ndarray, np.ndarray],
    pool: QuerySet[Pair],
    pool_size: int,
    context: JobContext,
) -> Pulls:
    """Strongest pull per pool pair (highest 1 - p, then similarity), from the index."""
    ids, p, k = sources
    if not len(ids):
        return _no_pulls()
    # A judged pair may have this version's score but no context vector (a curation job
    # scores without vectors; a pair finished annotation while the shards ran): it cannot be
    # searched from, and must not fail the whole prioritisation.
    unsearchable = np.concatenate(
        [np.zeros(0, dtype=np.int64)]
        + [
            np.array(
                pair_embeddings_missing(pair_ids=ids[start : start + _LOOKUP].tolist(), key=key),
                dtype=np.int64,
            )
            for start in range(0, len(ids), _LOOKUP)
        ]
    )
    if len(unsearchable):
        searchable = ~np.isin(ids, unsearchable)
        ids, p, k = ids[searchable], p[searchable], k[searchable]
        context.log(f"skipped {len(unsearchable)} sources without context vectors")
    if not len(ids):
        return _no_pulls()

    def in_pool(candidates: np.ndarray) -> np.ndarray:
        found = [np.zeros(0, dtype=np.int64)]
        for start in range(0, len(candidates), 5000):
            chunk = candidates[start : start + 5000].tolist()
            found.append(np.array(pool.filter(id__in=chunk).values_list("id", flat=True)))
        return np.concatenate(found).astype(np.int64)

    # The index holds the pool, as the search accepts: a rebuild drops the pairs that left it,
    # due once they are half of the index (``live``).
    loaded = campaign_index(key=key, campaign_id=campaign_id, members=in_pool, live=pool_size)
    context.log(f"retrieval index: {loaded.meta['kind']}, {loaded.size} vectors")
    k_max = int(k.max())
    strongest = _Strongest(p=p)
    hits = 0
    for start in range(0, len(ids), _BATCH):
        context.check()
        batch = slice(start, start + _BATCH)
        queries = pair_context_load(pair_ids=ids[batch], key=key)
        hit_ids, hit_sim = loaded.search(queries, k_max, in_pool)
        keep = (hit_ids >= 0) & (np.arange(k_max)[None, :] < k[batch][:, None])
        rows = np.nonzero(keep)[0]
        hits += len(rows)
        strongest.add(pool_ids=hit_ids[keep], sources=start + rows, similarity=hit_sim[keep])
    context.log(f"searched the neighbours of {len(ids)} sources: {hits} hits")
    if not hits:
        return _no_pulls()
    pool_ids, source, similarity = strongest.result()
    return Pulls(
        pool_ids=pool_ids,
        boost=1.0 - p[source],
        source_ids=ids[source],
        p=p[source],
        similarity=similarity.astype(np.float64),
    )


_REDUCE_AT = 1 << 20  # hits held before they are reduced (20 bytes each)


class _Strongest:
    """The strongest hit per pool pair (the highest boost ``1 - p``, then the highest
    similarity; on a full tie the first found), reduced as hits arrive: memory grows with the
    pool pairs retrieved, not with the hits. A hit is a pool id, its source's position in
    ``p`` and the similarity as the index returned it (float32)."""

    def __init__(self, *, p: np.ndarray) -> None:
        self.p = p
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.held = 0
        self.best = 0  # rows of the last reduction (parts[0])

    def add(self, *, pool_ids: np.ndarray, sources: np.ndarray, similarity: np.ndarray) -> None:
        self.parts.append(
            (pool_ids.astype(np.int64), sources.astype(np.int64), similarity.astype(np.float32))
        )
        self.held += len(pool_ids)
        # Reduced once the new hits outnumber both the threshold and the reduced rows, so each
        # hit is sorted a bounded number of times on average.
        if self.held - self.best > max(_REDUCE_AT, self.best):
            self._reduce()

    def _reduce(self) -> None:
        pool_ids, sources, similarity = (
            np.concatenate(column) for column in zip(*self.parts, strict=True)
        )
        self.parts = []
        boost = 1.0 - self.p[sources]
        # lexsort is stable: on a full tie the earlier hit (earlier source, earlier rank) wins,
        # and the reduced rows come before the hits found after them.
        order = np.lexsort((-similarity, -boost, pool_ids))
        del boost
        pool_ids = pool_ids[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = pool_ids[1:] != pool_ids[:-1]
        kept = order[first]
        self.parts = [(pool_ids[first], sources[kept], similarity[kept])]
        self.held = self.best = len(kept)

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pool ids (sorted), their pull's source position and similarity."""
        self._reduce()
        return self.parts[0]


def _no_pulls() -> Pulls:
    empty = np.zeros(0)
    return Pulls(empty.astype(np.int64), empty, empty.astype(np.int64), empty, empty)


def _apply(*, version: ModelVersion, context: JobContext, pulls: Pulls) -> int:
    """One Retrieval row per retrieved pair; its priority raised to the boost unless already
    higher (a priority never drops). Set-based UPDATEs of ``_BATCH`` pairs in one transaction:
    a cancelled or failed job never leaves half the pool re-ranked. A job run again (its
    worker lost after this commit) replaces its own rows rather than adding a second set."""
    with transaction.atomic():
        Retrieval.objects.filter(job=context.job).delete()
        for start in range(0, len(pulls), _BATCH):
            batch = range(start, min(start + _BATCH, len(pulls)))
            reasons = [
                reason_text(
                    source_id=int(pulls.source_ids[i]),
                    p=float(pulls.p[i]),
                    similarity=float(pulls.similarity[i]),
                )[:300]
                for i in batch
            ]
            Retrieval.objects.bulk_create(
                [
                    Retrieval(
                        campaign=version.campaign,
                        job=context.job,
                        pair_id=int(pulls.pool_ids[i]),
                        similar_to_id=int(pulls.source_ids[i]),
                        p=float(pulls.p[i]),
                        similarity=float(pulls.similarity[i]),
                        reason=reason,
                    )
                    for i, reason in zip(batch, reasons, strict=True)
                ]
            )
            pairs_raise_priority_to(
                rows=[
                    (int(pulls.pool_ids[i]), float(pulls.boost[i]), reason)
                    for i, reason in zip(batch, reasons, strict=True)
                ]
            )
    return len(pulls)


def _escalate_contradictions(
    *, threshold: float | None, pair_ids: np.ndarray, p_agree: np.ndarray
) -> int:
    """Open a model-contradiction escalation on each pair (the model's confident mistakes on
    unanimous pairs, with their ``p_agree``) that has none yet; looked up in chunks."""
    if threshold is None or not len(pair_ids):
        return 0
    opened = 0
    for start in range(0, len(pair_ids), _CONTRADICTION_CHUNK):
        chunk = slice(start, start + _CONTRADICTION_CHUNK)
        candidates = dict(zip(pair_ids[chunk].tolist(), p_agree[chunk].tolist(), strict=True))
        already = set(
            Escalation.objects.filter(
                pair_id__in=list(candidates), reason=Escalation.Reason.MODEL_CONTRADICTION
            ).values_list("pair_id", flat=True)
        )
        fresh = [pk for pk in candidates if pk not in already]
        for pair in Pair.objects.filter(pk__in=fresh, provenance=Pair.Provenance.UNANIMOUS):
            if _open_escalation(pair=pair, p_agree=candidates[pair.pk], threshold=threshold):
                opened += 1
    return opened


_CONTRADICTION_CHUNK = 5000


def _open_escalation(*, pair: Pair, p_agree: float, threshold: float) -> bool:
    p_agree = float(np.clip(p_agree, 0.0, 1.0))
    opened = escalation_model_contradiction(pair=pair, p_agree=p_agree, threshold=threshold)
    return opened is not None
