"""The scoring endpoint's task: score one batch for a waiting web request (gpu queue)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from scoring.deploy.serving import score_request_run

_LIMIT_S = float(settings.ARBITER.get("SCORE_TIMEOUT_S", 30.0)) + 30


# Not acks_late: a request whose worker died is answered 504 by the web process; running it
# again on another worker would only score for nobody. It expires with the web's wait.
@shared_task(
    name="scoring.score_request",
    acks_late=False,
    ignore_result=True,
    soft_time_limit=_LIMIT_S,
    time_limit=_LIMIT_S + 10,
)
def score_request_task(
    *, version_id: int, request_id: str, items: list[dict], deadline: float
) -> None:
    score_request_run(version_id=version_id, request_id=request_id, items=items, deadline=deadline)
