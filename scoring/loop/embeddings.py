"""Cached encoder vectors per pair, for head-mode training and retrieval.

Each pair has three blocks of ``dim`` values, computed by the campaign's base encoder (frozen
in head mode) and kept in append-only part files per encoder (``scoring.loop.vector_store``),
not in the database:

0. ``context``: the conversation plus the pair's preference attributes, mean-pooled over the
   encoder's last hidden states and L2-normalised. Nearest neighbours are searched on it.
   Mean pooling, not the reward head's input, because that is what sentence encoders such as
   all-MiniLM-L6-v2 are trained for; the text ends with the attributes and the latest turns, so
   the left truncation keeps them.
1. ``a``: the vector the reward head reads for (conversation, response A), unnormalised.
2. ``b``: the same for response B.

Head-mode training fits on blocks 1 and 2, and a head-mode version scores a pair as
``head(a)`` and ``head(b)`` exactly as the checkpoint would (the reward-model package checks
that the head reads these features). ``encoder_key`` names the base and token window; each
encoder has its own files, so vectors of another encoder are never mixed in; each part file
holds one campaign's pairs and names it. Only missing vectors are ever computed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from annotation.models import Pair
from scoring.loop.vector_store import vector_store
from scoring.reward_model.memory import release_freed_memory

if TYPE_CHECKING:
    from scoring.reward_model import RewardModel

_CHUNK = 256
_LOOKUP_CHUNK = 5000  # pair ids whose campaigns are read per query
_ATTRIBUTES = (
    "task_category",
    "objectivity",
    "controversiality",
    "desired_attributes",
    "annotation_guideline",
)

Progress = Callable[[float, str], None]
StopCheck = Callable[[], None]


def encoder_key(base: str | Path, max_length: int) -> str:
    return f"{Path(base).resolve()}|max_length={max_length}"[:500]


def context_text(pair: Pair) -> str:
    """The conversation as "role: content" lines, then the pair's preference attributes."""
    lines = [f"{turn.get('role', '')}: {turn.get('content', '')}" for turn in pair.conversation]
    for name in _ATTRIBUTES:
        value = getattr(pair, name)
        if value:
            lines.append(f"{name.replace('_', ' ')}: {value}")
    return "\n".join(lines)


@dataclass(frozen=True)
class PairVectors:
    """Vectors of several pairs, row-aligned with ``pair_ids``."""

    pair_ids: np.ndarray
    context: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def __len__(self) -> int:
        return len(self.pair_ids)

    def rows(self, pair_ids: Sequence[int]) -> np.ndarray:
        position = {int(pair_id): index for index, pair_id in enumerate(self.pair_ids)}
        return np.array([position[int(pair_id)] for pair_id in pair_ids], dtype=np.int64)


def context_vectors(model: RewardModel, texts: Sequence[str]) -> np.ndarray:
    """Mean-pooled, L2-normalised last hidden states of the model's backbone.

    A thin adapter over the reward-model package, whose ``embed_batch`` returns the reward
    head's input instead (BERT's pooler output), which sentence encoders are not trained for.
    """
    import torch

    tokenizer = model.tokenizer
    backbone = model.model.base_model
    add_special = not model.uses_chat_template
    encoded = tokenizer(
        list(texts),
        add_special_tokens=add_special,
        truncation=True,
        max_length=model.max_length,
        verbose=False,
    )["input_ids"]
    order = sorted(range(len(encoded)), key=lambda index: len(encoded[index]))
    width = backbone.config.hidden_size
    vectors = np.zeros((len(encoded), width), dtype=np.float32)
    pad_id = tokenizer.pad_token_id or 0
    batch_size = max(model.batch_size, 1)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            longest = max(len(encoded[row]) for row in rows)
            ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), longest), dtype=torch.long)
            for position, row in enumerate(rows):
                sequence = encoded[row]
                ids[position, : len(sequence)] = torch.tensor(sequence)
                mask[position, : len(sequence)] = 1
            ids, mask = ids.to(model.device), mask.to(model.device)
            hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
            vectors[rows] = pooled.cpu().numpy()
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return unit


def compute_pair_vectors(model: RewardModel, pairs: Sequence[Pair]) -> PairVectors:
    """All three blocks for these pairs (no database access)."""
    context = context_vectors(model, [context_text(pair) for pair in pairs])
    items_a = [(pair.conversation, pair.response_a) for pair in pairs]
    items_b = [(pair.conversation, pair.response_b) for pair in pairs]
    ids = model.encode(items_a).input_ids + model.encode(items_b).input_ids
    features = model.features_for_ids(ids)
    return PairVectors(
        pair_ids=np.array([pair.pk for pair in pairs], dtype=np.int64),
        context=context,
        a=features[: len(pairs)],
        b=features[len(pairs) :],
    )


def pair_embeddings_missing(*, pair_ids: Sequence[int], key: str) -> list[int]:
    return vector_store(key).missing(pair_ids)


def pair_embeddings_store(*, vectors: PairVectors, key: str) -> None:
    """Append these pairs' vectors (``scoring.loop.vector_store``): one part file per campaign,
    named by it, so a campaign's index reads its own parts, not those of every campaign that
    shares the encoder."""
    campaign_of: dict[int, int] = {}
    for start in range(0, len(vectors.pair_ids), _LOOKUP_CHUNK):
        chunk = vectors.pair_ids[start : start + _LOOKUP_CHUNK].tolist()
        campaign_of.update(Pair.objects.filter(pk__in=chunk).values_list("pk", "campaign_id"))
    _store_by_campaign(
        vectors=vectors,
        campaigns=[campaign_of.get(int(pair_id)) for pair_id in vectors.pair_ids],
        key=key,
    )


def _store_by_campaign(*, vectors: PairVectors, campaigns: Sequence[int | None], key: str) -> None:
    """One part per campaign among these pairs (None: a pair no longer in the database, kept
    in an untagged part, which every campaign's index reads)."""
    store = vector_store(key)
    labels = np.array([-1 if campaign is None else campaign for campaign in campaigns])
    for campaign in np.unique(labels):
        rows = np.nonzero(labels == campaign)[0]
        store.append(
            ids=vectors.pair_ids[rows],
            blocks={"context": vectors.context[rows], "a": vectors.a[rows], "b": vectors.b[rows]},
            campaign_id=None if campaign < 0 else int(campaign),
        )


def pair_embeddings_ensure(
    *,
    pair_ids: Sequence[int],
    model: RewardModel,
    key: str,
    on_progress: Progress | None = None,
    check: StopCheck | None = None,
    chunk_size: int = _CHUNK,
) -> int:
    """Compute and store the vectors of the pairs that have none for ``key``; returns how many.

    ``model`` must carry the base encoder ``key`` names. Works in chunks, each written as its
    own part file, so an interrupted run keeps what it finished.
    """
    missing = pair_embeddings_missing(pair_ids=list(pair_ids), key=key)
    report = on_progress or (lambda fraction, message: None)
    for start in range(0, len(missing), chunk_size):
        if check is not None:
            check()
        chunk_ids = missing[start : start + chunk_size]
        pairs = list(Pair.objects.filter(pk__in=chunk_ids).order_by("id"))
        _store_by_campaign(
            vectors=compute_pair_vectors(model, pairs),
            campaigns=[pair.campaign_id for pair in pairs],
            key=key,
        )
        release_freed_memory()
        done = min(start + chunk_size, len(missing))
        report(done / len(missing), f"embedded {done}/{len(missing)} pairs")
    return len(missing)


def pair_vectors_load(*, pair_ids: Sequence[int], key: str, context: bool = True) -> PairVectors:
    """Stored vectors for these pairs, in the given order. Raises if any is missing.
    ``context=False`` reads only the head features (scoring), leaving ``context`` empty."""
    ids = np.array([int(pair_id) for pair_id in pair_ids], dtype=np.int64)
    empty = np.zeros((len(ids), 0), dtype=np.float32)
    if not len(ids):
        return PairVectors(ids, empty, empty, empty)
    names = ("context", "a", "b") if context else ("a", "b")
    blocks = vector_store(key).load(ids, blocks=names)
    return PairVectors(
        pair_ids=ids, context=blocks.get("context", empty), a=blocks["a"], b=blocks["b"]
    )


def pair_context_load(*, pair_ids: Sequence[int] | np.ndarray, key: str) -> np.ndarray:
    """Only the context vectors (retrieval) of these pairs, in the given order."""
    if not len(pair_ids):
        return np.zeros((0, 0), dtype=np.float32)
    context: np.ndarray = vector_store(key).load(pair_ids, blocks=("context",))["context"]
    return context


def head_rewards(model: RewardModel, vectors: PairVectors) -> tuple[np.ndarray, np.ndarray]:
    """Rewards of responses A and B from cached head inputs: what a head-mode checkpoint
    (frozen base encoder + trained head) computes for them, without a forward pass."""
    from scoring.reward_model.head import find_reward_head

    head = find_reward_head(model.model)
    weight = head.weight.detach().float().cpu().numpy().reshape(-1).astype(np.float64)
    bias = float(head.bias.detach().float().cpu().item()) if head.bias is not None else 0.0
    reward_a = vectors.a.astype(np.float64) @ weight + bias
    return reward_a, vectors.b.astype(np.float64) @ weight + bias
