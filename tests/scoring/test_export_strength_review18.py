"""Review 18: an export's main file imports back with its preference strength.

The main file writes each chosen/rejected row's ``preference_strength`` (1 "better", 2 "much
better"); the importer reads it as the source label of the pair (chosen as A): 2 stays "A much
better" on a five-point campaign, and on a scale without it (binary, three-point) becomes that
scale's strongest, "A better", for a plain and a gold import alike. A label given outright
(``silver_preference``) is not fitted: off the scale, a gold import still refuses it.

Labels go through the engine, the export through its job, the import through pairs_import."""

from __future__ import annotations

import csv
import io
import json

import pytest

from annotation.importers import ImportFormatError, parse_all
from annotation.models import Pair
from annotation.services.assignments import assignment_next
from annotation.services.imports import pairs_import
from annotation.services.labels import LabelInput, label_submit
from scoring.datasets.export import ExportFilters, export_create, export_file, export_run
from scoring.models import ExportSnapshot
from tests.factories import CampaignFactory, PairFactory, UserFactory

pytestmark = pytest.mark.django_db

TOPICS = ("volcanoes", "tidal pools", "sourdough starters")


def _judged(campaign, number: int, preferences: list[int]) -> Pair:
    """A fresh pair (the only open one) labelled through the engine, canonical preferences;
    its texts share no word 5-gram with another's (the export deduplicates)."""
    topic = TOPICS[number]
    pair = PairFactory(
        campaign=campaign,
        conversation=[{"role": "user", "content": f"Tell me one surprising fact about {topic}."}],
        response_a=f"Here is something odd about {topic}: it surprises people #{number}a.",
        response_b=f"Few know this about {topic}, yet it is true #{number}b.",
    )
    for preference in preferences:
        assignment = assignment_next(campaign=campaign, annotator=UserFactory())
        assert assignment is not None and assignment.pair_id == pair.pk
        shown = -preference if assignment.swapped else preference
        label_submit(assignment=assignment, data=LabelInput(preference=shown))
    pair.refresh_from_db()
    return pair


@pytest.fixture
def main_file(settings, tmp_path, request):
    """A five-point campaign's export (the parametrised format): A much better, B much better
    and B better, each unanimous; returns the main file and the chosen texts' strengths."""
    settings.ARBITER = {**settings.ARBITER, "EXPORT_DIR": tmp_path / "exports"}
    campaign = CampaignFactory(scale="five_point")
    pairs = [
        _judged(campaign, 0, [2, 2, 2]),
        _judged(campaign, 1, [-2, -2, -1]),
        _judged(campaign, 2, [-1, -1, -1]),
    ]
    assert [pair.consensus_preference for pair in pairs] == [2, -2, -1]
    snapshot = export_create(
        campaign=campaign, file_format=request.param, filters=ExportFilters(), enqueue=False
    )
    export_run(job_id=snapshot.job_id)
    path = export_file(snapshot=ExportSnapshot.objects.get(pk=snapshot.pk))
    assert path is not None
    # Chosen becomes A on import: each pair is found again by its chosen response.
    chosen = {
        (pair.response_a if pair.consensus_preference > 0 else pair.response_b): abs(
            pair.consensus_preference
        )
        for pair in pairs
    }
    return path, chosen


both_formats = pytest.mark.parametrize("main_file", ["jsonl", "parquet"], indirect=True)


def _silver_by_chosen(campaign) -> dict[str, int | None]:
    return dict(
        Pair.objects.filter(campaign=campaign).values_list("response_a", "silver_preference")
    )


@both_formats
def test_a_five_point_campaign_keeps_much_better_as_much_better(main_file):
    path, chosen = main_file
    fresh = CampaignFactory(scale="five_point")
    assert pairs_import(campaign=fresh, path=path).created == 3
    assert _silver_by_chosen(fresh) == chosen  # {much better: 2, much better: 2, better: 1}
    assert sorted(chosen.values()) == [1, 2, 2]


@both_formats
def test_a_gold_import_on_five_points_keeps_the_strength_as_the_gold_answer(main_file):
    path, chosen = main_file
    fresh = CampaignFactory(scale="five_point")
    assert pairs_import(campaign=fresh, path=path, as_gold=True).created == 3
    gold = dict(Pair.objects.filter(campaign=fresh).values_list("response_a", "gold_preference"))
    assert gold == chosen


@pytest.mark.parametrize("main_file", ["jsonl"], indirect=True)
@pytest.mark.parametrize("scale", ["binary", "three_point"])
@pytest.mark.parametrize("as_gold", [False, True])
def test_a_scale_without_much_better_takes_better(main_file, scale, as_gold):
    path, chosen = main_file
    fresh = CampaignFactory(scale=scale)
    assert pairs_import(campaign=fresh, path=path, as_gold=as_gold).created == 3
    assert _silver_by_chosen(fresh) == dict.fromkeys(chosen, 1)
    if as_gold:
        gold = Pair.objects.filter(campaign=fresh).values_list("gold_preference", flat=True)
        assert list(gold) == [1, 1, 1]


def test_a_label_given_outright_off_the_scale_is_not_fitted(tmp_path):
    """Only a chosen/rejected row's strength is fitted; a native row's silver_preference 2
    is stored as given on a plain import (and refused by a gold one, as before)."""
    row = {"prompt": "Q", "response_a": "a", "response_b": "b", "silver_preference": 2}
    path = tmp_path / "native.jsonl"
    path.write_text(json.dumps(row) + "\n")
    binary = CampaignFactory(scale="binary")
    pairs_import(campaign=binary, path=path)
    assert Pair.objects.get(campaign=binary).silver_preference == 2
    with pytest.raises(ImportFormatError, match="not on this campaign's scale"):
        pairs_import(campaign=CampaignFactory(scale="binary"), path=path, as_gold=True)


# --- The row alone (no database) --------------------------------------------------------

SHARED = [{"role": "user", "content": "Which is better?"}]
CHOSEN = [*SHARED, {"role": "assistant", "content": "first"}]
REJECTED = [*SHARED, {"role": "assistant", "content": "second"}]


def _jsonl(**fields) -> bytes:
    return (json.dumps({"chosen": CHOSEN, "rejected": REJECTED, **fields}) + "\n").encode()


def _parse(payload: bytes, filename: str = "rows.jsonl"):
    return parse_all(io.BytesIO(payload), filename=filename)


@pytest.mark.smoke
@pytest.mark.parametrize(("fields", "silver"), [({}, 1), ({"preference_strength": None}, 1)])
def test_a_row_without_a_strength_is_chosen_better(fields, silver):
    (record,) = _parse(_jsonl(**fields))
    assert (record.silver_preference, record.silver_fits_scale) == (silver, True)


def _csv(strength: str) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["chosen", "rejected", "preference_strength"])
    writer.writerow([json.dumps(CHOSEN), json.dumps(REJECTED), strength])
    return text.getvalue().encode()


@pytest.mark.smoke
@pytest.mark.parametrize("strength", [1, 2])
def test_a_row_keeps_its_strength_in_jsonl_and_csv(strength):
    (record,) = _parse(_jsonl(preference_strength=strength))
    assert record.silver_preference == strength
    (record,) = _parse(_csv(str(strength)), filename="rows.csv")
    assert (record.response_a, record.silver_preference) == ("first", strength)


@pytest.mark.smoke
@pytest.mark.parametrize("strength", [0, 3, -1, True, 1.5, "much"])
def test_a_strength_an_export_never_writes_is_refused_naming_the_line(strength):
    with pytest.raises(ImportFormatError, match="preference_strength must be 1") as refused:
        _parse(_jsonl(preference_strength=strength))
    assert refused.value.line == 1


@pytest.mark.smoke
def test_a_csv_strength_that_is_not_a_number_is_refused():
    with pytest.raises(ImportFormatError, match="preference_strength must be 1"):
        _parse(_csv("much"), filename="rows.csv")
