"""Celery adapters for the reviewers app: small, idempotent, explicitly named."""

from __future__ import annotations

from smtplib import SMTPException

from celery import shared_task
from django.db import InterfaceError, OperationalError

from annotation.models import Campaign
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


# Retried on a database restart: the debounce key is already taken, so a lost run is asked for
# again only by a label after the window, and the window's verdicts could stay unweighted.
@shared_task(
    name="reviewers.reestimate_consensus",
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
)
def reestimate_consensus_task(campaign_id: int) -> int:
    """Re-settle a Dawid–Skene campaign's pairs; idempotent, so a duplicate run is harmless."""
    try:
        result = campaign_consensus_reestimate(campaign_id=campaign_id)
    except Campaign.DoesNotExist:
        return 0  # deleted since the label that asked for it
    return 0 if result is None else result.pairs_settled
