"""An export re-imports into a new campaign: its main file (chosen/rejected) and its ties file
(A/B message lists, a tie as a tie, an unresolved pair without a label); its outcomes file
("both bad"/"both good") is refused with a 400 that names it and says what to import instead.

Labels go through the engine (assignment_next, label_submit: consensus and escalation run),
the export through its job (export_create, export_run), the import through pairs_import and
the upload API."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.importers import ImportFormatError, parse_all
from annotation.models import Outcome, Pair
from annotation.services.assignments import assignment_next
from annotation.services.imports import pairs_import
from annotation.services.labels import LabelInput, label_submit
from scoring.datasets.export import ExportFilters, export_create, export_file, export_run
from scoring.models import ExportSnapshot
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory, UserFactory

pytestmark = pytest.mark.django_db

TOPICS = ("volcanoes", "tidal pools", "sourdough starters", "glacier caves", "jazz harmony")


def _pair(campaign, number: int) -> Pair:
    """A pair whose texts share no word 5-gram with another's (the export deduplicates)."""
    topic = TOPICS[number]
    return PairFactory(
        campaign=campaign,
        conversation=[
            {"role": "system", "content": f"Answer briefly; the subject today is {topic}."},
            {"role": "user", "content": f"Tell me one surprising fact about {topic}, please."},
        ],
        response_a=f"Here is something odd about {topic}: it surprises people #{number}a.",
        response_b=f"Few know this about {topic}, yet it is true #{number}b.",
    )


def _judged(campaign, number: int, answers: list[int | str]) -> Pair:
    """A fresh pair (the only open one) labelled through the engine: each answer a canonical
    preference or an outcome ("both_bad", "both_good")."""
    pair = _pair(campaign, number)
    for answer in answers:
        assignment = assignment_next(campaign=campaign, annotator=UserFactory())
        assert assignment is not None and assignment.pair_id == pair.pk
        if isinstance(answer, str):
            data = LabelInput(preference=0, outcome=answer)
        else:
            data = LabelInput(preference=-answer if assignment.swapped else answer)
        label_submit(assignment=assignment, data=data)
    pair.refresh_from_db()
    return pair


@pytest.fixture
def exported(db, settings, tmp_path, request):
    """A campaign with a chosen pair (B better), a tie, an unresolved pair and a both-bad and a
    both-good pair, exported (ties separate, unresolved pairs included) in the parametrised
    format; returns the pairs and the snapshot's files by role."""
    settings.ARBITER = {**settings.ARBITER, "EXPORT_DIR": tmp_path / "exports"}
    campaign = CampaignFactory()
    pairs = {
        "chosen": _judged(campaign, 0, [-2, -1, -2]),
        "tie": _judged(campaign, 1, [0, 0, 0]),
        "unresolved": _judged(campaign, 2, [2, -2, 0]),
        "both_bad": _judged(campaign, 3, ["both_bad"] * 3),
        "both_good": _judged(campaign, 4, ["both_good"] * 3),
    }
    assert pairs["chosen"].provenance == Pair.Provenance.UNANIMOUS
    assert (pairs["tie"].consensus_preference, pairs["tie"].provenance) == (0, "unanimous")
    assert pairs["unresolved"].provenance == Pair.Provenance.UNRESOLVED
    assert pairs["both_bad"].consensus_outcome == Outcome.BOTH_BAD
    assert pairs["both_good"].consensus_outcome == Outcome.BOTH_GOOD
    snapshot = export_create(
        campaign=campaign,
        file_format=request.param,
        filters=ExportFilters(ties="separate", provenance=("unanimous", "majority", "unresolved")),
        enqueue=False,
    )
    export_run(job_id=snapshot.job_id)
    snapshot = ExportSnapshot.objects.get(pk=snapshot.pk)
    files = {
        role: export_file(snapshot=snapshot, role=role) for role in ("main", "ties", "outcomes")
    }
    assert all(path is not None for path in files.values()), files
    return pairs, files


both_formats = pytest.mark.parametrize("exported", ["jsonl", "parquet"], indirect=True)


def _only_pairs(campaign) -> list[Pair]:
    return list(Pair.objects.filter(campaign=campaign).order_by("pk"))


@both_formats
def test_the_main_file_re_imports_as_chosen_rejected_pairs(exported):
    pairs, files = exported
    fresh = CampaignFactory()
    result = pairs_import(campaign=fresh, path=files["main"])
    assert (result.rows_read, result.created) == (1, 1)
    (pair,) = _only_pairs(fresh)
    original = pairs["chosen"]
    # chosen (B) becomes response A, with the source label "A much better" (the consensus
    # was -2, B much better).
    assert pair.conversation == original.conversation
    assert (pair.response_a, pair.response_b) == (original.response_b, original.response_a)
    assert pair.silver_preference == 2


@pytest.mark.smoke
@both_formats
def test_the_ties_file_re_imports_a_tie_as_a_tie_and_an_unresolved_pair_unlabelled(exported):
    pairs, files = exported
    fresh = CampaignFactory()
    result = pairs_import(campaign=fresh, path=files["ties"])
    assert (result.rows_read, result.created) == (2, 2)
    by_hash = {pair.content_hash: pair for pair in _only_pairs(fresh)}
    for name, silver in (("tie", 0), ("unresolved", None)):
        original = pairs[name]
        # The ties file keeps A and B as imported: the same pair, the same identity.
        pair = by_hash[original.content_hash]
        assert pair.conversation == original.conversation
        assert (pair.response_a, pair.response_b) == (original.response_a, original.response_b)
        assert pair.silver_preference == silver
    # Imported again, the file only repeats them.
    again = pairs_import(campaign=fresh, path=files["ties"])
    assert (again.created, again.duplicates) == (0, 2)


@pytest.mark.smoke
@both_formats
def test_the_outcomes_file_is_refused_naming_it_and_what_to_import_instead(exported):
    _pairs, files = exported
    fresh = CampaignFactory()
    with pytest.raises(ImportFormatError) as refused:
        pairs_import(campaign=fresh, path=files["outcomes"])
    assert refused.value.line == 1
    message = str(refused.value)
    assert "outcomes file" in message and '"both bad"' in message
    assert "main file" in message and "ties file" in message
    assert not Pair.objects.filter(campaign=fresh).exists()


@pytest.mark.parametrize("exported", ["jsonl"], indirect=True)
def test_uploading_the_outcomes_file_answers_400_with_the_reason(exported, admin_user):
    _pairs, files = exported
    fresh = CampaignFactory()
    outcomes: Path = files["outcomes"]
    upload = SimpleUploadedFile(outcomes.name, outcomes.read_bytes())
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{fresh.pk}/imports", {"file": upload}, format="multipart"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["line"] == 1 and "outcomes file" in body["detail"]
    assert not Pair.objects.filter(campaign=fresh).exists()
    # Its ties file, uploaded the same way, is taken.
    ties: Path = files["ties"]
    upload = SimpleUploadedFile(ties.name, ties.read_bytes())
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{fresh.pk}/imports", {"file": upload}, format="multipart"
    )
    assert response.status_code == 201 and response.json()["created"] == 2


@pytest.mark.parametrize("exported", ["jsonl"], indirect=True)
def test_a_gold_import_of_the_ties_file_is_refused_for_want_of_a_chosen_side(exported):
    _pairs, files = exported
    fresh = CampaignFactory()
    with pytest.raises(ImportFormatError, match="a gold import needs a chosen/rejected"):
        pairs_import(campaign=fresh, path=files["ties"], as_gold=True)
    assert not Pair.objects.filter(campaign=fresh).exists()


# --- The row shape alone (no database) ---------------------------------------------------

SHARED = [{"role": "user", "content": "Which is better?"}]


def _row(**fields) -> bytes:
    row = {
        "response_a": [*SHARED, {"role": "assistant", "content": "first"}],
        "response_b": [*SHARED, {"role": "assistant", "content": "second"}],
        **fields,
    }
    return (json.dumps(row) + "\n").encode()


def _parse(payload: bytes):
    return parse_all(io.BytesIO(payload), filename="rows.jsonl")


@pytest.mark.parametrize(
    ("fields", "silver"),
    [({}, None), ({"preference": 0}, 0), ({"preference": -2}, -2), ({"preferred": "tie"}, 0)],
)
def test_a_b_message_lists_become_a_pair_with_their_label(fields, silver):
    (record,) = _parse(_row(**fields))
    assert record.conversation == tuple(SHARED)
    assert (record.response_a, record.response_b) == ("first", "second")
    assert record.silver_preference == silver
    assert record.raw_format == "ab_messages"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"preference": 3}, "preference must be an integer from -2 to 2"),
        ({"preference": True}, "preference must be an integer from -2 to 2"),
        ({"preference": 0, "preferred": "tie"}, "give either preference or"),
        ({"outcome": "both_good"}, 'consensus "both good"'),
        (
            {
                "response_b": [
                    {"role": "user", "content": "Other?"},
                    {"role": "assistant", "content": "x"},
                ]
            },
            "response_a and response_b must share every turn but one final assistant turn",
        ),
    ],
)
def test_a_b_message_lists_that_cannot_be_a_pair_say_why(fields, reason):
    with pytest.raises(ImportFormatError, match=reason):
        _parse(_row(**fields))
