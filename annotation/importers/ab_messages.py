"""A/B message-list rows: the rows of an export's ties and outcomes files
(``scoring.datasets.export``, ``UNRANKED_SCHEMA``), whose ``response_a`` and ``response_b`` are
each the conversation plus that response as a final assistant turn, as ``chosen`` and
``rejected`` are in its main file.

The shared turns become the conversation, and A and B stay as they are: the export writes them
as imported, so a re-imported pair has its original identity (content hash). The source label
is the export's ``preference`` column (canonical, -2..2; null: none), or ``silver_preference``
or ``preferred`` as in native rows: a tie comes back as a tie, an unresolved or discarded pair
with no label. A row whose ``outcome`` is "both_bad" or "both_good" (the outcomes file) is
refused, naming the file: a source label says which response is better or that they tie, and
"both are bad" is neither.
"""

from __future__ import annotations

from typing import Any

from annotation.importers.chosen_rejected import split_shared_prefix
from annotation.importers.records import ImportLimits, PairRecord
from annotation.importers.row_fields import (
    RowError,
    conversation_turns,
    pair_record,
    silver_preference_value,
)

NAMES = ("response_a", "response_b")
_NO_PREFERENCE_OUTCOMES = frozenset({"both_bad", "both_good"})


def is_ab_messages(row: dict[str, Any]) -> bool:
    """Whether a row with neither conversation nor prompt gives A or B as a message list."""
    return isinstance(row.get("response_a"), list) or isinstance(row.get("response_b"), list)


def ab_messages_record(row: dict[str, Any], line: int, limits: ImportLimits) -> PairRecord:
    _check_outcome(row.get("outcome"))
    turns_a = conversation_turns(row.get("response_a"), "response_a", limits)
    turns_b = conversation_turns(row.get("response_b"), "response_b", limits)
    conversation, response_a, response_b = split_shared_prefix(
        turns_a,
        turns_b,
        limits,
        allow_empty_response=True,
        names=NAMES,
        response_names=NAMES,
    )
    if response_a == response_b:
        raise RowError("response_a and response_b are identical")
    return pair_record(
        row, line, limits, conversation, response_a, response_b, _label(row), "ab_messages"
    )


def _check_outcome(outcome: Any) -> None:
    if outcome is None or outcome == "preference":
        return
    if outcome in _NO_PREFERENCE_OUTCOMES:
        verdict = outcome.replace("_", " ")
        raise RowError(
            f'this row is from an export\'s outcomes file (consensus "{verdict}"), which a pair '
            "import cannot carry: a source label says which response is better or that they "
            "tie. Import the export's main file and its ties file instead; to have these pairs "
            "judged afresh, remove the outcome and preference columns"
        )
    raise RowError(f"outcome must be 'preference', 'both_bad' or 'both_good', got {outcome!r}")


def _label(row: dict[str, Any]) -> int | None:
    """The export's ``preference``, else ``silver_preference``/``preferred``; None: no label."""
    silver = silver_preference_value(row)
    preference = row.get("preference")
    if preference is None:
        return silver
    if silver is not None:
        raise RowError("give either preference or silver_preference/preferred, not both")
    if isinstance(preference, bool) or not isinstance(preference, int) or not -2 <= preference <= 2:
        raise RowError(f"preference must be an integer from -2 to 2, got {preference!r}")
    return preference
