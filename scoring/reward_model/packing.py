"""Padding-free batches: variable-length sequences packed end to end into one row.

A packed batch holds sequences back to back in rows, with per-sequence ``position_ids`` (0, 1, …
restarting at each sequence) and attention kept inside each sequence. Only the tail of a row can
be filler (a few tokens where rows are as wide as the longest sequence, none in a single row), so
next to no compute goes to padding, and batches are sized by a token budget, not a pair count.

What transformers gives us and what we add by hand (transformers 5.x):

* Decoders (Qwen3, Llama, …): given ``position_ids`` that restart at 0 and no
  ``attention_mask``, the model's own mask builder (``masking_utils.find_packed_sequence_indices``)
  detects the packed sequences and builds a block-diagonal causal mask for ``sdpa``,
  ``flex_attention`` and ``eager``; flash-attention reads the same ``position_ids`` as varlen
  boundaries. We use that as is (``DataCollatorWithFlattening`` builds the same row; we build it
  here because we pack token ids we already hold, pairs kept together).
* BERT-style encoders (MiniLM): the bidirectional mask builder ignores ``position_ids``, so
  packing needs a block-diagonal mask. It accepts a prepared 4D mask as is, so we pass one
  (boolean, ``(rows, 1, width, width)``).
* Pooling: every ``*ForSequenceClassification`` head pools one position per row (decoders: the
  last non-padding token; BERT: the pooler over ``[CLS]``), which a packed row breaks. So we run
  the base model and read the reward head ourselves at each sequence's last token (decoders) or
  first token (encoders), keeping the model's own convention (see :mod:`.head`). Architectures
  other than these two fall back to padded batches (:func:`supports_packing`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from .head import find_reward_head


@dataclass(frozen=True)
class PackedBatch:
    """Sequences packed end to end into ``rows`` of equal width: ``input_ids`` and
    ``position_ids`` of shape ``(rows, width)``. ``row``/``start``/``lengths`` locate each
    sequence, in the order given to :func:`pack`. A row's tail past its last sequence is filler
    (token ``filler_id``, positions restarting at 0, its own attention block), never read."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    row: list[int]
    start: list[int]
    lengths: list[int]

    @property
    def tokens(self) -> int:
        return int(sum(self.lengths))

    @property
    def slots(self) -> int:
        """Token positions computed, filler included."""
        return int(self.input_ids.numel())

    def first_index(self) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.input_ids.device
        return torch.tensor(self.row, device=device), torch.tensor(self.start, device=device)

    def last_index(self) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.input_ids.device
        ends = [start + length - 1 for start, length in zip(self.start, self.lengths, strict=True)]
        return torch.tensor(self.row, device=device), torch.tensor(ends, device=device)

    def block_diagonal_mask(self) -> torch.Tensor:
        """Boolean ``(rows, 1, width, width)`` mask, True where query and key share a block.

        Blocks are told apart by their positions restarting at 0 (filler is a block too)."""
        restarts = (self.position_ids == 0).to(torch.int64)
        segment = torch.cumsum(restarts, dim=1)
        return (segment[:, :, None] == segment[:, None, :])[:, None]


def pack(
    sequences: Sequence[Sequence[int]],
    *,
    width: int | None = None,
    filler_id: int = 0,
    device: torch.device | str = "cpu",
) -> PackedBatch:
    """Pack token id lists into rows of at most ``width`` tokens (first fit, longest first).

    ``width=None`` packs everything into one row: right for attention kernels that skip the
    blocks between sequences (flash-attention varlen). SDPA and eager attention compute the
    whole ``width × width`` score matrix under a mask, so with them rows as wide as the longest
    sequence keep the attention work at most that of a padded batch (see :func:`pack_width`).
    """
    if not sequences or any(len(sequence) == 0 for sequence in sequences):
        raise ValueError("pack needs at least one sequence and no empty sequence.")
    lengths = [len(sequence) for sequence in sequences]
    limit = max(max(lengths), width or sum(lengths))
    row_of = [0] * len(sequences)
    start_of = [0] * len(sequences)
    used: list[int] = []
    rows: list[list[int]] = []
    for index in sorted(range(len(sequences)), key=lambda item: -lengths[item]):
        fitting = [row for row, filled in enumerate(used) if filled + lengths[index] <= limit]
        if fitting:
            row_index = fitting[0]
        else:
            row_index = len(used)
            used.append(0)
            rows.append([])
        row_of[index], start_of[index] = row_index, used[row_index]
        used[row_index] += lengths[index]
        rows[row_index].append(index)
    row_width = max(used)
    input_ids = torch.full((len(rows), row_width), filler_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), row_width), dtype=torch.long)
    for row_index, members in enumerate(rows):
        for index in members:
            begin, length = start_of[index], lengths[index]
            input_ids[row_index, begin : begin + length] = torch.as_tensor(sequences[index])
            position_ids[row_index, begin : begin + length] = torch.arange(length)
        tail = row_width - used[row_index]
        if tail:
            position_ids[row_index, used[row_index] :] = torch.arange(tail)
    return PackedBatch(
        input_ids=input_ids.to(device),
        position_ids=position_ids.to(device),
        row=row_of,
        start=start_of,
        lengths=lengths,
    )


def token_budget_batches(
    lengths: Sequence[int], budget: int, *, max_items: int | None = None
) -> Iterator[list[int]]:
    """Consecutive groups of indices whose lengths sum to at most ``budget`` (an item longer than
    the budget goes alone). Order is kept: sort the indices first to group similar lengths."""
    batch: list[int] = []
    used = 0
    for index, length in enumerate(lengths):
        full = used + length > budget or (max_items is not None and len(batch) >= max_items)
        if batch and full:
            yield batch
            batch, used = [], 0
        batch.append(index)
        used += length
    if batch:
        yield batch


def pack_width(model: PreTrainedModel, lengths: Sequence[int]) -> int | None:
    """Row width for :func:`pack`: one row where the attention kernel skips the blocks between
    sequences (flash-attention reads ``position_ids`` as varlen boundaries); else rows as wide
    as the batch's longest sequence, since SDPA and eager attention compute every row's whole
    score matrix: shorter sequences then share rows, and no row is wider than a padded batch."""
    if model.config._attn_implementation.startswith("flash_attention"):
        return None
    return max(lengths)


def _is_bert_like(model: PreTrainedModel) -> bool:
    base = model.base_model
    return (
        getattr(base, "pooler", None) is not None
        and isinstance(getattr(model, "classifier", None), torch.nn.Linear)
        and not getattr(model.config, "is_decoder", False)
    )


def _is_decoder(model: PreTrainedModel) -> bool:
    # GenericForSequenceClassification (Qwen2/3, Llama, Mistral, Gemma…): ``score`` on every
    # position, the last real token kept.
    head = getattr(model, "score", None)
    return isinstance(head, torch.nn.Linear) and model.base_model is not model


def supports_packing(model: PreTrainedModel) -> bool:
    """Whether :func:`packed_rewards` knows where this architecture reads its reward."""
    return _is_bert_like(model) or _is_decoder(model)


def packed_forward(model: PreTrainedModel, batch: PackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards (shape ``(n,)``) and the head inputs (``(n, hidden)``) of a packed batch, with
    gradients when enabled. Equal to the padded forward pass of the same sequences."""
    base = model.base_model
    if _is_bert_like(model):
        hidden = base(
            input_ids=batch.input_ids,
            position_ids=batch.position_ids,
            attention_mask=batch.block_diagonal_mask(),
        ).last_hidden_state
        # BertPooler reads position 0 of each row: give it each sequence's [CLS] as a row.
        pooled = base.pooler(hidden[batch.first_index()].unsqueeze(1))
        features = pooled
        pooled = model.dropout(pooled) if hasattr(model, "dropout") else pooled
        head = model.classifier
    elif _is_decoder(model):
        hidden = base(
            input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False
        ).last_hidden_state
        features = pooled = hidden[batch.last_index()]
        head = model.score
    else:
        raise ValueError(f"Packed batches are not supported for {type(model).__name__}.")
    if head is not find_reward_head(model):
        raise ValueError(f"{type(model).__name__} does not end in the expected reward head.")
    rewards = head(pooled).reshape(-1)
    return rewards, features
