"""Celery adapters for the reviewers app: small, idempotent, explicitly named."""

from __future__ import annotations

from smtplib import SMTPException

from celery import shared_task

from reviewers.services.notifications import experts_notify


@shared_task(
    name="reviewers.notify_experts",
    acks_late=True,
    autoretry_for=(SMTPException, ConnectionError, TimeoutError),
    retry_backoff=True,
    max_retries=3,
)
def notify_experts_task(escalation_id: int) -> int:
    return experts_notify(escalation_id=escalation_id)
