"""Which pairs a model learns from and is judged on: the campaign's verified labels, its gold.

Training data: non-gold pairs with a human consensus (provenance unanimous, majority,
Dawid-Skene or adjudicated) whose consensus is not a tie and that no expert is still to decide
(an open escalation: the export waits for it too); the sign of the consensus says which
side was chosen. Gold pairs are the held-out evaluation set and are never trained on, unless
the job asks for ``train_on_gold_share`` (a fixed, id-hashed share of them moves to training and
the rest stays held out). Stage 2's gold model learns only from the human-verified sources the
admin chooses (``gold_training_pairs``).
"""

from __future__ import annotations

import hashlib
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from django.db.models import (
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
)

from annotation.models import Campaign, ItemKind, Label, Outcome, Pair
from scoring.jobs.runner import JobError
from scoring.loop.ranking_pairs import ranking_pairs

TRAINABLE_PROVENANCE = (
    Pair.Provenance.UNANIMOUS,
    Pair.Provenance.MAJORITY,
    Pair.Provenance.DAWID_SKENE,
    Pair.Provenance.ADJUDICATED,
)


@dataclass(frozen=True, slots=True)
class JudgedPair:
    """What training, evaluation and a version's label snapshot keep of a pair
    (``TRAINING_FIELDS``, in that order): a few words a pair, where a model instance with its
    other fields deferred took about 830 bytes (8 GB for 10M verified pairs)."""

    pk: int
    campaign_id: int
    task_category: str
    provenance: str
    is_gold: bool
    consensus_preference: int | None
    gold_preference: int | None


@dataclass(frozen=True)
class JudgedPairs:
    """Pairs with a human preference, in canonical orientation (positive: A was chosen).

    The pairs carry no texts (``TRAINING_FIELDS``); ``pair_texts`` reads them. A ranking item
    enters as the pairs its consensus ranking expands into (the campaign's
    ``ranking_expansion``): unsaved copies of the item, with its pk and preference 1, whose
    ``expanded`` entry gives the indexes of the chosen and the rejected response among the
    item's responses; the encoder vectors cached per stored pair do not describe them.
    """

    pairs: list[JudgedPair]
    preferences: list[int]
    # Per position: (chosen, rejected) response indexes of a pair expanded from a ranking item,
    # None for a stored pair. Empty when no pair is expanded.
    expanded: list[tuple[int, int] | None] = field(default_factory=list)

    def is_expanded(self, position: int) -> bool:
        return bool(self.expanded) and self.expanded[position] is not None

    @property
    def pair_ids(self) -> list[int]:
        return [pair.pk for pair in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def subset(self, positions: Sequence[int]) -> JudgedPairs:
        """The pairs at ``positions``, expansions kept."""
        return JudgedPairs(
            [self.pairs[p] for p in positions],
            [self.preferences[p] for p in positions],
            [self.expanded[p] for p in positions] if self.expanded else [],
        )

    def __add__(self, other: JudgedPairs) -> JudgedPairs:
        expanded: list[tuple[int, int] | None] = []
        if self.expanded or other.expanded:
            expanded = (self.expanded or [None] * len(self)) + (
                other.expanded or [None] * len(other)
            )
        return JudgedPairs(self.pairs + other.pairs, self.preferences + other.preferences, expanded)


def _gold_goes_to_training(pair_id: int, share: float) -> bool:
    # A stable pseudo-random split: the same gold pairs stay held out across retrainings.
    digest = hashlib.sha256(f"gold-split:{pair_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


# What training, evaluation and a version's label snapshot keep of each pair. The texts are not
# among them: ``pair_texts`` reads those a chunk at a time when training or scoring reaches
# them, since a training set of 16K-token conversations is tens of GB of text. Nor are the long
# fields nothing here reads (guidelines, desired attributes, a ranking item's responses).
TRAINING_FIELDS = (
    "id",
    "campaign_id",
    "task_category",
    "provenance",
    "is_gold",
    "consensus_preference",
    "gold_preference",
)

# Pairs whose texts are read in one query.
TEXT_CHUNK = 1000


def _judged(pairs: QuerySet[Pair]) -> list[JudgedPair]:
    """The rows' ``TRAINING_FIELDS`` as records, streamed; a campaign id, category or
    provenance is one object for all the pairs that share it."""
    campaign_ids: dict[int, int] = {}
    return [
        JudgedPair(
            pk,
            campaign_ids.setdefault(campaign_id, campaign_id),
            sys.intern(category),
            sys.intern(provenance),
            is_gold,
            consensus,
            gold,
        )
        for pk, campaign_id, category, provenance, is_gold, consensus, gold in pairs.values_list(
            *TRAINING_FIELDS
        ).iterator(chunk_size=5000)
    ]


def pair_texts(data: JudgedPairs, start: int, stop: int) -> list[tuple[Any, str, str]]:
    """``(conversation, response_a, response_b)`` of ``data``'s pairs ``start:stop``."""
    return pair_texts_at(data, range(max(start, 0), min(stop, len(data))))


def pair_texts_at(data: JudgedPairs, positions: Sequence[int]) -> list[tuple[Any, str, str]]:
    """``(conversation, response_a, response_b)`` of ``data``'s pairs at ``positions``, read
    from the database ``TEXT_CHUNK`` pairs a query; an expanded pair's from its ranking item."""
    stored = sorted({data.pairs[p].pk for p in positions if not data.is_expanded(p)})
    ranked = sorted({data.pairs[p].pk for p in positions if data.is_expanded(p)})
    texts: dict[int, tuple[Any, str, str]] = {}
    for first in range(0, len(stored), TEXT_CHUNK):
        rows = Pair.objects.filter(pk__in=stored[first : first + TEXT_CHUNK]).values_list(
            "pk", "conversation", "response_a", "response_b"
        )
        texts.update((pk, (conversation, a, b)) for pk, conversation, a, b in rows)
    items: dict[int, tuple[Any, list[str]]] = {}
    for first in range(0, len(ranked), TEXT_CHUNK):
        item_rows = Pair.objects.filter(pk__in=ranked[first : first + TEXT_CHUNK]).values_list(
            "pk", "conversation", "responses"
        )
        items.update(
            (pk, (conversation, [str(response["content"]) for response in responses or ()]))
            for pk, conversation, responses in item_rows
        )
    result = []
    for position in positions:
        pk = data.pairs[position].pk
        sides = data.expanded[position] if data.is_expanded(position) else None
        if sides is not None and pk in items:
            conversation, responses = items[pk]
            result.append((conversation, responses[sides[0]], responses[sides[1]]))
        elif sides is None and pk in texts:
            result.append(texts[pk])
        else:
            raise JobError(f"pair {pk} was deleted while the job read its texts")
    return result


def _decided_query(*, campaign: Campaign, provenances: Sequence[str]) -> QuerySet[Pair]:
    return (
        Pair.objects.filter(
            campaign=campaign,
            is_gold=False,
            provenance__in=provenances,
            consensus_preference__isnull=False,
        )
        .exclude(consensus_preference=0)
        # Never a chosen/rejected pair, whatever preference a later verdict stored.
        .exclude(consensus_outcome__in=(Outcome.BOTH_BAD, Outcome.BOTH_GOOD))
        # Waiting for an expert, who may overturn the majority: not verified yet.
        .exclude(status=Pair.Status.ESCALATED)
    )


def _decided_pairs(
    *, campaign: Campaign, provenances: Sequence[str], by_votes: bool = False
) -> JudgedPairs:
    """Non-gold pairs of these provenances whose consensus picked a side, in id order. With
    ``by_votes``, a pair a weighted re-estimate settled counts as unanimous or majority by
    the votes behind its verdict (``_weighted_by_votes``)."""
    decided = _decided_query(campaign=campaign, provenances=provenances)
    if by_votes:
        decided = decided | _weighted_by_votes(campaign=campaign, provenances=provenances)
    pairs = _judged(decided.order_by("id"))
    # The query excludes null preferences; the ORM's types cannot say so.
    return JudgedPairs(pairs, [cast(int, pair.consensus_preference) for pair in pairs])


def _weighted_by_votes(*, campaign: Campaign, provenances: Sequence[str]) -> QuerySet[Pair]:
    """The pairs a weighted re-estimate settled (provenance ``dawid_skene``, which replaces
    the vote's own) that were ``unanimous`` (every counting label picked the verdict's side)
    or ``majority`` (some label did not), as ``provenances`` asks."""
    wanted = {Pair.Provenance.UNANIMOUS, Pair.Provenance.MAJORITY}.intersection(provenances)
    if not wanted:
        return Pair.objects.none()
    dissent = (
        Label.objects.filter(pair_id=OuterRef("pk"), is_retest=False, set_aside=False)
        .annotate(
            agrees=ExpressionWrapper(
                F("preference") * OuterRef("consensus_preference"), output_field=IntegerField()
            )
        )
        .filter(~Q(outcome=Outcome.PREFERENCE) | Q(agrees__lte=0))
    )
    settled = _decided_query(campaign=campaign, provenances=[Pair.Provenance.DAWID_SKENE])
    if wanted == {Pair.Provenance.UNANIMOUS}:
        return settled.exclude(Exists(dissent))
    if wanted == {Pair.Provenance.MAJORITY}:
        return settled.filter(Exists(dissent))
    return settled


def training_pairs(*, campaign: Campaign, train_on_gold_share: float = 0.0) -> JudgedPairs:
    if campaign.item_kind == ItemKind.RANKING:
        return _ranking_training_pairs(campaign=campaign)
    verified = _decided_pairs(campaign=campaign, provenances=TRAINABLE_PROVENANCE)
    pairs, preferences = verified.pairs, verified.preferences
    if train_on_gold_share > 0:
        for pair in gold_pairs(campaign=campaign).pairs:
            if _gold_goes_to_training(pair.pk, train_on_gold_share):
                pairs.append(pair)
                preferences.append(cast(int, pair.gold_preference))
    return JudgedPairs(pairs, preferences)


def training_pairs_exist(*, campaign: Campaign, train_on_gold_share: float = 0.0) -> bool:
    """Whether ``training_pairs`` would give any pair, without loading them."""
    if campaign.item_kind == ItemKind.RANKING:
        rankings = _ranking_items(campaign).values_list("consensus_ranking", flat=True)
        return any(
            ranking_pairs(ranking or [], campaign.ranking_expansion)
            for ranking in rankings.iterator(chunk_size=1000)
        )
    if _decided_query(campaign=campaign, provenances=TRAINABLE_PROVENANCE).exists():
        return True
    if train_on_gold_share <= 0:
        return False
    gold_ids = _gold_query(campaign).values_list("id", flat=True)
    return any(
        _gold_goes_to_training(pair_id, train_on_gold_share)
        for pair_id in gold_ids.iterator(chunk_size=5000)
    )


def _ranking_items(campaign: Campaign) -> QuerySet[Pair]:
    return Pair.objects.filter(
        campaign=campaign,
        is_gold=False,
        provenance__in=TRAINABLE_PROVENANCE,
        consensus_ranking__isnull=False,
        responses__isnull=False,
    ).exclude(status=Pair.Status.ESCALATED)


def _ranking_training_pairs(*, campaign: Campaign) -> JudgedPairs:
    """Verified ranking items, each expanded by the campaign's rule; tied responses never
    make a pair (``scoring.loop.ranking_pairs``). No text is read here (``pair_texts``)."""
    items = (
        _ranking_items(campaign)
        .only("id", "campaign_id", "task_category", "provenance", "consensus_ranking")
        .order_by("id")
    )
    pairs: list[JudgedPair] = []
    expanded: list[tuple[int, int] | None] = []
    for item in items.iterator(chunk_size=TEXT_CHUNK):
        record = JudgedPair(
            item.pk,
            item.campaign_id,
            sys.intern(item.task_category),
            sys.intern(item.provenance),
            False,
            None,
            None,
        )
        for ranked in ranking_pairs(item.consensus_ranking or [], campaign.ranking_expansion):
            pairs.append(record)
            expanded.append((ranked.chosen, ranked.rejected))
    return JudgedPairs(pairs, [1] * len(pairs), expanded)


def _gold_query(campaign: Campaign) -> QuerySet[Pair]:
    return Pair.objects.filter(
        campaign=campaign, is_gold=True, gold_preference__isnull=False
    ).exclude(gold_preference=0)


def gold_pairs(*, campaign: Campaign) -> JudgedPairs:
    pairs = _judged(_gold_query(campaign).order_by("id"))
    return JudgedPairs(pairs, [cast(int, pair.gold_preference) for pair in pairs])


def heldout_pairs(*, campaign: Campaign, train_on_gold_share: float = 0.0) -> JudgedPairs:
    gold = gold_pairs(campaign=campaign)
    kept = [
        (pair, preference)
        for pair, preference in zip(gold.pairs, gold.preferences, strict=True)
        if not (train_on_gold_share > 0 and _gold_goes_to_training(pair.pk, train_on_gold_share))
    ]
    return JudgedPairs([pair for pair, _ in kept], [preference for _, preference in kept])


_SNAPSHOT_CHUNK = 10_000


def label_snapshot(
    *, campaign: Campaign, data: JudgedPairs, heldout: JudgedPairs
) -> dict[str, Any]:
    """Which labels a version saw: counts, the highest label id, and a digest of the data."""
    ids = data.pair_ids
    # In chunks, not one IN list of every id (80 MB of SQL at 10M pairs); a ranking item's id
    # stands for several pairs, so each id counts once.
    distinct = sorted(set(ids))
    labels = sum(
        Label.objects.filter(
            pair_id__in=distinct[start : start + _SNAPSHOT_CHUNK], is_gold_check=False
        ).count()
        for start in range(0, len(distinct), _SNAPSHOT_CHUNK)
    )
    # The same digest as of the lines joined by newlines, fed one line at a time. A pair
    # expanded from a ranking item is "id:chosen>rejected" (its preference is always 1).
    hasher = hashlib.sha256()
    for index, (pair_id, preference) in enumerate(zip(ids, data.preferences, strict=True)):
        sides = data.expanded[index] if data.is_expanded(index) else None
        line = f"{pair_id}:{preference}" if sides is None else f"{pair_id}:{sides[0]}>{sides[1]}"
        hasher.update(f"{chr(10) if index else ''}{line}".encode())
    digest = hasher.hexdigest()
    by_provenance: dict[str, int] = defaultdict(int)
    for pair in data.pairs:
        by_provenance[pair.provenance or "none"] += 1
    return {
        "pairs": len(data),
        "labels": labels,
        "max_label_id": Label.objects.filter(campaign=campaign).aggregate(m=Max("id"))["m"],
        "digest": digest,
        "by_provenance": dict(sorted(by_provenance.items())),
        "heldout_gold_pairs": len(heldout),
    }


# What a gold model may learn from: human-verified pairs only (never silver, never a label no
# human gave). Majority pairs are offered but not chosen by default: one dissenting vote.
GOLD_SOURCES = ("gold", "adjudicated", "unanimous", "majority")
DEFAULT_GOLD_SOURCES = ("gold", "adjudicated", "unanimous")


def gold_training_pairs(*, campaign: Campaign, sources: Sequence[str]) -> JudgedPairs:
    """The human-verified pairs of the chosen ``sources`` (``GOLD_SOURCES``), in id order:
    gold pairs with their gold preference, the others with their consensus (ties left out).
    A voted pair waiting for an expert is not verified yet (the export leaves it out too)."""
    unknown = sorted(set(sources) - set(GOLD_SOURCES))
    if unknown:
        raise JobError(f"unknown gold model source {', '.join(unknown)}")
    pairs: list[JudgedPair] = []
    preferences: list[int] = []
    provenances = [source for source in sources if source != "gold"]
    if provenances:
        verified = _decided_pairs(campaign=campaign, provenances=provenances, by_votes=True)
        pairs, preferences = verified.pairs, verified.preferences
    if "gold" in sources:
        gold = gold_pairs(campaign=campaign)
        pairs += gold.pairs
        preferences += gold.preferences
    return JudgedPairs(pairs, preferences)
