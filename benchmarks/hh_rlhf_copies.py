"""Real pairs at any scale: the hh-rlhf test split repeated, each copy made distinct."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

HH_RLHF = (
    Path(__file__).resolve().parent.parent.parent
    / "shared"
    / "data"
    / ("hh-rlhf-harmless-base/test.jsonl.gz")
)


def hh_rlhf_copies(n: int) -> Iterator[dict[str, str]]:
    """n rows in the hh-rlhf shape; a tagged first turn keeps every copy a distinct pair."""
    with gzip.open(HH_RLHF, "rt") as handle:
        base = [json.loads(line) for line in handle]
    for i in range(n):
        row = base[i % len(base)]
        tag = f"\n\nHuman: [copy {i}]"
        yield {
            "chosen": tag + row["chosen"],
            "rejected": tag + row["rejected"],
            "external_id": f"hh-{i}",
        }
