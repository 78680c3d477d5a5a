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
- hh_rlhf: chosen and rejected transcripts in Anthropic's "\\n\\nHuman: ... \\n\\nAssistant: ..."
  form.

For hf_messages and hh_rlhf rows chosen becomes response A and rejected response B, with
silver_preference = 1. The stored orientation is canonical only: the assignment engine
randomises what annotators see, so the fixed placement leaks nothing to them.

Unknown top-level keys are ignored (exports often carry ids and scores); unknown keys inside
"attributes" are rejected, because there they are most likely a typo.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from annotation.importers._json import dumps_sorted
from annotation.importers.records import (
    ATTRIBUTE_NAMES,
    MAX_RESPONSES,
    MIN_RESPONSES,
    ROLES,
    ImportLimits,
    PairRecord,
    RawFormat,
)
from core.errors import BadRequest

# The lengths of the pair's columns that have one (a test checks them against the model).
EXTERNAL_ID_MAX_CHARS = 255
SOURCE_MAX_CHARS = 255
SHORT_ATTRIBUTE_MAX_CHARS = {"task_category": 100, "objectivity": 100, "controversiality": 100}
# Lenient names from ShareGPT-style exports; anything else is an error.
ROLE_ALIASES = {"human": "user", "gpt": "assistant"}
PREFERRED_VALUES = {"a": 1, "b": -1, "tie": 0}

_HH_INNER_MARKER = re.compile(r"\n\n(Human|Assistant):")  # turn markers after the first
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}
_HH_HUMAN = "\n\nHuman:"
_HH_ASSISTANT = "\n\nAssistant:"
# Columns that hold JSON text in CSV files (and may in Parquet files).
_ATTRIBUTE_SET = frozenset(ATTRIBUTE_NAMES)
_RESPONSE_KEYS = frozenset({"response_a", "response_b", "chosen", "rejected"})
_NESTED_KEYS = (
    "conversation",
    "attributes",
    "chosen",
    "rejected",
    "prompt",
    "responses",
    "completions",
    "silver_ranking",
)


class RowError(BadRequest):
    """A row is invalid; the caller adds where it is."""

    code = "invalid_row"


def record_from_row(
    row: Any, *, line: int, limits: ImportLimits, from_text: bool = False
) -> PairRecord:
    """Validate one row and build its record; raises RowError with the reason.

    from_text marks tabular sources (CSV, Parquet), whose cells may be strings: empty cells
    count as missing, nested columns may hold JSON text and numbers may be text.
    """
    if not isinstance(row, dict):
        raise RowError(f"expected a JSON object, got {_type_name(row)}")
    if from_text:
        row = _decode_text_row(row)
    if "responses" in row:
        return _kwise_record(row, line, limits)
    if "completions" in row:
        return _ultrafeedback_record(row, line, limits)
    if "response_a" in row or "response_b" in row:
        return _native_record(row, line, limits)
    if "chosen" in row or "rejected" in row:
        return _chosen_rejected_record(row, line, limits)
    raise RowError("row has neither response_a/response_b nor chosen/rejected (nor responses)")


def _prompt_conversation(
    row: dict[str, Any], limits: ImportLimits, *, prompt_keys: tuple[str, ...] = ("prompt",)
) -> list[dict[str, str]]:
    conversation_value = row.get("conversation")
    prompts = [key for key in prompt_keys if row.get(key) is not None]
    if conversation_value is not None:
        if prompts:
            raise RowError(f"give either conversation or {prompts[0]}, not both")
        conversation = _conversation(conversation_value, "conversation", limits)
    elif prompts:
        key = prompts[0]
        conversation = [{"role": "user", "content": _text(row[key], key, limits)}]
    else:
        raise RowError(f"missing field conversation (or {' or '.join(prompt_keys)})")
    _check_ends_with_user(conversation, "conversation")
    return conversation


def _kwise_responses(value: Any, field: str, limits: ImportLimits) -> list[dict[str, str]]:
    """2..MAX_RESPONSES items, each a string or {content, model} (``content_key`` for the text)."""
    if not isinstance(value, list):
        raise RowError(f"{field} must be a list of responses, got {_type_name(value)}")
    if not MIN_RESPONSES <= len(value) <= MAX_RESPONSES:
        raise RowError(
            f"{field} must hold {MIN_RESPONSES} to {MAX_RESPONSES} responses, got {len(value)}"
        )
    content_key = "response" if field == "completions" else "content"
    responses = []
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        if isinstance(item, str) and field != "completions":
            responses.append({"content": _text(item, where, limits), "model": ""})
            continue
        if type(item) is not dict:
            expected = "an object with response" if field == "completions" else "a string or "
            if field != "completions":
                expected += "an object with content"
            raise RowError(f"{where} must be {expected}, got {_type_name(item)}")
        content = _response(item.get(content_key), f"{where}.{content_key}", limits)
        model = _short_text(item.get("model"), f"{where}.model", SOURCE_MAX_CHARS) or ""
        responses.append({"content": content, "model": model})
    first_seen: dict[str, int] = {}
    for index, response in enumerate(responses):
        earlier = first_seen.setdefault(response["content"], index)
        if earlier != index:
            raise RowError(f"{field}[{earlier}] and {field}[{index}] are identical")
    return responses


def _silver_ranking_value(value: Any, size: int) -> tuple[tuple[int, ...], ...]:
    if not isinstance(value, list) or not value or len(value) > size:
        raise RowError(f"silver_ranking must be a list of 1 to {size} groups of indices")
    seen: list[int] = []
    for group in value:
        if not isinstance(group, list) or not group:
            raise RowError("silver_ranking groups must be non-empty lists of indices")
        for index in group:
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
                raise RowError(f"silver_ranking holds {index!r}, not an index below {size}")
        seen.extend(group)
    if sorted(seen) != list(range(size)):
        raise RowError("silver_ranking must name every response exactly once")
    return tuple(tuple(sorted(group)) for group in value)


def _ranking_from_scores(scores: list[float]) -> tuple[tuple[int, ...], ...]:
    """Higher score first; equal scores share a group."""
    by_score: dict[float, list[int]] = {}
    for index, score in enumerate(scores):
        by_score.setdefault(score, []).append(index)
    return tuple(tuple(by_score[score]) for score in sorted(by_score, reverse=True))


def _kwise_record(row: dict[str, Any], line: int, limits: ImportLimits) -> PairRecord:
    conversation = _prompt_conversation(row, limits)
    responses = _kwise_responses(row["responses"], "responses", limits)
    silver = row.get("silver_ranking")
    silver_ranking = None if silver is None else _silver_ranking_value(silver, len(responses))
    return _build_kwise(row, line, limits, conversation, responses, silver_ranking, "native_kwise")


def _ultrafeedback_record(row: dict[str, Any], line: int, limits: ImportLimits) -> PairRecord:
    conversation = _prompt_conversation(row, limits, prompt_keys=("instruction", "prompt"))
    completions = row["completions"]
    responses = _kwise_responses(completions, "completions", limits)
    scores: list[float] = []
    for item in completions:
        score = item.get("overall_score", item.get("rating"))
        if isinstance(score, bool) or not isinstance(score, int | float) or score != score:
            scores = []  # a missing or odd score anywhere: no silver ranking at all
            break
        scores.append(float(score))
    silver_ranking = _ranking_from_scores(scores) if scores else None
    return _build_kwise(row, line, limits, conversation, responses, silver_ranking, "ultrafeedback")


def _build_kwise(
    row: dict[str, Any],
    line: int,
    limits: ImportLimits,
    conversation: list[dict[str, str]],
    responses: list[dict[str, str]],
    silver_ranking: tuple[tuple[int, ...], ...] | None,
    raw_format: RawFormat,
) -> PairRecord:
    # The identity of a K-wise item: its conversation and every response's text, in order.
    payload = {"conversation": conversation, "responses": [r["content"] for r in responses]}
    try:
        digest = hashlib.sha256(dumps_sorted(payload)).hexdigest()
    except (TypeError, UnicodeEncodeError) as error:
        raise RowError(f"text is not valid Unicode ({error})") from None
    return PairRecord(
        line=line,
        conversation=tuple(conversation),
        response_a=responses[0]["content"],
        response_b=responses[1]["content"],
        source=_short_text(row.get("source"), "source", SOURCE_MAX_CHARS),
        external_id=_short_text(row.get("external_id"), "external_id", EXTERNAL_ID_MAX_CHARS),
        attributes=_attributes(row, limits),
        silver_preference=None,
        content_hash=digest,
        raw_format=raw_format,
        responses=tuple(responses),
        silver_ranking=silver_ranking,
    )


def _native_record(row: dict[str, Any], line: int, limits: ImportLimits) -> PairRecord:
    conversation_value = row.get("conversation")
    prompt = row.get("prompt")
    if conversation_value is not None:
        if prompt is not None:
            raise RowError("give either conversation or prompt, not both")
        conversation = _conversation(conversation_value, "conversation", limits)
    elif prompt is not None:
        conversation = [{"role": "user", "content": _text(prompt, "prompt", limits)}]
    else:
        raise RowError("missing field conversation (or prompt)")
    _check_ends_with_user(conversation, "conversation")
    response_a = _response(row.get("response_a"), "response_a", limits)
    response_b = _response(row.get("response_b"), "response_b", limits)
    if response_a == response_b:
        raise RowError("response_a and response_b are identical")
    return _build(
        row, line, limits, conversation, response_a, response_b, _silver_preference(row), "native"
    )


def _chosen_rejected_record(row: dict[str, Any], line: int, limits: ImportLimits) -> PairRecord:
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
            conversation = [{"role": "user", "content": _text(prompt, "prompt", limits)}]
            response_a = _response(chosen, "chosen response", limits)
            response_b = _response(rejected, "rejected response", limits)
    elif isinstance(chosen, list) and isinstance(rejected, list):
        chosen_turns = _conversation(chosen, "chosen", limits)
        rejected_turns = _conversation(rejected, "rejected", limits)
        if prompt is not None:
            prefix = _conversation(prompt, "prompt", limits)
            chosen_turns = prefix + chosen_turns
            rejected_turns = prefix + rejected_turns
        conversation, response_a, response_b = _split_shared_prefix(
            chosen_turns, rejected_turns, limits
        )
    else:
        raise RowError(
            "chosen and rejected must both be message lists or both be strings, got "
            f"{_type_name(chosen)} and {_type_name(rejected)}"
        )
    if response_a == response_b:
        raise RowError("chosen and rejected responses are identical")
    return _build(row, line, limits, conversation, response_a, response_b, 1, raw_format)


def _build(
    row: dict[str, Any],
    line: int,
    limits: ImportLimits,
    conversation: list[dict[str, str]],
    response_a: str,
    response_b: str,
    silver_preference: int | None,
    raw_format: RawFormat,
) -> PairRecord:
    payload = {"conversation": conversation, "response_a": response_a, "response_b": response_b}
    try:
        digest = hashlib.sha256(dumps_sorted(payload)).hexdigest()
    except (TypeError, UnicodeEncodeError) as error:
        # Lone surrogates ("\ud800") decode from JSON but cannot be stored or hashed.
        raise RowError(f"text is not valid Unicode ({error})") from None
    return PairRecord(
        line=line,
        conversation=tuple(conversation),
        response_a=response_a,
        response_b=response_b,
        source=_short_text(row.get("source"), "source", SOURCE_MAX_CHARS),
        external_id=_short_text(row.get("external_id"), "external_id", EXTERNAL_ID_MAX_CHARS),
        attributes=_attributes(row, limits),
        silver_preference=silver_preference,
        content_hash=digest,
        raw_format=raw_format,
    )


def _conversation(value: Any, field: str, limits: ImportLimits) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise RowError(f"{field} must be a list of messages, got {_type_name(value)}")
    if not value:
        raise RowError(f"{field} is empty")
    messages = []
    max_chars = limits.max_field_chars
    for index, message in enumerate(value):
        if type(message) is not dict:
            raise RowError(f"{field}[{index}] must be an object with role and content")
        role = message.get("role")
        if type(role) is not str or role not in ROLES:
            role = _role(role, f"{field}[{index}]")
        content = message.get("content")
        # Field names are only formatted on failure: this loop runs for every message.
        if type(content) is not str or len(content) > max_chars or "\x00" in content:
            if content is None:
                raise RowError(f"{field}[{index}] is missing content")
            _text(content, f"{field}[{index}].content", limits, allow_empty=True)
        messages.append({"role": role, "content": content})
    return messages


def _role(role: Any, where: str) -> str:
    if role is None:
        raise RowError(f"{where} is missing role")
    if isinstance(role, str):
        lowered = role.lower()
        if lowered in ROLES:
            return lowered
        if lowered in ROLE_ALIASES:
            return ROLE_ALIASES[lowered]
    raise RowError(f"{where}.role {role!r} is not one of system, user, assistant")


def _check_ends_with_user(conversation: list[dict[str, str]], field: str) -> None:
    if conversation[-1]["role"] != "user":
        raise RowError(f"{field} must end with a user turn")


def _split_shared_prefix(
    chosen: list[dict[str, str]],
    rejected: list[dict[str, str]],
    limits: ImportLimits,
    *,
    allow_empty_response: bool = False,
) -> tuple[list[dict[str, str]], str, str]:
    """Shared turns become the conversation; each side must add one assistant turn."""
    shared = 0
    for chosen_turn, rejected_turn in zip(chosen, rejected, strict=False):
        if chosen_turn != rejected_turn:
            break
        shared += 1
    tails = (chosen[shared:], rejected[shared:])
    if tails == ([], []):
        raise RowError("chosen and rejected are identical")
    for name, tail in zip(("chosen", "rejected"), tails, strict=True):
        if len(tail) != 1 or tail[0]["role"] != "assistant":
            raise RowError(
                f"chosen and rejected must share every turn but one final assistant turn; "
                f"{name} differs from turn {shared + 1} on with {len(tail)} turn(s)"
            )
    conversation = chosen[:shared]
    if not conversation:
        raise RowError("chosen and rejected share no conversation before their responses")
    _check_ends_with_user(conversation, "the shared conversation")
    if allow_empty_response:
        return (
            conversation,
            _text(tails[0][0]["content"], "chosen response", limits, allow_empty=True),
            _text(tails[1][0]["content"], "rejected response", limits, allow_empty=True),
        )
    return (
        conversation,
        _response(tails[0][0]["content"], "chosen response", limits),
        _response(tails[1][0]["content"], "rejected response", limits),
    )


def _hh_pair(
    chosen: str, rejected: str, limits: ImportLimits
) -> tuple[list[dict[str, str]], str, str]:
    # hh-rlhf has replies where saying nothing was the preferred action (an empty final
    # "Assistant:" turn): keep them, since the other side is never identical.
    chosen_turns = _hh_turns(chosen, "chosen", limits)
    return _split_shared_prefix(
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
            _text(content, field, limits, allow_empty=True)  # raises, naming the rule
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


def _response(value: Any, field: str, limits: ImportLimits) -> str:
    if value is None:
        raise RowError(f"missing field {field}")
    return _text(value, field, limits)


def _text(value: Any, field: str, limits: ImportLimits, *, allow_empty: bool = False) -> str:
    # One combined test on the hot path; _text_error works out which rule failed.
    if (
        type(value) is str
        and len(value) <= limits.max_field_chars
        and "\x00" not in value
        and (allow_empty or (value and not value.isspace()))
    ):
        return value
    raise RowError(_text_error(value, field, limits, allow_empty=allow_empty))


def _text_error(value: Any, field: str, limits: ImportLimits, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        return f"{field} must be a string, got {_type_name(value)}"
    if not allow_empty and (not value or value.isspace()):
        return f"{field} is empty"
    if len(value) > limits.max_field_chars:
        return f"{field} is longer than {limits.max_field_chars:,} characters"
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; failing here names the row.
        return f"{field} contains a NUL character"
    return f"{field} is not valid text"


def _short_text(value: Any, field: str, max_chars: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise RowError(f"{field} must be a string, got {_type_name(value)}")
    if len(value) > max_chars:
        raise RowError(f"{field} is longer than {max_chars} characters")
    if "\x00" in value:
        raise RowError(f"{field} contains a NUL character")
    return value or None


def _silver_preference(row: dict[str, Any]) -> int | None:
    silver = row.get("silver_preference")
    preferred = row.get("preferred")
    if silver is not None and preferred is not None:
        raise RowError("give either silver_preference or preferred, not both")
    if silver is not None:
        if isinstance(silver, bool) or not isinstance(silver, int) or not -2 <= silver <= 2:
            raise RowError(f"silver_preference must be an integer from -2 to 2, got {silver!r}")
        return silver
    if preferred is not None:
        key = preferred.lower() if isinstance(preferred, str) else None
        if key not in PREFERRED_VALUES:
            raise RowError(f"preferred must be 'a', 'b' or 'tie', got {preferred!r}")
        return PREFERRED_VALUES[key]
    return None


def _attributes(row: dict[str, Any], limits: ImportLimits) -> dict[str, Any]:
    """The five Skywork attributes that are present; empty values count as absent."""
    attributes: dict[str, Any] = {}
    max_chars = limits.max_field_chars
    nested = row.get("attributes")
    if nested is not None:
        if type(nested) is not dict:
            raise RowError(f"attributes must be an object, got {_type_name(nested)}")
        for name, value in nested.items():
            if name not in _ATTRIBUTE_SET:
                raise RowError(
                    f"unknown attribute {name!r}; expected one of " + ", ".join(ATTRIBUTE_NAMES)
                )
            if type(value) is str and 0 < len(value) <= max_chars and "\x00" not in value:
                attributes[name] = value  # the common case, checked inline for speed
            elif value is not None and value != "":
                attributes[name] = _attribute_value(name, value, limits)
    if not _ATTRIBUTE_SET.isdisjoint(row):
        for name in ATTRIBUTE_NAMES:
            flat = row.get(name)
            if flat is None or flat == "":
                continue
            flat = _attribute_value(name, flat, limits)
            if attributes.setdefault(name, flat) != flat:
                raise RowError(f"attribute {name} is given twice with different values")
    for name, max_chars in SHORT_ATTRIBUTE_MAX_CHARS.items():
        value = attributes.get(name)
        if value is not None and len(value) > max_chars:
            raise RowError(f"attributes.{name} is longer than {max_chars} characters")
    return attributes


def _attribute_value(name: str, value: Any, limits: ImportLimits) -> str | list[str]:
    field = f"attributes.{name}"
    if name == "desired_attributes" and isinstance(value, list):
        return [_text(item, field, limits, allow_empty=True) for item in value]
    return _text(value, field, limits, allow_empty=True)


def _decode_text_row(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells: empty means missing, nested columns hold JSON, preferences are numbers.

    Empty responses stay, so that they are reported as empty rather than missing.
    """
    decoded = {
        key: value
        for key, value in row.items()
        if value is not None and (value != "" or key in _RESPONSE_KEYS)
    }
    for key in _NESTED_KEYS:
        value = decoded.get(key)
        if not isinstance(value, str) or value[:1] not in ("[", "{"):
            continue
        if key in ("chosen", "rejected", "prompt") and not _looks_like_messages(value):
            continue  # a plain answer that happens to start with a bracket
        try:
            decoded[key] = json.loads(value)
        except ValueError as error:
            raise RowError(f"{key} is not valid JSON: {error}") from None
    silver = decoded.get("silver_preference")
    if isinstance(silver, str):
        try:
            decoded["silver_preference"] = int(silver.strip())
        except ValueError:
            raise RowError(
                f"silver_preference must be an integer from -2 to 2, got {silver!r}"
            ) from None
    return decoded


def _looks_like_messages(value: str) -> bool:
    try:
        parsed = json.loads(value)
    except ValueError:
        return False
    return isinstance(parsed, list) and all(
        isinstance(message, dict) and "role" in message for message in parsed
    )


def _type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )
