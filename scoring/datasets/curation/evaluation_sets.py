"""Evaluation sets: reading prompts from an uploaded file (JSONL, JSON, Parquet, gzipped or
not) and storing them as ``EvaluationPrompt`` rows."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from django.db import transaction

from annotation.models import Campaign
from core.text import encodes_as_utf8
from scoring.datasets.curation.consistency import CurationError
from scoring.models import EvaluationPrompt

MAX_EVALUATION_SET_BYTES = 200 * 1024**2
# What a gzipped evaluation set may decompress to (RewardBench's prompts are a few MB).
MAX_EVALUATION_SET_DECOMPRESSED_BYTES = 32 * 1024**2
_NOT_UNICODE = "is not valid Unicode (it holds a lone surrogate such as \\ud800)"


def _prompt_from_record(record: Any) -> str | None:
    if isinstance(record, str):
        return record
    if not isinstance(record, Mapping):
        return None
    for key in ("prompt", "text", "question", "instruction", "input"):
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return value
    # Message lists: their user turns (a "prompt" list too, as many Hugging Face sets store it).
    for key in ("prompt", "conversation", "messages", "chosen"):
        turns = record.get(key)
        if isinstance(turns, list):
            users = [
                str(turn.get("content", ""))
                for turn in turns
                if isinstance(turn, Mapping) and turn.get("role") == "user"
            ]
            if users:
                return "\n".join(users)
    return None


def evaluation_prompts_from_file(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return evaluation_prompts_read(handle, filename=path.name)
    except OSError as error:
        raise CurationError(f"cannot read evaluation set {path.name}: {error}") from error


def evaluation_prompts_read(handle: BinaryIO, *, filename: str) -> list[str]:
    """Prompts from JSONL / JSON / Parquet (a prompt, text or question field, or the user turns
    of a message list) or plain text (one prompt a line), told by the file name; ``.gz`` is
    decompressed. Evaluation sets are small (RewardBench: ~3,000 prompts), so it reads whole."""
    name = filename.lower()
    try:
        raw = handle.read(MAX_EVALUATION_SET_BYTES + 1)
        if len(raw) > MAX_EVALUATION_SET_BYTES:
            raise CurationError(f"{filename} is larger than {MAX_EVALUATION_SET_BYTES} bytes")
        if name.endswith(".gz"):
            # Decompressed in bounded steps: a small .gz may claim or hold gigabytes.
            limit = MAX_EVALUATION_SET_DECOMPRESSED_BYTES
            raw = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(limit + 1)
            if len(raw) > limit:
                raise CurationError(f"{filename} decompresses to more than {limit:,} bytes")
            name = name.removesuffix(".gz")
        if name.endswith(".parquet"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            records: Iterable[Any] = pq.read_table(pa.BufferReader(raw)).to_pylist()
        else:
            content = raw.decode("utf-8")
            if name.endswith(".jsonl"):
                records = [json.loads(line) for line in content.splitlines() if line.strip()]
            elif name.endswith(".json"):
                data = json.loads(content)
                if isinstance(data, dict):
                    data = data.get("data", data.get("prompts", []))
                records = data if isinstance(data, list) else []
            else:
                records = [line for line in content.splitlines() if line.strip()]
    except CurationError:
        raise
    except RecursionError:
        raise CurationError(f"cannot read evaluation set {filename}: nested too deeply") from None
    except (OSError, ValueError, EOFError, pa_errors()) as error:
        raise CurationError(f"cannot read evaluation set {filename}: {error}") from error
    prompts = [prompt for prompt in map(_prompt_from_record, records) if prompt]
    if not prompts:
        raise CurationError(f"no prompts found in {filename}")
    return prompts


def pa_errors() -> type[Exception]:
    import pyarrow as pa

    arrow_errors: type[Exception] = pa.ArrowException
    return arrow_errors


def evaluation_set_upload(*, campaign: Campaign, set_name: str, prompts: Iterable[str]) -> int:
    """Replace the campaign's evaluation set of that name; returns how many prompts it holds."""
    set_name = set_name.strip()
    if not set_name:
        raise CurationError("an evaluation set needs a name")
    # Refused here: the database would answer a DataError (PostgreSQL text holds no NUL).
    longest = EvaluationPrompt._meta.get_field("set_name").max_length or 0
    if len(set_name) > longest:
        raise CurationError(f"an evaluation set's name is at most {longest} characters")
    if "\x00" in set_name:
        raise CurationError("an evaluation set's name may not contain NUL characters")
    if not encodes_as_utf8(set_name):
        raise CurationError(f"an evaluation set's name {_NOT_UNICODE}")
    rows = [
        EvaluationPrompt(campaign=campaign, set_name=set_name, text=text)
        for text in prompts
        if text and text.strip()
    ]
    for number, row in enumerate(rows, 1):
        if "\x00" in row.text:
            raise CurationError(f"prompt {number} of {set_name!r} contains a NUL character")
        if not encodes_as_utf8(row.text):
            raise CurationError(f"prompt {number} of {set_name!r} {_NOT_UNICODE}")
    with transaction.atomic():
        EvaluationPrompt.objects.filter(campaign=campaign, set_name=set_name).delete()
        EvaluationPrompt.objects.bulk_create(rows, batch_size=2000)
    return len(rows)
