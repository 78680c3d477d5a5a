"""A set uploaded while an evaluate job of the same version still waits on the gpu queue is
asked for at once, on its own: the pending sweep leaves out only the sets a queued or running
job of the version covers (it used to skip a version with any such job, so the new set waited
for that job to end and the next minute's sweep)."""

from __future__ import annotations

import pytest

from scoring.evaluation.reading import EvaluationRecord
from scoring.evaluation.services import (
    evaluation_request,
    evaluation_set_upload,
    evaluations_enqueue_pending,
)
from scoring.models import EvaluationSet, Job, ModelVersion
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

EVALUATE_TASK = "scoring.evaluate_model"


def _records(tag: str) -> list[EvaluationRecord]:
    conversation = [{"role": "user", "content": f"Question {tag}"}]
    return [EvaluationRecord(conversation, f"good {tag}", f"bad {tag}", "s")]


def _version(campaign, number: int = 1) -> ModelVersion:
    # Ready; never run here (the sweep only asks for jobs).
    return ModelVersion.objects.create(
        campaign=campaign, number=number, base="tiny", checkpoint="/nonexistent"
    )


def _asked() -> list[tuple[int, list[int], str]]:
    return [
        (job.params["version"], job.params["sets"], job.status)
        for job in Job.objects.filter(kind=Job.Kind.EVALUATE).order_by("id")
    ]


def test_a_set_uploaded_while_the_first_sets_job_waits_is_asked_for_at_once(
    sent_tasks, django_capture_on_commit_callbacks
) -> None:
    campaign = CampaignFactory()
    version = _version(campaign)
    with django_capture_on_commit_callbacks(execute=True):
        first = evaluation_set_upload(campaign=campaign, name="first", records=_records("1"))
    with django_capture_on_commit_callbacks(execute=True):  # the first's job still queued
        second = evaluation_set_upload(campaign=campaign, name="second", records=_records("2"))

    assert _asked() == [
        (version.pk, [first.pk], Job.Status.QUEUED),
        (version.pk, [second.pk], Job.Status.QUEUED),
    ]
    first_job, second_job = Job.objects.filter(kind=Job.Kind.EVALUATE).order_by("id")
    assert sent_tasks == [(EVALUATE_TASK, (first_job.pk,)), (EVALUATE_TASK, (second_job.pk,))]
    # Every set is covered now: the beat's next sweep asks for nothing.
    assert evaluations_enqueue_pending() == []


def test_the_sweep_leaves_out_only_the_sets_an_active_job_of_the_version_covers(
    sent_tasks,
) -> None:
    campaign = CampaignFactory()
    older, newer = _version(campaign, 1), _version(campaign, 2)
    sets = [
        EvaluationSet.objects.create(
            campaign=campaign, name=name, sha256=name[0] * 64, pairs_count=1
        )
        for name in ("a-set", "b-set", "c-set")
    ]
    shared = EvaluationSet.objects.create(
        campaign=None, name="shared", sha256="d" * 64, pairs_count=1
    )
    # Asked by hand: the older version on two of the sets, still queued.
    by_hand = evaluation_request(version=older, sets=sets[:2])

    asked = evaluations_enqueue_pending(campaign=campaign)

    # The older version's other sets (its campaign's third and the shared one); the newer
    # version, whose jobs cover nothing, on all four.
    assert _asked() == [
        (older.pk, sorted([sets[0].pk, sets[1].pk]), Job.Status.QUEUED),
        (older.pk, sorted([sets[2].pk, shared.pk]), Job.Status.QUEUED),
        (newer.pk, sorted([*(item.pk for item in sets), shared.pk]), Job.Status.QUEUED),
    ]
    assert len(asked) == 2 and by_hand.pk not in asked
    assert evaluations_enqueue_pending() == []  # no set is asked for twice


def test_a_set_whose_job_ended_is_asked_for_again_beside_an_active_job(sent_tasks) -> None:
    campaign = CampaignFactory()
    version = _version(campaign)
    waiting, lost = (
        EvaluationSet.objects.create(campaign=campaign, name=name, sha256=name[0] * 64)
        for name in ("waiting", "lost")
    )
    evaluation_request(version=version, sets=[waiting])
    ended = evaluation_request(version=version, sets=[lost])
    # A job that ended covers nothing any more: the set it left without a result is missing.
    Job.objects.filter(pk=ended.pk).update(status=Job.Status.SUCCEEDED)

    (job_id,) = evaluations_enqueue_pending()

    assert Job.objects.get(pk=job_id).params == {"version": version.pk, "sets": [lost.pk]}
