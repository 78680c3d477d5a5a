"""The export's Arrow schemas: ranked rows (chosen/rejected) and unranked rows (A/B), and the
columns they share."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from scoring.datasets.export.filters import EVIDENCE_KINDS

_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
_EVIDENCE_COUNTS = pa.struct([(kind, pa.int32()) for kind in EVIDENCE_KINDS])
_IDENTITY_FIELDS = [
    pa.field("pair_id", pa.int64()),
    pa.field("external_id", pa.string()),
    pa.field("source", pa.string()),
]
_PROVENANCE_FIELDS = [
    pa.field("provenance", pa.string()),
    # The consensus outcome: "preference" (a side or a tie), "both_bad" or "both_good".
    pa.field("outcome", pa.string()),
    pa.field("curation", pa.string()),
    pa.field("source_label_flipped", pa.bool_()),
    pa.field("round", pa.int32()),
    pa.field("votes", pa.list_(pa.int8())),
    pa.field("disagreement", pa.float64()),
    pa.field("agreement", pa.float64()),
    # The settling rule's probability of the consensus direction (Dawid-Skene; else null).
    pa.field("consensus_posterior", pa.float64()),
    pa.field("adjudication_decision", pa.string()),
    pa.field("adjudication_preference", pa.int8()),
    pa.field("adjudication_note", pa.string()),
    pa.field("model_version", pa.int32()),
    # Rows expanded from a ranking item (null otherwise): the item, the campaign's rule, and
    # the two responses' indices and ranks (1 = best). "first" is the chosen response in the
    # main file and response_a in the ties file.
    pa.field(
        "ranking_pair",
        pa.struct(
            [
                ("item", pa.int64()),
                ("rule", pa.string()),
                ("first_index", pa.int8()),
                ("first_rank", pa.int8()),
                ("second_index", pa.int8()),
                ("second_rank", pa.int8()),
            ]
        ),
    ),
]
ATTRIBUTE_NAMES = (
    "task_category",
    "objectivity",
    "controversiality",
    "desired_attributes",
    "annotation_guideline",
)
_TRAILING_FIELDS = [
    *(pa.field(name, pa.string()) for name in ATTRIBUTE_NAMES),
    pa.field("evidence_counts", _EVIDENCE_COUNTS),
    pa.field("evidence_items", pa.list_(pa.string())),
]


def _aspects_field(first: str, second: str) -> pa.Field:
    """Per-aspect ratings of the regular labels: the mean rating of each response and how many
    labels rated the aspect, in the campaign's aspect order (aspects nobody rated are left out)."""
    return pa.field(
        "aspects",
        pa.list_(
            pa.struct(
                [
                    ("name", pa.string()),
                    (f"{first}_mean", pa.float64()),
                    (f"{second}_mean", pa.float64()),
                    ("ratings", pa.int32()),
                ]
            )
        ),
    )


# Rewrite rows only (provenance "rewrite"): the rewrite's id, and the canonical side ('a' or
# 'b') of the original response it improves on, which is the rejected one.
_REWRITE_FIELDS = [pa.field("rewrite_id", pa.int64()), pa.field("rewrite_of", pa.string())]

# chosen/rejected: the conversation plus the final assistant turn. preference_strength: 1
# (better) or 2 (much better). votes are canonical (positive = response A); chosen_side says
# whether A is the chosen one. model_* columns: the active version's view, oriented to chosen.
MAIN_SCHEMA = pa.schema(
    [
        pa.field("chosen", _MESSAGES),
        pa.field("rejected", _MESSAGES),
        *_IDENTITY_FIELDS,
        pa.field("chosen_side", pa.string()),
        pa.field("preference_strength", pa.int8()),
        *_PROVENANCE_FIELDS,
        pa.field("model_p_chosen", pa.float64()),
        pa.field("model_reward_chosen", pa.float64()),
        pa.field("model_reward_rejected", pa.float64()),
        *_TRAILING_FIELDS,
        _aspects_field("chosen", "rejected"),
        *_REWRITE_FIELDS,
    ]
)
# Pairs with no chosen side: preference 0 (tie, both bad, both good) or null (unresolved,
# discarded). Ties go to the ties file, "both bad"/"both good" to the outcomes file.
UNRANKED_SCHEMA = pa.schema(
    [
        pa.field("response_a", _MESSAGES),
        pa.field("response_b", _MESSAGES),
        *_IDENTITY_FIELDS,
        pa.field("preference", pa.int8()),
        *_PROVENANCE_FIELDS,
        pa.field("model_p_a_better", pa.float64()),
        pa.field("model_reward_a", pa.float64()),
        pa.field("model_reward_b", pa.float64()),
        *_TRAILING_FIELDS,
        _aspects_field("a", "b"),
    ]
)


def schema_description(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": item.name, "type": str(item.type)} for item in schema]


_MESSAGE_COLUMNS = frozenset({"chosen", "rejected", "response_a", "response_b"})


def _in_schema_order(schema: pa.Schema, values: dict[str, Any]) -> dict[str, Any]:
    return {name: values.get(name) for name in schema.names if name not in _MESSAGE_COLUMNS}
