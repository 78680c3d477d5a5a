"""Review 19: a delivery of a job that a live worker runs looks again later, however many times
it takes. ``retry(max_retries=None)`` means the task's own limit (5), so a sixth look raised
MaxRetriesExceededError (an error logged while the job ran on); and an explicit limit, left on
the task object by ``retry``, must not become the limit of the next transient-error retry."""

from __future__ import annotations

import pytest
from celery.exceptions import Retry

from scoring.jobs.runner import ClaimOutcome, JobClaim
from scoring.jobs.shards import ShardClaim
from scoring.tasks.busy import retry_while_busy
from scoring.tasks.model_jobs import train_reward_model_task

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "claim",
    [JobClaim(ClaimOutcome.BUSY, None, 60.0), ShardClaim(outcome="busy", retry_in=60.0)],
    ids=["job", "shard"],
)
def test_a_busy_delivery_retries_past_the_tasks_own_limit(claim) -> None:
    task = train_reward_model_task
    # The seventh look at a job still running elsewhere, routed to a queue no worker reads.
    task.push_request(
        id="busy-review19",
        args=[999_999],
        kwargs={},
        retries=6,
        called_directly=False,
        delivery_info={"routing_key": "review19-nowhere", "exchange": ""},
    )
    try:
        with pytest.raises(Retry):
            retry_while_busy(task, claim)
    finally:
        task.pop_request()
    assert task.max_retries == 5
    assert "override_max_retries" not in task.__dict__


def test_a_claimed_job_is_not_retried() -> None:
    retry_while_busy(train_reward_model_task, JobClaim(ClaimOutcome.CLAIMED, None))
