"""Chosen/rejected rows: hf_messages (message lists, or a prompt with two strings) and
hh_rlhf transcripts ("\\n\\nHuman: ... \\n\\nAssistant: ...").

Chosen becomes response A and rejected response B, with silver_preference the row's
``preference_strength`` (an export's main file: 1 "A better", 2 "A much better"; 1 when the
column is absent or null, as in every other chosen/rejected source). A transcript's
or a message list's final assistant turn may be empty (hh-rlhf keeps replies where saying
nothing was preferred, and the export writes them as message lists); a prompt's two strings
may not, since an empty cell there is far likelier a missing value. The two responses are
never identical.
"""

from __future__ import annotations

import re
from typing import Any

from annotation.importers.records import ImportLimits, PairRecord, RawFormat
from annotation.importers.row_fields import (
    RowError,
    check_ends_with_user,
    conversation_turns,
    pair_record,
    response_text,
    text_value,
    type_name,
)

_HH_INNER_MARKER = re.compile(r"\n\n(Human|Assistant):")  # turn markers after the first
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}
_HH_HUMAN = "\n\nHuman:"
_HH_ASSISTANT = "\n\nAssistant:"


def chosen_rejected_record(row: dict[str, Any], line: int, limits: ImportLimits) -> PairRecord:
    if "silver_preference" in row or "preferred" in row:
        raise RowError(
            "chosen/rejected rows imply the preference; remove silver_preference/preferred"
        )
    chosen, rejected = row.get("chosen"), row.get("rejected")
    prompt = row.get("prompt")
    raw_format: RawFormat = "hf_messages"
    if chosen is None or rejected is None:
        missing = "chosen" if chosen is None else "rejected"
        raise RowError(f"missing field {missing}")
    if isinstance(chosen, str) and isinstance(rejected, str):
        if prompt is None:
            conversation, response_a, response_b = _hh_pair(chosen, rejected, limits)
            raw_format = "hh_rlhf"
        else:
            conversation = [{"role": "user", "content": text_value(prompt, "prompt", limits)}]
            response_a = response_text(chosen, "chosen response", limits)
            response_b = response_text(rejected, "rejected response", limits)
    elif isinstance(chosen, list) and isinstance(rejected, list):
        chosen_turns = conversation_turns(chosen, "chosen", limits)
        rejected_turns = conversation_turns(rejected, "rejected", limits)
        if isinstance(prompt, str):
            chosen_turns, rejected_turns = _with_prompt_text(
                prompt, chosen_turns, rejected_turns, limits
            )
        elif prompt is not None:
            prefix = conversation_turns(prompt, "prompt", limits)
            chosen_turns = prefix + chosen_turns
            rejected_turns = prefix + rejected_turns
        # An empty final assistant turn is kept, as in hh-rlhf (saying nothing was the
        # preferred reply): the export writes such a pair so, and must read back.
        conversation, response_a, response_b = split_shared_prefix(
            chosen_turns, rejected_turns, limits, allow_empty_response=True
        )
    else:
        raise RowError(
            "chosen and rejected must both be message lists or both be strings, got "
            f"{type_name(chosen)} and {type_name(rejected)}"
        )
    if response_a == response_b:
        raise RowError("chosen and rejected responses are identical")
    return pair_record(
        row,
        line,
        limits,
        conversation,
        response_a,
        response_b,
        _strength(row.get("preference_strength")),
        raw_format,
        silver_fits_scale=True,
    )


def _with_prompt_text(
    prompt: str,
    chosen: list[dict[str, str]],
    rejected: list[dict[str, str]],
    limits: ImportLimits,
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A prompt given as text beside message lists. Where the lists hold the conversation
    already (UltraFeedback-binarized and many other Hugging Face sets repeat the prompt as
    their first user turn), the prompt must be one of its user turns and adds nothing;
    where they hold the responses only, it is the user turn they answer."""
    text = text_value(prompt, "prompt", limits)
    users = [turn["content"].strip() for turn in chosen if turn["role"] == "user"]
    if not users:
        turn = [{"role": "user", "content": text}]
        return turn + chosen, turn + rejected
    if text.strip() not in users:
        raise RowError(
            "prompt is text that is not a user turn of the chosen conversation; give the "
            "conversation in one place (the chosen and rejected message lists, or prompt)"
        )
    return chosen, rejected


def _strength(value: Any) -> int:
    """The export's ``preference_strength`` of chosen over rejected; absent or null: 1."""
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value not in (1, 2):
        raise RowError(
            f"preference_strength must be 1 (better) or 2 (much better), as an export writes "
            f"it, got {value!r}; without the column every row imports as chosen better"
        )
    return value


def split_shared_prefix(
    chosen: list[dict[str, str]],
    rejected: list[dict[str, str]],
    limits: ImportLimits,
    *,
    allow_empty_response: bool = False,
    names: tuple[str, str] = ("chosen", "rejected"),
    response_names: tuple[str, str] = ("chosen response", "rejected response"),
) -> tuple[list[dict[str, str]], str, str]:
    """Shared turns become the conversation; each side must add one assistant turn. ``names``
    (the two lists' fields) and ``response_names`` (their final turns) word the errors."""
    first, second = response_names
    both = f"{names[0]} and {names[1]}"
    shared = 0
    for chosen_turn, rejected_turn in zip(chosen, rejected, strict=False):
        if chosen_turn != rejected_turn:
            break
        shared += 1
    tails = (chosen[shared:], rejected[shared:])
    if tails == ([], []):
        raise RowError(f"{both} are identical")
    for name, tail in zip(names, tails, strict=True):
        if len(tail) != 1 or tail[0]["role"] != "assistant":
            raise RowError(
                f"{both} must share every turn but one final assistant turn; "
                f"{name} differs from turn {shared + 1} on with {len(tail)} turn(s)"
            )
    conversation = chosen[:shared]
    if not conversation:
        raise RowError(f"{both} share no conversation before their responses")
    check_ends_with_user(conversation, "the shared conversation")
    if allow_empty_response:
        return (
            conversation,
            text_value(tails[0][0]["content"], first, limits, allow_empty=True),
            text_value(tails[1][0]["content"], second, limits, allow_empty=True),
        )
    return (
        conversation,
        response_text(tails[0][0]["content"], first, limits),
        response_text(tails[1][0]["content"], second, limits),
    )


def _hh_pair(
    chosen: str, rejected: str, limits: ImportLimits
) -> tuple[list[dict[str, str]], str, str]:
    # hh-rlhf has replies where saying nothing was the preferred action (an empty final
    # "Assistant:" turn): keep them, since the other side is never identical.
    chosen_turns = _hh_turns(chosen, "chosen", limits)
    return split_shared_prefix(
        chosen_turns,
        _hh_rejected_turns(rejected, chosen, chosen_turns, limits),
        limits,
        allow_empty_response=True,
    )


def _hh_rejected_turns(
    rejected: str, chosen: str, chosen_turns: list[dict[str, str]], limits: ImportLimits
) -> list[dict[str, str]]:
    """Rejected's turns, parsing only what follows the text it shares with chosen.

    Both transcripts normally repeat the same conversation and differ in the final
    "Assistant:" turn, so parsing the shared text twice is half the import's parsing time.
    Every marker occurrence is a split point (a marker cannot overlap another), so when
    rejected starts with chosen's text up to and including the marker that opens chosen's
    final assistant turn, rejected's turns before it are chosen's. Otherwise: a full parse.
    """
    last_human = chosen.rfind(_HH_HUMAN)
    final_start = chosen.find(_HH_ASSISTANT, last_human + 1 if last_human >= 0 else 0)
    if (
        final_start > 0
        and len(chosen_turns) > 1
        and chosen_turns[-1]["role"] == "assistant"
        and rejected.startswith(chosen[: final_start + len(_HH_ASSISTANT)])
    ):
        return chosen_turns[:-1] + _hh_turns(rejected[final_start:], "rejected", limits)
    return _hh_turns(rejected, "rejected", limits)


def _hh_turns(transcript: str, field: str, limits: ImportLimits) -> list[dict[str, str]]:
    """Split an hh-rlhf transcript into turns.

    A marker that repeats the current speaker does not start a new turn: hh-rlhf has
    responses in which the model itself wrote "\\n\\nAssistant:", and the text after it is
    still the same reply.
    """
    pieces = _hh_split(transcript)
    if pieces[0].strip():
        raise RowError(f"{field} is not an hh-rlhf transcript: it must start with 'Human:'")
    turns: list[list[str]] = []
    for speaker, text in zip(pieces[1::2], pieces[2::2], strict=True):
        if turns and turns[-1][0] == speaker:
            turns[-1][1] += f"\n\n{speaker}:{text}"
        else:
            turns.append([speaker, text])
    messages = []
    max_chars = limits.max_field_chars
    for speaker, text in turns:
        content = text.strip()
        if len(content) > max_chars or "\x00" in content:
            text_value(content, field, limits, allow_empty=True)  # raises, naming the rule
        messages.append({"role": _HH_ROLES[speaker], "content": content})
    return messages


def _hh_split(transcript: str) -> list[str]:
    """The pieces ``re.split(r"(?:^|\n\n)(Human|Assistant):", transcript)`` gives, about five
    times faster.

    A pattern that starts with the literal "\n\n" lets the regex engine skip ahead; the one
    marker allowed without it, at the very start, is split off here.
    """
    for speaker in _HH_ROLES:
        if transcript.startswith(speaker) and transcript[len(speaker) : len(speaker) + 1] == ":":
            return ["", speaker, *_HH_INNER_MARKER.split(transcript[len(speaker) + 1 :])]
    return _HH_INNER_MARKER.split(transcript)
