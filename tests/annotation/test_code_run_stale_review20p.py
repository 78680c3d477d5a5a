"""Review 20p: a run whose every try found the sandbox busy outlived the stale sweep (11 tries of
a 60 s slot wait against a 600 s sweep), which failed it saying its worker had stopped; and a run
no sandbox worker ever took was failed with the same wrong reason."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import CodeRun, Evidence
from annotation.services.tools import (
    SANDBOX_BUSY_REASON,
    code_run_create,
    code_run_execute,
    code_runs_fail_stale,
)
from annotation.tools import SandboxBusy, SandboxUnavailable, preflight
from annotation.tools.sandbox import SandboxConfig, acquire_slot
from tests.annotation.tools_helpers import open_assignment


def _sandbox_problem() -> str | None:
    try:
        preflight()
    except SandboxUnavailable as exc:
        return str(exc)
    return None


needs_sandbox = pytest.mark.skipif(
    _sandbox_problem() is not None, reason=f"no sandbox here: {_sandbox_problem()}"
)


def _aged(run: CodeRun, *, seconds: int) -> CodeRun:
    CodeRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(seconds=seconds))
    run.refresh_from_db()
    return run


@needs_sandbox
@pytest.mark.django_db
def test_a_busy_try_too_late_for_another_fails_the_run_with_the_true_reason(
    campaign, annotator_a, monkeypatch, tmp_path
):
    # One slot, held here; a try waits no time for it (the default 60 s is what makes the
    # retries outlast the sweep; the age of the run stands in for the tries before).
    monkeypatch.setenv("ARBITER_SANDBOX_RUNTIME_DIR", str(tmp_path / "sandbox"))
    monkeypatch.setenv("ARBITER_SANDBOX_SLOTS", "1")
    monkeypatch.setenv("ARBITER_SANDBOX_SLOT_WAIT_S", "0")
    assignment = open_assignment(campaign, annotator_a)
    fresh = code_run_create(
        user=annotator_a, language="python", code="print(1)", assignment=assignment
    )
    late = _aged(code_run_create(user=annotator_a, language="python", code="print(2)"), seconds=540)
    with acquire_slot(SandboxConfig.from_env()):
        with pytest.raises(SandboxBusy):
            code_run_execute(code_run_id=fresh.pk)
        with pytest.raises(SandboxBusy):
            code_run_execute(code_run_id=late.pk)
    fresh.refresh_from_db()
    late.refresh_from_db()
    assert fresh.status == CodeRun.Status.QUEUED  # time enough for its retries
    assert late.status == CodeRun.Status.FAILED
    assert late.result == {"status": "failed", "error": SANDBOX_BUSY_REASON}


@pytest.mark.django_db
def test_the_sweep_says_a_run_nobody_took_was_never_taken(campaign, annotator_a):
    assignment = open_assignment(campaign, annotator_a)
    never_taken = _aged(
        code_run_create(
            user=annotator_a, language="python", code="print(1)", assignment=assignment
        ),
        seconds=700,
    )
    stopped = _aged(
        code_run_create(user=annotator_a, language="python", code="print(2)"), seconds=700
    )
    CodeRun.objects.filter(pk=stopped.pk).update(status=CodeRun.Status.RUNNING)

    assert code_runs_fail_stale() == 2
    never_taken.refresh_from_db()
    stopped.refresh_from_db()
    assert never_taken.status == stopped.status == CodeRun.Status.FAILED
    assert "no sandbox worker took this run" in never_taken.result["error"]
    assert stopped.result["error"] == "the worker running this program stopped"
    evidence = Evidence.objects.get(assignment=assignment, kind=Evidence.Kind.CODE_RUN)
    assert "no sandbox worker took this run" in evidence.payload["message"]
