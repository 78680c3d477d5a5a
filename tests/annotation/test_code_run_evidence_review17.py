"""A code run's evidence is written under the assignment's row lock, as an attached result's
and a model's answer are: a label submitted meanwhile either lists it or the run is refused.

Review 17: the run checked the assignment open, then wrote its evidence without the lock; a
submit committing in between left the evidence linked to no label, so no export showed it."""

from __future__ import annotations

import pytest
from django.db import connection, connections, transaction  # noqa: F401 - connection: skipif reads it

from annotation.models import Assignment, CodeRun, Evidence, Label
from annotation.services.labels import LabelInput, label_submit
from annotation.services.tools import AssignmentClosed, code_run_create
from tests.annotation.tools_helpers import open_assignment
from tests.conftest import start_in_thread, wait_for_a_lock_waiter

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="row locks"),
]


def test_a_label_submitted_while_a_run_is_being_recorded_is_not_left_without_its_evidence(
    campaign, annotator_a
):
    assignment = open_assignment(campaign, annotator_a)

    def run_code() -> CodeRun:
        try:
            return code_run_create(
                user=annotator_a, language="python", code="print(1)", assignment=assignment
            )
        finally:
            connections.close_all()

    with transaction.atomic():
        # Another run of the same annotator holds their row: this one has found the assignment
        # open and waits for the row, before it writes anything.
        type(annotator_a).objects.select_for_update(no_key=True).get(pk=annotator_a.pk)
        run = start_in_thread(run_code)
        wait_for_a_lock_waiter()  # the run, for the user row
        label = label_submit(assignment=assignment, data=LabelInput(preference=1))

    refused = run.exception(timeout=20)
    assert Assignment.objects.get(pk=assignment.pk).status == Assignment.Status.SUBMITTED
    assert not Evidence.objects.filter(assignment=assignment, label__isnull=True).exists()
    assert isinstance(refused, AssignmentClosed), refused
    assert not CodeRun.objects.exists()
    assert Label.objects.get() == label
