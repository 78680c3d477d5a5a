"""Review 16: an exported code run says what the program did, not the run's state.

The item read the payload's ``status``, which is the run's bookkeeping state: "done" for a
program that crashed or failed its tests as for one that passed."""

from __future__ import annotations

import pytest

from annotation.models import CodeRun, Evidence
from annotation.services.tools import _run_summary
from scoring.datasets.export.reading import _evidence_item
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("result", "item"),
    [
        (
            {"status": "error", "tests": "fail", "exit_code": 1},
            "code_run: python error, tests fail",
        ),
        ({"status": "ok", "tests": "pass", "exit_code": 0}, "code_run: python ok, tests pass"),
        ({"status": "timeout"}, "code_run: python timeout"),
    ],
)
def test_a_code_runs_item_says_how_the_program_ended(result, item):
    run = CodeRun.objects.create(
        user=UserFactory(), language="python", code="1/0", status=CodeRun.Status.DONE, result=result
    )
    payload = {"language": "python", "code_run_id": run.pk, **_run_summary(run)}
    assert payload["status"] == "done"
    assert _evidence_item(Evidence.Kind.CODE_RUN, payload) == item


def test_a_run_that_never_ran_keeps_its_state():
    payload = {"language": "python", "status": "failed", "message": "every slot stayed busy"}
    assert _evidence_item(Evidence.Kind.CODE_RUN, payload) == "code_run: python failed"
