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
  (boolean, ``(rows, 1, width, width)``). On the CPU we do better: every sequence goes into one
  row and attends to itself only, through an attention function registered with transformers
  (:func:`packed_attention`, given the sequence boundaries as flash-attention varlen reads them),
  so no filler is computed and no score between two sequences either.
* Pooling: every ``*ForSequenceClassification`` head pools one position per row (decoders: the
  last non-padding token; BERT: the pooler over ``[CLS]``), which a packed row breaks. So we run
  the base model and read the reward head ourselves at each sequence's last token that is not
  the pad id (decoders) or first token (encoders), keeping the model's own convention (see
  :mod:`.head`). Architectures
  other than these two fall back to padded batches (:func:`supports_packing`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from .head import find_reward_head

# The attention implementation of an encoder that scores or trains packed batches on the CPU:
# per-sequence attention given boundaries, transformers' SDPA otherwise (packed_attention).
PACKED_ATTENTION = "arbiter_packed_sdpa"


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

    def last_non_padding_index(self, pad_token_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Each sequence's last token whose id is not ``pad_token_id`` (its first token when all
        are), where transformers' seq-cls decoders read the reward on a padded batch. Where the
        pad token is also the eos that closes every transcript, that is the token before it."""
        rows, ends = self.last_index()
        if pad_token_id is None:
            return rows, ends
        device = self.input_ids.device
        starts = torch.tensor(self.start, device=device)
        offsets = torch.arange(max(self.lengths), device=device)
        inside = offsets < torch.tensor(self.lengths, device=device)[:, None]
        columns = (starts[:, None] + offsets).clamp_max(self.input_ids.shape[1] - 1)
        real = inside & (self.input_ids[rows[:, None], columns] != pad_token_id)
        # argmax of all zeros is 0, as in transformers' own (positions * non_pad).argmax(-1).
        return rows, starts + (offsets * real).argmax(-1)

    def boundaries(self) -> torch.Tensor:
        """Cumulative sequence ends of a one-row batch, from 0, in row order (int32): the
        ``cu_seq_lens`` of flash-attention varlen."""
        if self.input_ids.shape[0] != 1:
            raise ValueError("Sequence boundaries describe a batch packed into one row.")
        ends = sorted(
            start + length for start, length in zip(self.start, self.lengths, strict=True)
        )
        return torch.tensor([0, *ends], dtype=torch.int32, device=self.input_ids.device)

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
    """Row width for :func:`pack`: one row where attention skips the blocks between sequences
    (flash-attention reads ``position_ids`` as varlen boundaries; an encoder on the CPU runs
    :func:`packed_attention`); else rows as wide as the batch's longest sequence, since SDPA and
    eager attention compute every row's whole score matrix: shorter sequences then share rows,
    and no row is wider than a padded batch."""
    if model.config._attn_implementation.startswith("flash_attention"):
        return None
    if _attends_per_sequence(model):
        return None
    return max(lengths)


def _attends_per_sequence(model: PreTrainedModel) -> bool:
    # The CPU only: on a GPU one kernel per sequence and layer would cost more in launches than
    # the masked row computes in vain. Only models whose attention calls transformers' attention
    # interface: any other would attend across the whole unmasked row.
    return (
        _is_bert_like(model)
        and bool(getattr(model, "_supports_attention_backend", False))
        and model.config._attn_implementation in ("sdpa", PACKED_ATTENTION)
        and next(model.parameters()).device.type == "cpu"
    )


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """A transformers attention function (``PACKED_ATTENTION``) for bidirectional encoders.

    Given ``cu_seq_lens_q`` (the boundaries of the sequences packed into one row) each sequence
    attends to itself only; without it, this is transformers' SDPA exactly, so padded batches
    through a model set to it run as before. transformers has varlen attention only through
    flash-attention, which needs CUDA, hence this function."""
    boundaries = kwargs.get("cu_seq_lens_q")
    if boundaries is None:
        return sdpa_attention_forward(  # type: ignore[no-any-return]
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    if is_causal or getattr(module, "is_causal", False):
        raise ValueError("packed_attention serves bidirectional encoders only.")
    if not isinstance(boundaries, torch.Tensor):
        raise TypeError("cu_seq_lens_q must be a tensor of sequence boundaries.")
    lengths = torch.diff(boundaries).tolist()
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    outputs = [
        _sequence_attention(q, k, v, scale, dropout)
        for q, k, v in zip(
            query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2), strict=True
        )
    ]
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def _sequence_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float, dropout: float
) -> torch.Tensor:
    if query.dtype == torch.float32:
        return functional.scaled_dot_product_attention(
            query, key, value, dropout_p=dropout, scale=scale
        )
    # bf16 (CPU autocast): the CPU SDPA kernel's bf16 backward was slower here than plain
    # matmuls, which run on the CPU's bf16 units; softmax stays float32 as autocast keeps it.
    weights = torch.softmax(torch.matmul(query, key.transpose(-1, -2)) * scale, dim=-1)
    weights = functional.dropout(weights.to(value.dtype), p=dropout, training=dropout > 0)
    return torch.matmul(weights, value)


AttentionInterface.register(PACKED_ATTENTION, packed_attention)
AttentionMaskInterface.register(PACKED_ATTENTION, sdpa_mask)


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
        if batch.input_ids.shape[0] == 1 and _attends_per_sequence(model):
            # Kept for good: PACKED_ATTENTION is SDPA for every call without boundaries, and
            # gradient checkpointing recomputes the forward pass after this call returns.
            if model.config._attn_implementation != PACKED_ATTENTION:
                model.config._attn_implementation = PACKED_ATTENTION
            attention: dict[str, object] = {"cu_seq_lens_q": batch.boundaries()}
        else:
            attention = {"attention_mask": batch.block_diagonal_mask()}
        hidden = base(
            input_ids=batch.input_ids, position_ids=batch.position_ids, **attention
        ).last_hidden_state
        first_tokens = hidden[batch.first_index()]
        activation = getattr(base, "pooler_activation", None)
        if activation is not None:
            # ALBERT: a bare Linear over [CLS], its tanh kept apart as pooler_activation.
            pooled = activation(base.pooler(first_tokens))
        else:
            # BertPooler reads position 0 of each row: give it each sequence's [CLS] as a row.
            pooled = base.pooler(first_tokens.unsqueeze(1))
        features = pooled
        pooled = model.dropout(pooled) if hasattr(model, "dropout") else pooled
        head = model.classifier
    elif _is_decoder(model):
        hidden = base(
            input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False
        ).last_hidden_state
        pad_token_id = model.config.get_text_config().pad_token_id
        features = pooled = hidden[batch.last_non_padding_index(pad_token_id)]
        head = model.score
    else:
        raise ValueError(f"Packed batches are not supported for {type(model).__name__}.")
    if head is not find_reward_head(model):
        raise ValueError(f"{type(model).__name__} does not end in the expected reward head.")
    rewards = head(pooled).reshape(-1)
    return rewards, features
