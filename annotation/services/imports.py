"""Importing pairs into a campaign: all or nothing, deduplicated on content hash.

Parsing lives in `annotation.importers` (pure Python, streaming, with line numbers); this
module writes what it yields. The whole file goes in one transaction: a bad row raises
ImportFormatError naming its line and nothing is kept. On PostgreSQL rows travel by COPY,
a batch at a time, after one lookup drops the pairs already there (in the campaign or
earlier in the file); elsewhere, batched bulk_create with ignore_conflicts does the same.

A gold import (``as_gold``) makes the pairs it names gold, new or already in the campaign:
an existing pair becomes gold with the file's answer by the rules of making a pair gold
(``pair_make_gold``; the file is refused, naming the line, where that would be refused, and
where the pair is already gold with another answer). A pair annotators are judging right now
(leased, or locked by a label being submitted) is left as it is and counted in ``busy_gold``:
importing the file again once it is labelled makes it gold, by the same rules.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone
from psycopg.copy import QueuedLibpqWriter

try:
    import orjson
except ImportError:  # pragma: no cover - the standard library is the slow fallback
    orjson = None  # type: ignore[assignment]  # a module or None: the checks below tell

from annotation.attribute_schema import (
    AttributeSchemaError,
    attribute_schema_problem,
    parse_attribute_schema,
)
from annotation.importers import ImportFormatError, ImportLimits, PairRecord, iter_pair_records
from annotation.models import Assignment, Campaign, ItemKind, Pair, Round
from annotation.selectors import campaign_pair_counts_forget_on_commit
from annotation.services.pair_state import GoldRefusal, pair_gold_refusal, pair_make_gold

_BATCH = 10_000
# Characters of text a batch holds at most (about 32 MB of ASCII): long rows make smaller batches.
_BATCH_CHARS = 32 * 1024 * 1024
_COLUMNS = (
    "campaign_id",
    "round_id",
    "conversation",
    "response_a",
    "response_b",
    "responses",
    "silver_ranking",
    "source",
    "external_id",
    "content_hash",
    "task_category",
    "objectivity",
    "controversiality",
    "desired_attributes",
    "annotation_guideline",
    "silver_preference",
    "is_gold",
    "gold_preference",
    "status",
    "priority",
    "priority_reason",
    "slots_taken",
    "slot_cap",
    "labels_count",
    "consensus_preference",
    "provenance",
    "disagreement",
    "curation",
    "created_at",
)

ProgressCallback = Callable[[int], None]
_IMPORT_LOCK = 7301  # advisory-lock namespace for imports (the second key is the campaign)
# How often an import waiting for the rounds lock asks again and says it is alive (``on_wait``).
ROUNDS_LOCK_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class ImportResult:
    """``rows_read`` = ``created`` + ``made_gold`` + ``duplicates`` + ``busy_gold``: a gold
    import's rows that made a pair already in the campaign gold count in ``made_gold``, those
    naming a pair being judged right now (left as it is, not gold) in ``busy_gold``; a row
    that repeats a pair (one already gold with the same answer included) is a duplicate."""

    rows_read: int
    created: int
    duplicates: int
    made_gold: int = 0
    busy_gold: int = 0


def import_limits() -> ImportLimits:
    config = settings.ARBITER
    return ImportLimits(
        max_bytes=config["IMPORT_MAX_BYTES"],
        max_decompressed_bytes=config["IMPORT_MAX_DECOMPRESSED_BYTES"],
        max_rows=config["IMPORT_MAX_ROWS"],
    )


def round_current(*, campaign: Campaign) -> Round:
    """The campaign's open round, opening round 1 (or the next) when none is open."""
    current = Round.objects.filter(campaign=campaign, status=Round.Status.OPEN).first()
    if current is not None:
        return current
    last = Round.objects.filter(campaign=campaign).order_by("-number").first()
    return Round.objects.create(campaign=campaign, number=(last.number + 1) if last else 1)


def _attribute_schema_of(campaign: Campaign) -> dict[str, frozenset[str]]:
    """The campaign's attribute schema; none where the stored one does not parse (saved
    before it was checked: the settings refuse it until it is fixed)."""
    try:
        return parse_attribute_schema(campaign.attribute_schema)
    except AttributeSchemaError:
        return {}


def _attribute(attributes: dict[str, Any], name: str) -> str:
    value = attributes.get(name)
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        # One item a line: an item may hold commas ("cites sources, with links"), and the
        # importer refuses items holding a line break, so the items can be told apart.
        return "\n".join(str(item) for item in value)
    return str(value)


def _conversation_json(conversation: tuple[Any, ...]) -> str:
    # COPY's text format takes the jsonb value as text (whitespace and key order do not
    # matter to jsonb); the hash step already refused what orjson cannot encode.
    if orjson is not None:
        return orjson.dumps(conversation).decode()
    return json.dumps(conversation)  # pragma: no cover - orjson is installed with the app


# Stays long: the row builder and its per-row closure, one tuple literal in _COLUMNS order that
# runs once per imported pair (the import's hot path).
def _row_builder(
    *,
    campaign: Campaign,
    round_id: int | None,
    as_gold: bool,
    now: Any,
    encode_conversation: Callable[[tuple[Any, ...]], Any],
) -> Callable[[PairRecord], tuple[Any, ...]]:
    """A function from record to row, in _COLUMNS order (K-wise items' responses and silver
    ranking are encoded as the conversation is).

    It runs once per pair: everything that is the same for the whole file is worked out
    here, once, and the row is built as a tuple literal.
    """
    campaign_id = campaign.pk
    slot_cap = campaign.annotators_per_pair
    row_round_id = None if as_gold else round_id
    status: str = (
        Pair.Status.COMPLETE
        if as_gold
        else (Pair.Status.QUEUED if round_id is not None else Pair.Status.POOLED)
    )
    status = str(status)
    provenance = str(Pair.Provenance.GOLD if as_gold else Pair.Provenance.NONE)
    ranking_campaign = campaign.item_kind == ItemKind.RANKING
    allowed = campaign.allowed_preferences
    schema = _attribute_schema_of(campaign)
    # A chosen/rejected row's strength (an export's "much better") on a scale without it
    # becomes the scale's strongest, "better": the direction is what the row says.
    strongest = max(allowed)

    # Stays long: one tuple literal, the _COLUMNS order written out once.
    def build(record: PairRecord) -> tuple[Any, ...]:
        if (record.responses is not None) != ranking_campaign:
            raise ImportFormatError(
                record.line,
                "a ranking campaign takes rows with responses (or completions), not A/B pairs"
                if ranking_campaign
                else "rows with several responses need a campaign whose items are rankings",
            )
        silver = record.silver_preference
        if record.silver_fits_scale and silver is not None and abs(silver) > strongest:
            silver = strongest if silver > 0 else -strongest
        gold = None
        if as_gold:
            if silver is None or silver == 0:
                raise ImportFormatError(
                    record.line,
                    "a gold import needs a chosen/rejected (or preferred) label on every row",
                )
            if silver not in allowed:
                raise ImportFormatError(record.line, _off_scale(silver, allowed))
            gold = silver
        attributes = record.attributes
        if attributes:
            task_category = _attribute(attributes, "task_category")
            objectivity = _attribute(attributes, "objectivity")
            controversiality = _attribute(attributes, "controversiality")
            desired_attributes = _attribute(attributes, "desired_attributes")
            annotation_guideline = _attribute(attributes, "annotation_guideline")
            if schema:
                problem = attribute_schema_problem(schema, attributes)
                if problem:
                    raise ImportFormatError(record.line, problem)
        else:
            task_category = objectivity = controversiality = ""
            desired_attributes = annotation_guideline = ""
        return (
            campaign_id,
            row_round_id,
            encode_conversation(record.conversation),
            record.response_a,
            record.response_b,
            None if record.responses is None else encode_conversation(record.responses),
            (
                None
                if record.silver_ranking is None
                else encode_conversation(tuple(list(group) for group in record.silver_ranking))
            ),
            record.source or "",
            record.external_id or "",
            record.content_hash,
            task_category,
            objectivity,
            controversiality,
            desired_attributes,
            annotation_guideline,
            silver,
            as_gold,
            gold,
            status,
            0.0,  # priority
            "",  # priority_reason
            0,  # slots_taken
            slot_cap,
            0,  # labels_count
            gold,  # consensus_preference
            provenance,
            None,  # disagreement
            "",  # curation
            now,  # created_at
        )

    return build


_T = TypeVar("_T")


def _batches(rows: Iterable[_T], chars: Callable[[_T], int]) -> Iterator[list[_T]]:
    """Batches of _BATCH rows, or fewer holding _BATCH_CHARS characters of text: a batch of
    long rows (documents, code, long conversations) would otherwise hold gigabytes, and the
    writers keep up to _BATCHES_AHEAD + 1 of them at once."""
    batch: list[_T] = []
    held = 0
    for row in rows:
        batch.append(row)
        held += chars(row)
        if len(batch) >= _BATCH or held >= _BATCH_CHARS:
            yield batch
            batch = []
            held = 0
    if batch:
        yield batch


_HASH_INDEX = _COLUMNS.index("content_hash")
_GOLD_INDEX = _COLUMNS.index("gold_preference")
_BATCHES_AHEAD = 2  # parsed batches waiting for the server: enough to keep it busy
_CONVERSATION_INDEX, _A_INDEX, _B_INDEX, _RESPONSES_INDEX = (
    _COLUMNS.index(name) for name in ("conversation", "response_a", "response_b", "responses")
)


def _row_chars(row: tuple[Any, ...]) -> int:
    """About the text a row holds: its conversation (encoded as JSON on PostgreSQL), its two
    responses and a K-wise item's responses."""
    size = len(row[_CONVERSATION_INDEX]) + len(row[_A_INDEX]) + len(row[_B_INDEX])
    responses = row[_RESPONSES_INDEX]
    return size if responses is None else size + len(responses)


def _numbered_row_chars(numbered: tuple[int, tuple[Any, ...]]) -> int:
    return _row_chars(numbered[1])


def _copy_fresh(raw: Any, statement: str, campaign_id: int, batch: list[tuple[Any, ...]]) -> int:
    """COPY the rows of one batch whose pair is not in the campaign yet (nor earlier in it).

    Rows copied by earlier batches are visible to this transaction, so one indexed lookup
    deduplicates against the campaign and the rest of the file alike. The hashes travel as one
    comma-separated string (they are hex), not as an array the client would quote item by item
    (that quoting took about 0.2 s of client CPU per 100,000 rows in a profile).
    """
    fresh: dict[str, tuple[Any, ...]] = {}
    for row in batch:
        fresh.setdefault(row[_HASH_INDEX], row)
    raw.execute(
        "SELECT content_hash FROM annotation_pair "
        "WHERE campaign_id = %s AND content_hash = ANY(string_to_array(%s, ','))",
        [campaign_id, ",".join(fresh)],
    )
    for (known,) in raw.fetchall():
        fresh.pop(known, None)
    if not fresh:
        return 0
    # The queued writer sends from a thread of its own, so formatting rows overlaps with
    # sending them; leaving the block waits for the server to ingest them all.
    with raw.copy(statement, writer=QueuedLibpqWriter(raw)) as copy:
        write_row = copy.write_row
        for row in fresh.values():
            write_row(row)
    return len(fresh)


_SWITCH_INTERVAL_S = 0.0005
_switch_lock = threading.Lock()
_switch_holders = 0
_switch_saved = 0.0


@contextmanager
def _prompt_thread_switches() -> Iterator[None]:
    """Let threads waiting for the GIL have it within half a millisecond, not five.

    While this thread parses (holding the GIL), the helper that talks to the server needs the
    GIL for a moment after each network wait; at Python's default interval of 5 ms it waits
    that long every time, and the server idles meanwhile (the import's wall time drops by
    about a tenth at 0.5 ms). The interval is process-wide: the first import in sets it,
    the last one out restores it.
    """
    global _switch_holders, _switch_saved
    with _switch_lock:
        if _switch_holders == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(_SWITCH_INTERVAL_S)
        _switch_holders += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_holders -= 1
            if _switch_holders == 0:
                sys.setswitchinterval(_switch_saved)


def _write_postgresql(
    batches: Iterable[list[tuple[Any, ...]]], on_batch: ProgressCallback, *, campaign_id: int
) -> int:
    """COPY each batch into the table, minus pairs already there; returns the rows created.

    Parsing (this thread) and the server's ingest (jsonb, six indexes) cost about the same,
    so they run side by side: a helper thread owns the connection from the advisory lock on
    and looks up and copies batch after batch, while this one parses the next ones, up to
    _BATCHES_AHEAD in waiting. The connection is never used by both threads: this one only
    reads the helper's results, and it reports progress (rows whose batch is in) through a
    callback that must not use the database. The caller holds the campaign's import lock
    (campaign_rounds_lock), so two imports cannot race past each other's lookups.
    Rows arrive with the conversation already encoded as JSON text.
    """
    columns = ", ".join(_COLUMNS)
    statement = f"COPY annotation_pair ({columns}) FROM STDIN"
    read = created = 0
    pending: deque[tuple[Future[int], int]] = deque()

    def settle_oldest() -> None:
        nonlocal created, read
        future, rows = pending.popleft()
        created += future.result()
        read += rows
        on_batch(read)

    with (
        connection.cursor() as cursor,
        ThreadPoolExecutor(max_workers=1) as sender,
        _prompt_thread_switches(),
    ):
        raw = cursor.cursor  # psycopg 3 cursor, for COPY
        try:
            for batch in batches:
                if len(pending) >= _BATCHES_AHEAD:
                    settle_oldest()
                future = sender.submit(_copy_fresh, raw, statement, campaign_id, batch)
                pending.append((future, len(batch)))
            while pending:
                settle_oldest()
        except BaseException:
            # A row failed to parse, or a batch failed on the server: drop the batches not
            # started and let the one in flight finish before the transaction rolls back.
            sender.shutdown(cancel_futures=True)
            raise
    return created


def _off_scale(answer: int, allowed: Sequence[int]) -> str:
    scale = ", ".join(str(value) for value in sorted(allowed, reverse=True))
    return f"the gold answer {answer} is not on this campaign's scale ({scale})"


def _gold_refusal(pair: Pair, answer: int, *, new_floor: int) -> str | None:
    """Why the pair, already in the campaign, cannot take the gold file's answer (the rules
    of ``pair_gold_refusal``, worded for the file), or None.
    A pair already gold keeps its answer: a file never silently overwrites one. Whether the
    pair is being judged is not a refusal: the caller skips such a pair."""
    if pair.is_gold:
        if pair.gold_preference == answer:
            return None
        if pair.pk > new_floor:
            return (
                f"this pair is on an earlier line of the file with another gold answer "
                f"({pair.gold_preference} there, {answer} here)"
            )
        return (
            f"pair {pair.pk} is already gold with the answer {pair.gold_preference}, not "
            f"{answer}; a gold import does not change a gold answer (POST "
            f"/api/pairs/{pair.pk}/gold does)"
        )
    where = f"pair {pair.pk}, already in the campaign,"
    refusal = pair_gold_refusal(pair=pair, preference=answer)
    if refusal is GoldRefusal.ESCALATED:
        return f"{where} is waiting for an expert; decide it before making it gold"
    if refusal is GoldRefusal.DISCARDED:
        return f"{where} was discarded as ambiguous and cannot become gold"
    if refusal is GoldRefusal.EXPERT_DECIDED_OTHERWISE:
        return (
            f"{where} was decided by an expert as {pair.consensus_preference}, not {answer}; "
            "their decision stands"
        )
    return None


_GOLD_FIELDS = (
    "pk",
    "content_hash",
    "status",
    "provenance",
    "is_gold",
    "gold_preference",
    "consensus_preference",
)


def _leased(pair_ids: Iterable[int]) -> set[int]:
    return set(
        Assignment.objects.filter(
            pair__in=list(pair_ids), status=Assignment.Status.ACTIVE
        ).values_list("pair_id", flat=True)
    )


@dataclass
class _GoldTally:
    """What a gold import's batches did so far; ``busy`` holds the pairs skipped as being
    judged, which stay skipped for the rest of the file (a later row naming one again is a
    duplicate), so that each is counted once and the job never says one was both."""

    made_gold: int = 0
    busy: set[int] = dataclasses.field(default_factory=set)


def _gold_batch(
    batch: list[tuple[int, tuple[Any, ...]]],
    *,
    campaign_id: int,
    new_floor: int,
    tally: _GoldTally,
) -> list[tuple[Any, ...]]:
    """Make the batch's pairs already in the campaign gold, skipping (in ``tally.busy``) those
    being judged right now; returns the rows still to create. Raises ImportFormatError at the
    first line (in file order) that cannot be applied. ``batch`` holds (line, row); pairs with
    an id above ``new_floor`` were created by earlier batches of this file (visible in its
    transaction)."""
    first: dict[str, tuple[int, tuple[Any, ...]]] = {}
    for line, row in batch:
        seen_line, seen = first.setdefault(row[_HASH_INDEX], (line, row))
        if seen[_GOLD_INDEX] != row[_GOLD_INDEX]:
            raise ImportFormatError(
                line,
                f"this pair is on line {seen_line} too, with another gold answer "
                f"({seen[_GOLD_INDEX]} there, {row[_GOLD_INDEX]} here)",
            )
    # A plain read first: it waits for no lock, and tells which pairs may change.
    named = list(
        Pair.objects.filter(campaign_id=campaign_id, content_hash__in=list(first)).only(
            *_GOLD_FIELDS
        )
    )
    if not named:
        return [row for _line, row in first.values()]
    open_ids = [pair.pk for pair in named if not pair.is_gold and pair.pk not in tally.busy]
    busy = _leased(open_ids)
    # Only the pairs that may become gold are locked (in id order, as pair_mark_gold locks its
    # one pair), so that nobody takes a slot on them or labels them between the checks and the
    # change. The locks last until the import commits: a leased pair is not locked, or its
    # annotator's label would wait for the whole file. skip_locked: a pair another transaction
    # holds (a label being submitted, a slot being taken) is being judged, skipped, and never
    # waited for.
    locked = {
        pair.pk: pair
        for pair in Pair.objects.select_for_update(skip_locked=True)
        .filter(pk__in=[pk for pk in open_ids if pk not in busy])
        .order_by("pk")
        .only(*_GOLD_FIELDS)
    }
    # A slot taken between the read and the lock shows now (that pair's lock is held anyway).
    busy |= _leased(locked)
    made = []
    for pair in sorted(named, key=lambda pair: first[pair.content_hash][0]):
        line, row = first.pop(pair.content_hash)
        if pair.pk in tally.busy:
            continue  # skipped on an earlier line of the file: this row repeats it
        # Under the lock where we hold it; a pair locked elsewhere is judged as last committed.
        current = locked.get(pair.pk, pair)
        answer = row[_GOLD_INDEX]
        refusal = _gold_refusal(current, answer, new_floor=new_floor)
        if refusal is not None:
            raise ImportFormatError(line, refusal)
        if current.is_gold:
            continue
        if current.pk in busy or current.pk not in locked:
            tally.busy.add(current.pk)
            continue
        made.append((current, answer))
    for pair, answer in made:
        pair_make_gold(pair=pair, preference=answer)
    tally.made_gold += len(made)
    return [row for _line, row in first.values()]


def _write_gold(
    batches: Iterable[list[tuple[int, tuple[Any, ...]]]],
    on_batch: ProgressCallback,
    *,
    campaign_id: int,
    postgresql: bool,
) -> tuple[int, int, int]:
    """A gold import's writer: each batch's pairs already in the campaign are made gold (or
    skipped while being judged), the others created; returns (created, made gold, skipped as
    being judged). One thread, batch after batch: the checks go through the ORM on the
    import's connection, which the pipelined COPY of ``_write_postgresql`` hands to a helper
    thread (gold files are seed sets, not pools)."""
    # Pairs created from here on (under the campaign's import lock) are this file's.
    new_floor = Pair.objects.aggregate(last=Max("pk"))["last"] or 0
    tally = _GoldTally()
    created = read = 0
    statement = f"COPY annotation_pair ({', '.join(_COLUMNS)}) FROM STDIN"
    for batch in batches:
        fresh = _gold_batch(batch, campaign_id=campaign_id, new_floor=new_floor, tally=tally)
        if fresh and postgresql:
            with connection.cursor() as cursor:
                created += _copy_fresh(cursor.cursor, statement, campaign_id, fresh)
        elif fresh:
            Pair.objects.bulk_create(
                [Pair(**dict(zip(_COLUMNS, row, strict=True))) for row in fresh]
            )
            created += len(fresh)
        read += len(batch)
        on_batch(read)
    if tally.made_gold:
        campaign_pair_counts_forget_on_commit(campaign_id=campaign_id)
    return created, tally.made_gold, len(tally.busy)


class CampaignRoundsBusy(Exception):  # noqa: N818 - a state, not a failure
    """The campaign's rounds lock is held (an import, a round closing) and the caller asked
    not to wait for it."""


def campaign_rounds_lock(
    campaign_id: int, *, wait: bool = True, on_wait: Callable[[], None] | None = None
) -> None:
    """Wait for the campaign's other imports (and round openings) to commit, and hold them
    off until this transaction does (PostgreSQL; elsewhere, e.g. SQLite, which writes one
    transaction at a time, nothing to do). ``wait=False``: raise CampaignRoundsBusy at once
    where the lock is held, rather than wait (a web request; an import holds it for hours).
    ``on_wait``: called every ``ROUNDS_LOCK_POLL_SECONDS`` while the lock is held elsewhere
    (an import job's heartbeat: the stale sweep fails a job silent for ten minutes, and the
    import ahead may run for hours).

    Taken before the open round is looked up: two imports that both found no open round, or
    an import and the loop opening the next round, would otherwise both open one, and the
    second would fail on its number.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        if wait and on_wait is None:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_IMPORT_LOCK, campaign_id])
            return
        while True:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [_IMPORT_LOCK, campaign_id])
            if cursor.fetchone()[0]:
                return
            if not wait or on_wait is None:  # here on_wait is set whenever wait is
                raise CampaignRoundsBusy
            on_wait()
            time.sleep(ROUNDS_LOCK_POLL_SECONDS)


def _write_generic(batches: Iterable[list[tuple[Any, ...]]], on_batch: ProgressCallback) -> int:
    before = Pair.objects.count()
    read = 0
    for batch in batches:
        Pair.objects.bulk_create(
            [Pair(**dict(zip(_COLUMNS, row, strict=True))) for row in batch],
            ignore_conflicts=True,
        )
        read += len(batch)
        on_batch(read)
    return Pair.objects.count() - before


def pairs_import(
    *,
    campaign: Campaign,
    path: str | Path,
    original_name: str | None = None,
    as_gold: bool = False,
    queue: bool = True,
    on_progress: ProgressCallback | None = None,
    max_seconds: float | None = None,
    wait_for_lock: bool = True,
    on_lock_wait: Callable[[], None] | None = None,
) -> ImportResult:
    """Import every pair of the file, or none. Raises ImportFormatError naming the line, or
    the whole file when reading it takes longer than `max_seconds`. A gold import leaves the
    pairs being judged right now as they are (counted in ``busy_gold``): not an error.
    ``wait_for_lock=False``: CampaignRoundsBusy, nothing read, where another import into the
    campaign (or a round change) is under way; ``on_lock_wait``: called now and then while
    waiting for it (``campaign_rounds_lock``'s ``on_wait``)."""
    limits = dataclasses.replace(import_limits(), max_seconds=max_seconds)
    path = Path(path)
    on_batch = on_progress or (lambda _rows: None)
    now = timezone.now()
    rows_read = 0
    postgresql = connection.vendor == "postgresql"
    with transaction.atomic():
        campaign_rounds_lock(campaign.pk, wait=wait_for_lock, on_wait=on_lock_wait)
        # Read again under the lock: a change of the overlap, item kind or scale holds it
        # until it commits (campaign_set_annotators_per_pair, campaign_update), and this import
        # may have waited for one since its caller read the campaign; its pairs must be built
        # and queued under the settings in force.
        campaign.refresh_from_db(fields=["annotators_per_pair", "item_kind", "scale"])
        round_id = round_current(campaign=campaign).pk if (queue and not as_gold) else None
        build_row = _row_builder(
            campaign=campaign,
            round_id=round_id,
            as_gold=as_gold,
            now=now,
            encode_conversation=_conversation_json if postgresql else list,
        )

        def records() -> Iterator[PairRecord]:
            nonlocal rows_read
            with path.open("rb") as handle:
                for record in iter_pair_records(
                    handle, filename=original_name or path.name, limits=limits
                ):
                    rows_read += 1
                    yield record

        made_gold = busy_gold = 0
        if as_gold:
            numbered = ((record.line, build_row(record)) for record in records())
            created, made_gold, busy_gold = _write_gold(
                _batches(numbered, _numbered_row_chars),
                on_batch,
                campaign_id=campaign.pk,
                postgresql=postgresql,
            )
        elif postgresql:
            rows = map(build_row, records())
            created = _write_postgresql(
                _batches(rows, _row_chars), on_batch, campaign_id=campaign.pk
            )
        else:
            created = _write_generic(_batches(map(build_row, records()), _row_chars), on_batch)
    return ImportResult(
        rows_read=rows_read,
        created=created,
        duplicates=rows_read - created - made_gold - busy_gold,
        made_gold=made_gold,
        busy_gold=busy_gold,
    )


def campaign_get_or_create(*, name: str, **fields: Any) -> Campaign:
    """The campaign called `name`, or a new one with `fields`, checked before it is saved.

    An invalid name or field raises ValidationError and stores nothing. To make a new campaign
    part of an import's all or nothing, call this and pairs_import in one transaction.
    Surrounding spaces are no part of a name, as in ``campaign_create`` (the page and the
    API): " Demo" finds "Demo" rather than creating a second campaign beside it.
    """
    name = name.strip()
    found = Campaign.objects.filter(name=name).first()
    if found is not None:
        return found
    if not name:
        raise ValidationError({"name": "a campaign needs a name"})
    Campaign(name=name, **fields).full_clean()
    # Another process may have created it since the look-up: get_or_create takes theirs.
    campaign, _created = Campaign.objects.get_or_create(name=name, defaults=fields)
    return campaign
