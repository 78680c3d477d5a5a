"""Celery adapters for the reviewers app: small, idempotent, explicitly named."""

from __future__ import annotations

from smtplib import SMTPException

from celery import shared_task

from reviewers.services.notifications import experts_notify
from reviewers.services.weighted_consensus import campaign_consensus_reestimate


@shared_task(
    name="reviewers.notify_experts",
    acks_late=True,
    autoretry_for=(SMTPException, ConnectionError, TimeoutError),
    retry_backoff=True,
    max_retries=3,
)
def notify_experts_task(escalation_id: int) -> int:
    return experts_notify(escalation_id=escalation_id)


@shared_task(name="reviewers.reestimate_consensus", acks_late=True)
def reestimate_consensus_task(campaign_id: int) -> int:
    """Re-settle a Dawid–Skene campaign's pairs; idempotent, so a duplicate run is harmless."""
    result = campaign_consensus_reestimate(campaign_id=campaign_id)
    return 0 if result is None else result.pairs_settled
