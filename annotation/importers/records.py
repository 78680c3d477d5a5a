"""The values the import parser produces: records, limits and errors."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from annotation.importers._json import dumps_sorted
from core.errors import BadRequest

ATTRIBUTE_NAMES = (
    "task_category",
    "objectivity",
    "controversiality",
    "desired_attributes",
    "annotation_guideline",
)
ROLES = frozenset({"system", "user", "assistant"})
RawFormat = Literal[
    "native", "hf_messages", "ab_messages", "hh_rlhf", "native_kwise", "ultrafeedback"
]

GiB = 1024**3
# A K-wise item holds this many responses (annotation.models repeats the bounds).
MIN_RESPONSES = 2
MAX_RESPONSES = 9


@dataclass(frozen=True, slots=True)
class ImportLimits:
    """Caps checked while streaming, before a file is read in full.

    max_row_bytes bounds one JSONL line, one JSON array item or one CSV record, so a file
    without newlines cannot make the parser hold gigabytes in memory.
    """

    max_bytes: int = 2 * GiB
    max_decompressed_bytes: int = 8 * GiB
    max_rows: int = 20_000_000
    max_field_chars: int = 200_000
    max_row_bytes: int = 16 * 1024 * 1024
    # Wall-clock seconds from opening the file; None: no limit (a command-line import).
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError("ImportLimits.max_seconds must be positive")
        for name in (
            "max_bytes",
            "max_decompressed_bytes",
            "max_rows",
            "max_field_chars",
            "max_row_bytes",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ImportLimits.{name} must be a positive integer")


class ImportFormatError(BadRequest, ValueError):
    """A file or one of its rows cannot be imported.

    `line` is where the problem is (None when it concerns the whole file); `unit` says what
    the number counts: "line" for JSONL and CSV, "item" for a JSON array, "row" for Parquet.
    """

    code = "import_format_error"

    def __init__(self, line: int | None, reason: str, *, unit: str = "line") -> None:
        self.line = line
        self.reason = reason
        self.unit = unit
        super().__init__(reason if line is None else f"{unit} {line}: {reason}")


@dataclass(frozen=True, slots=True)
class PairRecord:
    """One pair in canonical orientation, validated and ready to insert.

    silver_preference is the source's own, unverified label on our -2..2 scale
    (positive = A better). conversation is a tuple of {"role", "content"} dicts ending with a
    user turn; treat them, and attributes, as read-only.

    silver_fits_scale: the label's strength is a detail of a chosen/rejected row (its
    ``preference_strength``, as an export writes it), so a campaign whose scale has no such
    strength takes the strongest it has in that direction; a label given outright
    (silver_preference, preference) stays as given.
    """

    line: int
    conversation: tuple[dict[str, str], ...]
    response_a: str
    response_b: str
    source: str | None
    external_id: str | None
    attributes: dict[str, Any]
    silver_preference: int | None
    content_hash: str
    raw_format: RawFormat
    # K-wise items only: every response as {"content", "model"} (response_a and response_b
    # are the first two), and the source's own ranking, groups of indices, best first.
    responses: tuple[dict[str, str], ...] | None = None
    silver_ranking: tuple[tuple[int, ...], ...] | None = None
    silver_fits_scale: bool = False


def nfc(text: str) -> str:
    """``text`` in Unicode NFC form: what a pair's identity is computed from (the stored text
    stays as imported). The same words with precomposed or decomposed accents ("é" or
    "e" + U+0301) are the same pair; text already in NFC, ASCII included, is unchanged."""
    return unicodedata.normalize("NFC", text)


def canonical_messages(conversation: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    return [{"content": nfc(m["content"]), "role": m["role"]} for m in conversation]


def all_nfc(conversation: Sequence[Mapping[str, str]], *texts: str) -> bool:
    """Whether the turns and texts are all in NFC form already (almost every file): the
    import's hot path then hashes them as they are, without copying each message."""
    is_normalized = unicodedata.is_normalized
    # str.isascii reads a flag of the string (O(1)); is_normalized scans it.
    for message in conversation:
        content = message["content"]
        if not (content.isascii() or is_normalized("NFC", content)):
            return False
    for text in texts:
        if not (text.isascii() or is_normalized("NFC", text)):
            return False
    return True


def canonical_json(
    conversation: Sequence[Mapping[str, str]], response_a: str, response_b: str
) -> bytes:
    """The bytes content_hash digests.

    Equal to json.dumps({"conversation": [{"content", "role"}...], "response_a", "response_b"},
    sort_keys=True, separators=(",", ":"), ensure_ascii=False) encoded as UTF-8, with every
    text in NFC form, so any language can recompute it. Message keys other than role and
    content do not count.
    """
    return dumps_sorted(
        {
            "conversation": canonical_messages(conversation),
            "response_a": nfc(response_a),
            "response_b": nfc(response_b),
        }
    )


def content_hash(
    conversation: Sequence[Mapping[str, str]], response_a: str, response_b: str
) -> str:
    """sha256 hex of canonical_json: the identity used to deduplicate pairs.

    Orientation counts: the same two responses swapped give a different hash.
    """
    return hashlib.sha256(canonical_json(conversation, response_a, response_b)).hexdigest()


def kwise_content_hash(
    conversation: Sequence[Mapping[str, str]], responses: Sequence[Mapping[str, str]]
) -> str:
    """sha256 hex of a K-wise item's identity: its conversation and every response's text
    ({"content", ...} items), in order, each text in NFC form as in canonical_json. What
    row_fields.kwise_record digests; migration 0020 recomputes stored items' hashes with it."""
    payload = {
        "conversation": canonical_messages(conversation),
        "responses": [nfc(response["content"]) for response in responses],
    }
    return hashlib.sha256(dumps_sorted(payload)).hexdigest()
