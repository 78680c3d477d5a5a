"""Review 20p: the expert page told a code run's bookkeeping state ("status: done") for a
program that timed out or failed its tests, and left out where an attached result came from."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from annotation.models import CodeRun
from annotation.services.labels import LabelInput, label_submit
from annotation.services.tools import _code_run_finish, code_run_create, evidence_attach
from reviewers.models import Escalation
from reviewers.services.escalations import escalation_open
from tests.annotation.tools_helpers import open_assignment


@pytest.mark.django_db
def test_the_expert_page_tells_what_the_program_did_and_the_sources_cited(
    campaign, annotator_a, expert
):
    assignment = open_assignment(campaign, annotator_a)
    run = code_run_create(
        user=annotator_a,
        language="python",
        code="while True: pass",
        tests="assert True",
        assignment=assignment,
    )
    # As the worker leaves it: claimed, then finished with the sandbox's verdict.
    CodeRun.objects.filter(pk=run.pk).update(status=CodeRun.Status.RUNNING)
    run.refresh_from_db()
    _code_run_finish(
        run,
        CodeRun.Status.DONE,
        {
            "status": "timeout",
            "exit_code": None,
            "stdout": "",
            "stderr": "",
            "duration_ms": 10003,
            "tests": "fail",
            "message": "Stopped at the 10 s time limit.",
        },
    )
    evidence_attach(
        assignment=assignment, title="Halting problem", source="https://example.org/halting"
    )
    label = label_submit(
        assignment=assignment, data=LabelInput(preference=1, rationale="B never halts.")
    )
    escalation = escalation_open(pair=label.pair, reason=Escalation.Reason.MANUAL, detail="look")
    assert escalation is not None

    client = Client()
    client.force_login(expert)
    page = client.get(reverse("escalation-review", args=[escalation.pk]))
    assert page.status_code == 200
    evidence = [item["summary"] for entry in page.context["labels"] for item in entry["evidence"]]
    assert evidence == [
        "Ran python: timeout, tests fail in 10003 ms",
        'Attached "Halting problem" <https://example.org/halting>',
    ]
    assert "status: done" not in page.content.decode()
