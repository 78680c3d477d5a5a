"""Turn one decoded row (a dict) into a validated PairRecord.

Row shapes, detected per row:

- native: conversation (message list) or prompt (str), response_a, response_b, and the
  optional external_id, source, attributes (or the five attribute names as flat keys),
  silver_preference (-2..2) or preferred ("a" | "b" | "tie").
- hf_messages: chosen and rejected message lists sharing every turn but the last assistant
  turn (Skywork-Reward-Preference-80K, TRL), or prompt plus chosen/rejected strings, or a
  prompt message list plus one-message chosen/rejected lists (TRL's conversational form).
- native_kwise: conversation or prompt plus ``responses``, a list of 2 to 9 strings or
  {content, model} objects (a K-wise item, ranked by annotators); optional silver_ranking
  (groups of indices, best first).
- ultrafeedback: ``instruction`` (or prompt/conversation) plus ``completions``, a list of
  {response, model} objects; when every completion has an ``overall_score`` (or ``rating``),
  those scores become the silver ranking (equal scores tie).
- ab_messages: response_a and response_b message lists sharing every turn but the last
  assistant turn, with no conversation or prompt: an export's ties and outcomes files (see
  ``ab_messages``; the outcomes file is refused, naming it). The label is the ``preference``
  column, or silver_preference/preferred.
- hh_rlhf: chosen and rejected transcripts in Anthropic's "\\n\\nHuman: ... \\n\\nAssistant: ..."
  form.

For hf_messages and hh_rlhf rows chosen becomes response A and rejected response B, with
silver_preference the row's preference_strength (an export's; 1 without it). The stored
orientation is canonical only: the assignment engine randomises what annotators see, so the
fixed placement leaks nothing to them.

Unknown top-level keys are ignored (exports often carry ids and scores); unknown keys inside
"attributes" are rejected, because there they are most likely a typo.

The shapes live in ``chosen_rejected``, ``ab_messages`` and ``kwise_rows``, the checks they
share in ``row_fields``; this module tells the shape and keeps the native one.
"""

from __future__ import annotations

from typing import Any

from annotation.importers.ab_messages import ab_messages_record, is_ab_messages
from annotation.importers.chosen_rejected import chosen_rejected_record
from annotation.importers.kwise_rows import native_kwise_record, ultrafeedback_record
from annotation.importers.records import ImportLimits, PairRecord
from annotation.importers.row_fields import (
    RowError,
    check_ends_with_user,
    conversation_turns,
    decode_text_row,
    pair_record,
    response_text,
    silver_preference_value,
    text_value,
    type_name,
)

__all__ = ["RowError", "record_from_row"]


def record_from_row(
    row: Any, *, line: int, limits: ImportLimits, from_text: bool = False
) -> PairRecord:
    """Validate one row and build its record; raises RowError with the reason.

    from_text marks tabular sources (CSV, Parquet), whose cells may be strings: empty cells
    count as missing, nested columns may hold JSON text and numbers may be text.
    """
    if not isinstance(row, dict):
        raise RowError(f"expected a JSON object, got {type_name(row)}")
    if from_text:
        row = decode_text_row(row)
    if "responses" in row:
        return native_kwise_record(row, line, limits)
    if "completions" in row:
        return ultrafeedback_record(row, line, limits)
    if "response_a" in row or "response_b" in row:
        return _native_record(row, line, limits)
    if "chosen" in row or "rejected" in row:
        return chosen_rejected_record(row, line, limits)
    raise RowError("row has neither response_a/response_b nor chosen/rejected (nor responses)")


def _native_record(row: dict[str, Any], line: int, limits: ImportLimits) -> PairRecord:
    conversation_value = row.get("conversation")
    prompt = row.get("prompt")
    if conversation_value is not None:
        if prompt is not None:
            raise RowError("give either conversation or prompt, not both")
        conversation = conversation_turns(conversation_value, "conversation", limits)
    elif prompt is not None:
        conversation = [{"role": "user", "content": text_value(prompt, "prompt", limits)}]
    elif is_ab_messages(row):
        return ab_messages_record(row, line, limits)
    else:
        raise RowError("missing field conversation (or prompt)")
    check_ends_with_user(conversation, "conversation")
    response_a = response_text(row.get("response_a"), "response_a", limits)
    response_b = response_text(row.get("response_b"), "response_b", limits)
    if response_a == response_b:
        raise RowError("response_a and response_b are identical")
    return pair_record(
        row,
        line,
        limits,
        conversation,
        response_a,
        response_b,
        silver_preference_value(row),
        "native",
    )
