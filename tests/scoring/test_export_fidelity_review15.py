"""Review 15: what the curated export writes of rewrites (changed and set-aside labels, pairs
whose own row is left out) and which model version its manifest names."""

from __future__ import annotations

import json

import pytest

from annotation.models import Assignment, Evidence, Label, Outcome, Pair, Rewrite
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, RewriteInput, label_change, label_submit
from annotation.services.members import member_ensure, member_quarantine
from annotation.services.rewrites import rewrite_by_expert
from scoring.datasets.export import ExportFilters, export_write
from scoring.loop.registry import model_version_activate
from scoring.models import ModelVersion, PairScore
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.scoring.test_export import voted_pair

pytestmark = pytest.mark.django_db

# Neither decontamination (no evaluation sets here) nor deduplication is what these test.
PLAIN = {"decontaminate": False, "deduplicate": False}


def _shown(assignment: Assignment, side: str) -> str:
    """The side as the annotator was shown it, for a canonical one."""
    return {"a": "b", "b": "a"}[side] if assignment.swapped else side


def _input(assignment: Assignment, canonical: int, rewrite: str | None = None) -> LabelInput:
    """A label preferring canonical A (1) or B (-1), with a rewrite of canonical B."""
    shown_rewrite = (
        RewriteInput(text=rewrite, based_on=_shown(assignment, "b"))
        if rewrite is not None
        else None
    )
    return LabelInput(
        preference=-canonical if assignment.swapped else canonical, rewrite=shown_rewrite
    )


def _judge(campaign, user, canonical: int = 1, rewrite: str | None = None) -> Assignment:
    assignment = assignment_next(campaign=campaign, annotator=user)
    assert assignment is not None
    label_submit(assignment=assignment, data=_input(assignment, canonical, rewrite))
    return assignment


def _export(campaign, tmp_path, **params) -> tuple[list[dict], dict]:
    destination = tmp_path / "export.jsonl"
    result = export_write(
        campaign=campaign,
        filters=ExportFilters.from_params(params),
        file_format="jsonl",
        destination=destination,
    )
    rows = [json.loads(line) for line in destination.read_text().splitlines() if line]
    return rows, result.manifest


def _rewrite_texts(rows: list[dict]) -> list[str]:
    return [row["chosen"][-1]["content"] for row in rows if row["provenance"] == "rewrite"]


@pytest.fixture
def rewriting(db):
    """A campaign taking rewrites, one pair (A right), three annotators."""
    campaign = CampaignFactory(allow_rewrites=True)
    pair = PairFactory(campaign=campaign, response_a="necessary", response_b="neccessary")
    return campaign, pair, UserFactory.create_batch(3)


# --- A changed label's rewrite -----------------------------------------------------------------


def test_a_change_that_corrects_the_rewrite_exports_only_the_corrected_one(rewriting, tmp_path):
    campaign, pair, (first, second, third) = rewriting
    assignment = _judge(campaign, first, rewrite="neccesary")
    label_change(assignment=assignment, data=_input(assignment, 1, rewrite="necessary!"))
    for user in (second, third):
        _judge(campaign, user)

    rows, manifest = _export(campaign, tmp_path, rewrites=True, **PLAIN)

    assert _rewrite_texts(rows) == ["necessary!"]
    assert manifest["counts"]["rewrites"] == 1
    label = Label.objects.get(assignment=assignment)
    (kept,) = Rewrite.objects.filter(pair=pair)
    assert (kept.label_id, kept.text, kept.based_on) == (label.pk, "necessary!", "b")
    # The draft it replaced stays readable in the label's history.
    assert [entry.get("rewrite") for entry in label.history] == [
        {"text": "neccesary", "based_on": "b"}
    ]


def test_a_change_without_a_rewrite_withdraws_the_earlier_one(rewriting, tmp_path):
    campaign, pair, (first, second, third) = rewriting
    assignment = _judge(campaign, first, rewrite="neccesary")
    label_change(assignment=assignment, data=_input(assignment, 1))
    for user in (second, third):
        _judge(campaign, user)

    rows, manifest = _export(campaign, tmp_path, rewrites=True, **PLAIN)

    assert _rewrite_texts(rows) == []
    assert manifest["counts"]["rewrites"] == 0
    assert not Rewrite.objects.filter(pair=pair).exists()


def test_a_change_that_keeps_its_rewrite_keeps_the_same_row(rewriting):
    campaign, pair, (first, _, _) = rewriting
    assignment = _judge(campaign, first, canonical=-1, rewrite="necessary")
    before = Rewrite.objects.get(pair=pair)
    label_change(assignment=assignment, data=_input(assignment, 1, rewrite="necessary"))
    assert list(Rewrite.objects.filter(pair=pair).values_list("pk", flat=True)) == [before.pk]


def test_the_export_writes_only_the_latest_rewrite_of_a_label(rewriting, tmp_path):
    """Labels changed before a change replaced their rewrite hold several: the newest is the
    label's; an expert's rewrite of the same pair is written too."""
    campaign, pair, (first, second, third) = rewriting
    assignment = _judge(campaign, first, rewrite="draft")
    label = Label.objects.get(assignment=assignment)
    Rewrite.objects.create(
        pair=pair,
        campaign=campaign,
        label=label,
        assignment=assignment,
        author=first,
        text="corrected",
        based_on="b",
    )
    for user in (second, third):
        _judge(campaign, user)
    rewrite_by_expert(pair=pair, expert=UserFactory(), text="expert's", based_on="b")

    rows, _ = _export(campaign, tmp_path, rewrites=True, **PLAIN)

    assert _rewrite_texts(rows) == ["corrected", "expert's"]


# --- A set-aside label ---------------------------------------------------------------------------


def test_a_set_aside_labels_rewrite_and_evidence_stay_out_of_the_export(rewriting, tmp_path):
    """README: a set-aside label is left out of both exports, with what it carries; a counted
    label's rewrite and evidence, and an expert's rewrite, are written."""
    campaign, pair, (quarantined, second, third) = rewriting
    assignment = _judge(campaign, quarantined, canonical=-1, rewrite="NECCESSARY lol")
    Evidence.objects.create(
        assignment=assignment,
        label=Label.objects.get(assignment=assignment),
        kind=Evidence.Kind.SEARCH,
        payload={"query": "the quarantined annotator's query"},
    )
    member = member_ensure(campaign=campaign, user_id=quarantined.pk)
    assert member_quarantine(member=member, reason="test") == 1
    _judge(campaign, second)
    _judge(campaign, third)
    counted = _judge(campaign, UserFactory(), rewrite="necessary.")
    Evidence.objects.create(
        assignment=counted,
        label=Label.objects.get(assignment=counted),
        kind=Evidence.Kind.SEARCH,
        payload={"query": "a counted query"},
    )
    rewrite_by_expert(pair=pair, expert=UserFactory(), text="expert's", based_on="b")
    assert Pair.objects.get(pk=pair.pk).provenance == "unanimous"

    rows, _ = _export(campaign, tmp_path, rewrites=True, **PLAIN)

    (main,) = [row for row in rows if row["provenance"] != "rewrite"]
    assert main["votes"] == [1, 1, 1]
    assert main["evidence_counts"]["search"] == 1
    assert main["evidence_items"] == ["search: a counted query"]
    assert _rewrite_texts(rows) == ["necessary.", "expert's"]


# --- The manifest's model version ----------------------------------------------------------------


def test_the_manifest_names_the_version_the_rows_carry_when_another_is_activated_meanwhile(
    tmp_path,
):
    campaign = CampaignFactory()
    annotators = UserFactory.create_batch(3)
    pairs = [
        voted_pair(campaign, annotators, [1, 1, 1], consensus=1, provenance="unanimous")
        for _ in range(3)
    ]
    old = ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint="/x", is_active=True
    )
    (tmp_path / "v2").mkdir()
    new = ModelVersion.objects.create(
        campaign=campaign, number=2, base="tiny", checkpoint=str(tmp_path / "v2")
    )
    for pair in pairs:
        PairScore.objects.create(
            pair=pair, model_version=old, reward_a=1.0, reward_b=0.0, p_a_better=0.73
        )
        PairScore.objects.create(
            pair=pair, model_version=new, reward_a=0.0, reward_b=1.0, p_a_better=0.27
        )
    activated: list[int] = []

    def on_progress(done: int, total: int) -> None:
        if not activated:  # the loop activates version 2 while the export runs
            model_version_activate(version=new)
            activated.append(done)

    destination = tmp_path / "export.jsonl"
    result = export_write(
        campaign=campaign,
        filters=ExportFilters(),
        file_format="jsonl",
        destination=destination,
        chunk_size=1,
        on_progress=on_progress,
    )

    rows = [json.loads(line) for line in destination.read_text().splitlines()]
    assert activated and ModelVersion.objects.get(is_active=True, campaign=campaign) == new
    assert [row["model_version"] for row in rows] == [1, 1, 1]
    assert result.manifest["model_version"] == 1


# --- A pair whose own row is left out ------------------------------------------------------------


@pytest.fixture
def both_bad(db):
    """A campaign with one unanimous "both bad" pair that an expert rewrote."""
    campaign = CampaignFactory(allow_rewrites=True)
    annotators = UserFactory.create_batch(3)
    pair = voted_pair(
        campaign,
        annotators,
        [0, 0, 0],
        consensus=0,
        provenance="unanimous",
        consensus_outcome=Outcome.BOTH_BAD,
    )
    Label.objects.filter(pair=pair).update(outcome=Outcome.BOTH_BAD)
    rewrite_by_expert(pair=pair, expert=UserFactory(), text="A good answer.", based_on="a")
    return campaign, pair


@pytest.mark.parametrize("outcomes", ["separate", "exclude"])
def test_a_both_bad_pairs_rewrite_is_written_wherever_its_own_row_goes(
    both_bad, tmp_path, outcomes
):
    """A rewrite row is a chosen/rejected pair of its own; ``outcomes`` says only where the
    pair's own (unranked) row goes."""
    campaign, pair = both_bad
    rows, manifest = _export(campaign, tmp_path, rewrites=True, outcomes=outcomes)
    assert [(row["pair_id"], row["provenance"]) for row in rows] == [(pair.pk, "rewrite")]
    assert rows[0]["rejected"][-1]["content"] == pair.response_a
    assert manifest["counts"]["rewrites"] == 1


@pytest.mark.parametrize("outcomes", ["separate", "exclude"])
def test_a_repeat_of_a_pair_whose_rewrite_was_written_is_left_out(both_bad, tmp_path, outcomes):
    """The pair is in the export through its rewrite's row: a silver copy of it (A and B
    swapped) is a repeat whether or not the pair's own row is written."""
    campaign, pair = both_bad
    copy = PairFactory(
        campaign=campaign,
        conversation=pair.conversation,
        response_a=pair.response_b,
        response_b=pair.response_a,
        silver_preference=1,
        status=Pair.Status.POOLED,
    )
    rows, manifest = _export(
        campaign, tmp_path, rewrites=True, outcomes=outcomes, include_silver=True
    )
    assert copy.pk not in {row["pair_id"] for row in rows}
    assert [row["provenance"] for row in rows] == ["rewrite"]
    assert manifest["deduplication"]["exact"] == 1
