"""The checks every row shape shares: messages, texts, attributes, silver labels, and the
record a row becomes (its content hash included).

Each check raises RowError with the field's name; the caller adds the line.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from annotation.importers._json import dumps_sorted
from annotation.importers.records import (
    ATTRIBUTE_NAMES,
    ROLES,
    ImportLimits,
    PairRecord,
    RawFormat,
    all_nfc,
    canonical_json,
    kwise_content_hash,
)
from core.errors import BadRequest
from core.text import encodes_as_utf8

# The lengths of the pair's columns that have one (a test checks them against the model).
EXTERNAL_ID_MAX_CHARS = 255
SOURCE_MAX_CHARS = 255
SHORT_ATTRIBUTE_MAX_CHARS = {"task_category": 100, "objectivity": 100, "controversiality": 100}
# Lenient names from ShareGPT-style exports; anything else is an error.
ROLE_ALIASES = {"human": "user", "gpt": "assistant"}
PREFERRED_VALUES = {"a": 1, "b": -1, "tie": 0}
_NOT_UNICODE = "{field} is not valid Unicode (it holds a lone surrogate such as \\ud800)"

_ATTRIBUTE_SET = frozenset(ATTRIBUTE_NAMES)
_RESPONSE_KEYS = frozenset({"response_a", "response_b", "chosen", "rejected"})
# Columns that hold JSON text in CSV files (and may in Parquet files).
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


# Columns that hold a whole number, text in CSV files: what each may be, for the error.
_NUMBER_KEYS = {
    "silver_preference": "an integer from -2 to 2",
    "preference_strength": "1 (better) or 2 (much better)",
}


class RowError(BadRequest):
    """A row is invalid; the caller adds where it is."""

    code = "invalid_row"


def pair_record(
    row: dict[str, Any],
    line: int,
    limits: ImportLimits,
    conversation: list[dict[str, str]],
    response_a: str,
    response_b: str,
    silver_preference: int | None,
    raw_format: RawFormat,
    *,
    silver_fits_scale: bool = False,
) -> PairRecord:
    try:
        if all_nfc(conversation, response_a, response_b):
            # canonical_json's bytes: the messages hold role and content only.
            payload = {
                "conversation": conversation,
                "response_a": response_a,
                "response_b": response_b,
            }
            canonical = dumps_sorted(payload)
        else:
            canonical = canonical_json(conversation, response_a, response_b)
        digest = hashlib.sha256(canonical).hexdigest()
    except (TypeError, UnicodeEncodeError) as error:
        # Lone surrogates ("\ud800") decode from JSON but cannot be stored or hashed.
        raise RowError(f"text is not valid Unicode ({error})") from None
    return PairRecord(
        line=line,
        conversation=tuple(conversation),
        response_a=response_a,
        response_b=response_b,
        source=short_text(row.get("source"), "source", SOURCE_MAX_CHARS),
        external_id=short_text(row.get("external_id"), "external_id", EXTERNAL_ID_MAX_CHARS),
        attributes=attributes_value(row, limits),
        silver_preference=silver_preference,
        content_hash=digest,
        raw_format=raw_format,
        silver_fits_scale=silver_fits_scale,
    )


def kwise_record(
    row: dict[str, Any],
    line: int,
    limits: ImportLimits,
    conversation: list[dict[str, str]],
    responses: list[dict[str, str]],
    silver_ranking: tuple[tuple[int, ...], ...] | None,
    raw_format: RawFormat,
) -> PairRecord:
    try:
        digest = kwise_content_hash(conversation, responses)
    except (TypeError, UnicodeEncodeError) as error:
        raise RowError(f"text is not valid Unicode ({error})") from None
    return PairRecord(
        line=line,
        conversation=tuple(conversation),
        response_a=responses[0]["content"],
        response_b=responses[1]["content"],
        source=short_text(row.get("source"), "source", SOURCE_MAX_CHARS),
        external_id=short_text(row.get("external_id"), "external_id", EXTERNAL_ID_MAX_CHARS),
        attributes=attributes_value(row, limits),
        silver_preference=None,
        content_hash=digest,
        raw_format=raw_format,
        responses=tuple(responses),
        silver_ranking=silver_ranking,
    )


def prompt_conversation(
    row: dict[str, Any], limits: ImportLimits, *, prompt_keys: tuple[str, ...] = ("prompt",)
) -> list[dict[str, str]]:
    conversation_value = row.get("conversation")
    prompts = [key for key in prompt_keys if row.get(key) is not None]
    if conversation_value is not None:
        if prompts:
            raise RowError(f"give either conversation or {prompts[0]}, not both")
        conversation = conversation_turns(conversation_value, "conversation", limits)
    elif prompts:
        key = prompts[0]
        conversation = [{"role": "user", "content": text_value(row[key], key, limits)}]
    else:
        raise RowError(f"missing field conversation (or {' or '.join(prompt_keys)})")
    check_ends_with_user(conversation, "conversation")
    return conversation


def conversation_turns(value: Any, field: str, limits: ImportLimits) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise RowError(f"{field} must be a list of messages, got {type_name(value)}")
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
            text_value(content, f"{field}[{index}].content", limits, allow_empty=True)
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


def check_ends_with_user(conversation: list[dict[str, str]], field: str) -> None:
    if conversation[-1]["role"] != "user":
        raise RowError(f"{field} must end with a user turn")


def response_text(value: Any, field: str, limits: ImportLimits) -> str:
    if value is None:
        raise RowError(f"missing field {field}")
    return text_value(value, field, limits)


def text_value(value: Any, field: str, limits: ImportLimits, *, allow_empty: bool = False) -> str:
    # One combined test on the hot path; _text_error works out which rule failed.
    if (
        type(value) is str
        and len(value) <= limits.max_field_chars
        and "\x00" not in value
        and (allow_empty or (value and not value.isspace()))
        and encodes_as_utf8(value)
    ):
        return value
    raise RowError(_text_error(value, field, limits, allow_empty=allow_empty))


def _text_error(value: Any, field: str, limits: ImportLimits, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        return f"{field} must be a string, got {type_name(value)}"
    if not allow_empty and (not value or value.isspace()):
        return f"{field} is empty"
    if len(value) > limits.max_field_chars:
        return f"{field} is longer than {limits.max_field_chars:,} characters"
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; failing here names the row.
        return f"{field} contains a NUL character"
    if not encodes_as_utf8(value):
        return _NOT_UNICODE.format(field=field)
    return f"{field} is not valid text"


def short_text(value: Any, field: str, max_chars: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise RowError(f"{field} must be a string, got {type_name(value)}")
    if len(value) > max_chars:
        raise RowError(f"{field} is longer than {max_chars} characters")
    if "\x00" in value:
        raise RowError(f"{field} contains a NUL character")
    if not encodes_as_utf8(value):
        raise RowError(_NOT_UNICODE.format(field=field))
    return value or None


def silver_preference_value(row: dict[str, Any]) -> int | None:
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


def attributes_value(row: dict[str, Any], limits: ImportLimits) -> dict[str, Any]:
    """The five Skywork attributes that are present; empty values count as absent."""
    attributes: dict[str, Any] = {}
    max_chars = limits.max_field_chars
    nested = row.get("attributes")
    if nested is not None:
        if type(nested) is not dict:
            raise RowError(f"attributes must be an object, got {type_name(nested)}")
        for name, value in nested.items():
            if name not in _ATTRIBUTE_SET:
                raise RowError(
                    f"unknown attribute {name!r}; expected one of " + ", ".join(ATTRIBUTE_NAMES)
                )
            if (
                type(value) is str
                and 0 < len(value) <= max_chars
                and "\x00" not in value
                and value.isascii()
            ):
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
        items = [text_value(item, field, limits, allow_empty=True) for item in value]
        for index, item in enumerate(items):
            # A list is stored one item a line (an item may hold commas), so a line break
            # inside an item would split it in two.
            if item.splitlines() != ([item] if item else []):
                raise RowError(f"{field}[{index}] holds a line break; give one item a line")
        return items
    return text_value(value, field, limits, allow_empty=True)


def decode_text_row(row: dict[str, Any]) -> dict[str, Any]:
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
        try:
            if key in ("chosen", "rejected", "prompt") and not _looks_like_messages(value):
                continue  # a plain answer that happens to start with a bracket
            decoded[key] = json.loads(value)
        except ValueError as error:
            raise RowError(f"{key} is not valid JSON: {error}") from None
        except RecursionError:
            # The standard library's decoder recurses once per level: "[[[[…" in a cell.
            raise RowError(f"{key} is nested too deeply") from None
    for key, allowed in _NUMBER_KEYS.items():
        if key not in decoded:
            continue
        number = _whole_number(decoded[key])
        if number is _MISSING:
            del decoded[key]
        elif number is None:
            raise RowError(f"{key} must be {allowed}, got {decoded[key]!r}")
        else:
            decoded[key] = number
    return decoded


_MISSING = object()


def _whole_number(value: Any) -> Any:
    """A tabular cell as a whole number: an int, or text or a float holding one ("2", "2.0",
    2.0: pandas writes a column with a missing value as floats, the missing one as NaN, which
    is read as missing here, ``_MISSING``); None when it holds something else."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                return None
    if isinstance(value, float):
        if math.isnan(value):
            return _MISSING
        return int(value) if value.is_integer() else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _looks_like_messages(value: str) -> bool:
    try:
        parsed = json.loads(value)
    except ValueError:
        return False
    return isinstance(parsed, list) and all(
        isinstance(message, dict) and "role" in message for message in parsed
    )


def type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )
