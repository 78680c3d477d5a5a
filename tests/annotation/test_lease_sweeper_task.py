from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Assignment, Pair
from annotation.services.assignments import assignment_next
from annotation.tasks import expire_leases_task
from tests.conftest import wait_for
from tests.factories import PairFactory

pytestmark = [pytest.mark.worker, pytest.mark.smoke]


def test_a_real_worker_expires_stale_leases_and_frees_their_slots(worker, campaign, annotator_a):
    pair = PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)
    Assignment.objects.filter(pk=assignment.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    expire_leases_task.delay()
    wait_for(
        lambda: Assignment.objects.get(pk=assignment.pk).status == Assignment.Status.EXPIRED,
        timeout=60,
        what="the worker to expire the lease",
    )
    assert Pair.objects.get(pk=pair.pk).slots_taken == 0
