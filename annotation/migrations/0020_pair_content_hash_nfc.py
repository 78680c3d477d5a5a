"""Pairs imported before the content hash read texts in Unicode NFC form get the hash the
import computes now, so re-importing their file (a retried upload, an incremental file that
repeats earlier rows) finds them instead of creating them again.

Only a pair holding a text that is not in NFC form can have a stale hash (for NFC text, ASCII
included, the hash is unchanged), and the stored conversation (system turns included),
responses and a K-wise item's responses are exactly what the import hashed. PostgreSQL finds
those pairs itself (IS NOT NFC NORMALIZED), one window of ids per query, so a table of tens of
millions of rows is read once in bounded memory; elsewhere (SQLite, small) every pair is read
in chunks. Each chunk is its own transaction: a rerun, or a run stopped midway and started
again, skips what is done.

Where the campaign already holds a pair under the new hash (an NFC copy imported since, or
an earlier pair of the same text), the pair keeps its old hash and stays the separate pair
it already is: of the pairs that would share a hash, the one holding it keeps it, else the
first imported (lowest id) takes it. Going back changes nothing.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any

from django.db import migrations, transaction
from django.db.models import BooleanField, Max, Min
from django.db.models.expressions import RawSQL

from annotation.importers.records import content_hash, kwise_content_hash

_WINDOW = 50_000  # ids one PostgreSQL query looks through
_CHUNK = 500  # pairs read (with their texts) and written at a time

_NOT_NFC = (
    "(conversation::text IS NOT NFC NORMALIZED OR response_a IS NOT NFC NORMALIZED"
    " OR response_b IS NOT NFC NORMALIZED"
    " OR (responses IS NOT NULL AND responses::text IS NOT NFC NORMALIZED))"
)
_FIELDS = (
    "id",
    "campaign_id",
    "content_hash",
    "conversation",
    "response_a",
    "response_b",
    "responses",
)


def _is_nfc(text: str) -> bool:
    return text.isascii() or unicodedata.is_normalized("NFC", text)


def _new_hash(row: tuple[Any, ...]) -> str | None:
    """The hash the import computes now; None where the row's texts are all in NFC form (its
    hash cannot have changed) or it cannot be an imported row."""
    _, _, _, conversation, response_a, response_b, responses = row
    try:
        texts = [message["content"] for message in conversation]
        texts += [response_a, response_b]
        if responses is not None:
            texts += [response["content"] for response in responses]
        if all(_is_nfc(text) for text in texts):
            return None
        if responses is not None:
            return kwise_content_hash(conversation, responses)
        return content_hash(conversation, response_a, response_b)
    except (KeyError, TypeError, UnicodeEncodeError):
        return None


def _filters_in_sql(connection: Any) -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        # IS NORMALIZED is refused on a database whose encoding is not UTF8.
        cursor.execute("SHOW server_encoding")
        return cursor.fetchone()[0] == "UTF8"


def _chunks(pair_model: Any, connection: Any, *, in_sql: bool) -> Iterator[list[tuple[Any, ...]]]:
    """The pairs to look at, in id order, _CHUNK at a time (with their texts)."""
    pairs = pair_model.objects.using(connection.alias)
    if not in_sql:
        last = 0
        while chunk := list(
            pairs.filter(pk__gt=last).order_by("pk").values_list(*_FIELDS)[:_CHUNK]
        ):
            yield chunk
            last = chunk[-1][0]
        return
    not_nfc = RawSQL(_NOT_NFC, (), output_field=BooleanField())  # noqa: S611 - a constant
    span = pairs.aggregate(low=Min("pk"), high=Max("pk"))
    if span["low"] is None:
        return
    # A window of ids a query, a range of the primary key: each query's work is bounded
    # whatever plan PostgreSQL picks, and the table is read once in all.
    for low in range(span["low"], span["high"] + 1, _WINDOW):
        window = pairs.filter(not_nfc, pk__gte=low, pk__lt=low + _WINDOW)
        ids = list(window.order_by("pk").values_list("pk", flat=True))
        for start in range(0, len(ids), _CHUNK):
            part = ids[start : start + _CHUNK]
            yield list(pairs.filter(pk__in=part).order_by("pk").values_list(*_FIELDS))


def pairs_rehash(pair_model: Any, connection: Any, *, in_sql: bool) -> tuple[int, int]:
    """Give each pair with a text not in NFC form the import's current hash; returns (pairs
    rehashed, pairs left with their old hash because their campaign holds the new one)."""
    rehashed = kept = 0
    pairs = pair_model.objects.using(connection.alias)
    for chunk in _chunks(pair_model, connection, in_sql=in_sql):
        wanted = {}
        for row in chunk:
            new = _new_hash(row)
            if new is not None and new != row[2]:
                wanted[row[0]] = (row[1], new)
        if not wanted:
            continue
        with transaction.atomic(using=connection.alias):
            taken = set(
                pairs.filter(
                    campaign_id__in={campaign for campaign, _ in wanted.values()},
                    content_hash__in={new for _, new in wanted.values()},
                ).values_list("campaign_id", "content_hash")
            )
            changed = []
            for pk, key in wanted.items():  # in id order: the first imported takes a hash
                if key in taken:
                    kept += 1
                    continue
                taken.add(key)
                changed.append(pair_model(pk=pk, content_hash=key[1]))
            pairs.bulk_update(changed, ["content_hash"])
        rehashed += len(changed)
    return rehashed, kept


def rehash_non_nfc_pairs(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    pair_model = apps.get_model("annotation", "Pair")
    pairs_rehash(pair_model, connection, in_sql=_filters_in_sql(connection))


class Migration(migrations.Migration):
    # Each chunk commits on its own (see the module's docstring).
    atomic = False

    dependencies = [
        ("annotation", "0019_importjob_made_gold_count"),
    ]

    operations = [
        migrations.RunPython(rehash_non_nfc_pairs, migrations.RunPython.noop, elidable=True),
    ]
