"""Work whose worker died is failed, not left running forever."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from annotation.models import CodeRun, ImportJob
from annotation.services.import_jobs import (
    IMPORT_STALE_SECONDS,
    import_jobs_fail_stale,
)
from annotation.services.tools import CODE_RUN_STALE_SECONDS, code_runs_fail_stale

pytestmark = pytest.mark.django_db


def test_an_import_silent_past_the_limit_is_failed_and_a_live_one_is_not(campaign):
    dead = ImportJob.objects.create(campaign=campaign, file="/x", original_name="dead.jsonl",
                                    status=ImportJob.Status.RUNNING)
    alive = ImportJob.objects.create(campaign=campaign, file="/y", original_name="alive.jsonl",
                                     status=ImportJob.Status.RUNNING)
    cache.set(f"import-heartbeat:{dead.pk}", time.time() - IMPORT_STALE_SECONDS - 5)
    cache.set(f"import-heartbeat:{alive.pk}", time.time())
    assert import_jobs_fail_stale() == 1
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.status == ImportJob.Status.FAILED and "nothing was imported" in dead.error
    assert alive.status == ImportJob.Status.RUNNING
    # Without any heartbeat, the job's age decides.
    later = time.time() + IMPORT_STALE_SECONDS + 5
    cache.delete(f"import-heartbeat:{alive.pk}")
    assert import_jobs_fail_stale(now=later) == 1


def test_code_runs_left_behind_by_a_dead_worker_fail(annotator_a):
    old = CodeRun.objects.create(user=annotator_a, language="python", code="1",
                                 status=CodeRun.Status.RUNNING)
    CodeRun.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(seconds=CODE_RUN_STALE_SECONDS + 1)
    )
    fresh = CodeRun.objects.create(user=annotator_a, language="python", code="2",
                                   status=CodeRun.Status.QUEUED)
    assert code_runs_fail_stale() == 1
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.status == CodeRun.Status.FAILED and "stopped" in old.result["error"]
    assert fresh.status == CodeRun.Status.QUEUED
