"""Reading Anthropic hh-rlhf style transcripts into :class:`PreferenceExample` objects.

An hh-rlhf record holds two full transcripts (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``) that
share every turn but the last assistant one. The shared part is found as the longest common
prefix cut back to an ``Assistant:`` marker, because some final responses themselves contain the
words "Human:" or "Assistant:" and a plain split on the last marker would misplace them.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

from .examples import PreferenceExample

_ASSISTANT_MARKER = "\n\nAssistant:"
_TURN_MARKER = re.compile(r"\n\n(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def parse_hh_transcript(transcript: str) -> list[dict[str, str]]:
    """Split a transcript into ``{"role", "content"}`` turns (Human → user)."""
    pieces = _TURN_MARKER.split(transcript)
    # pieces = [preamble, role, content, role, content, ...]
    return [
        {"role": _ROLES[role], "content": content.strip()}
        for role, content in zip(pieces[1::2], pieces[2::2], strict=True)
    ]


def parse_hh_rlhf_pair(
    chosen: str, rejected: str, *, category: str | None = None
) -> PreferenceExample:
    shared_length = len(os.path.commonprefix([chosen, rejected]))
    split_at = chosen.rfind(_ASSISTANT_MARKER, 0, shared_length + 1)
    if split_at < 0:
        raise ValueError("The transcripts share no turn before a final assistant response.")
    response_start = split_at + len(_ASSISTANT_MARKER)
    return PreferenceExample(
        conversation=parse_hh_transcript(chosen[:split_at]),
        chosen=chosen[response_start:].strip(),
        rejected=rejected[response_start:].strip(),
        category=category,
    )


def load_hh_rlhf(
    path: str | os.PathLike[str], *, limit: int | None = None, category: str | None = None
) -> list[PreferenceExample]:
    """Read a (optionally gzipped) hh-rlhf JSONL file of ``{"chosen", "rejected"}`` records."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    examples: list[PreferenceExample] = []
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if limit is not None and len(examples) >= limit:
                break
            if line.strip():
                record = json.loads(line)
                examples.append(
                    parse_hh_rlhf_pair(record["chosen"], record["rejected"], category=category)
                )
    return examples
