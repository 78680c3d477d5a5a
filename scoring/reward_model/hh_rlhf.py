"""Reading Anthropic hh-rlhf style transcripts into :class:`PreferenceExample` objects.

The transcripts are parsed by the import parser (`annotation.importers`, pure Python), so the
trainer and the app read hh-rlhf the same way: the shared turns become the conversation and
the final assistant turns the chosen and rejected responses.
"""

from __future__ import annotations

import os
from itertools import islice

from annotation.importers import ImportLimits, PairRecord, iter_pair_records
from annotation.importers.rows import RowError, record_from_row

from .examples import PreferenceExample


def _example(record: PairRecord, category: str | None) -> PreferenceExample:
    return PreferenceExample(
        conversation=[dict(turn) for turn in record.conversation],
        chosen=record.response_a,
        rejected=record.response_b,
        category=category,
    )


def parse_hh_rlhf_pair(
    chosen: str, rejected: str, *, category: str | None = None
) -> PreferenceExample:
    try:
        record = record_from_row(
            {"chosen": chosen, "rejected": rejected}, line=1, limits=ImportLimits()
        )
    except RowError as error:
        raise ValueError(str(error)) from error
    return _example(record, category)


def load_hh_rlhf(
    path: str | os.PathLike[str], *, limit: int | None = None, category: str | None = None
) -> list[PreferenceExample]:
    """Read a (optionally gzipped) hh-rlhf JSONL file of ``{"chosen", "rejected"}`` records."""
    records = iter_pair_records(os.fspath(path))
    return [_example(record, category) for record in islice(records, limit)]
