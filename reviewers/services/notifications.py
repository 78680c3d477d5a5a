"""E-mail to experts about new escalations in their domains, at most once an hour each.

An escalation's commit enqueues ``reviewers.notify_experts``; the task calls
``experts_notify``, which takes each expert's hourly slot with a conditional UPDATE before
sending, so a re-run (or two escalations at once) never sends an expert a second e-mail in the
hour. Experts turn it off, or narrow it to task categories, on their settings page.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, User
from django.core.mail import send_mail
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from annotation.roles import Role
from reviewers.models import Escalation, ExpertSettings
from reviewers.selectors.access import reviews_campaign, visible_to

NOTIFY_INTERVAL = timedelta(hours=1)


def expert_settings_for(*, user: AbstractBaseUser) -> ExpertSettings:
    settings_row, _created = ExpertSettings.objects.get_or_create(user=user)
    return settings_row


def expert_settings_update(
    *,
    user: AbstractBaseUser,
    notify_by_email: bool,
    domains: list[str],
) -> ExpertSettings:
    settings_row = expert_settings_for(user=user)
    settings_row.notify_by_email = notify_by_email
    settings_row.domains = sorted({domain.strip() for domain in domains if domain.strip()})
    settings_row.full_clean()
    settings_row.save(update_fields=["notify_by_email", "domains"])
    return settings_row


def _in_domains(row: ExpertSettings, category: str) -> bool:
    return not row.domains or category in row.domains


def _open_in_domains(row: ExpertSettings, expert: User) -> int:
    # Only escalations the expert may open: another campaign's count is not theirs to know.
    open_escalations = visible_to(Escalation.objects.filter(status=Escalation.Status.OPEN), expert)
    if row.domains:
        open_escalations = open_escalations.filter(pair__task_category__in=row.domains)
    return open_escalations.count()


def experts_notify(*, escalation_id: int, now: datetime | None = None) -> int:
    """E-mail the experts whose domains cover the escalation's pair; returns how many."""
    now = now or timezone.now()
    escalation = (
        Escalation.objects.select_related("pair", "campaign")
        .filter(pk=escalation_id, status=Escalation.Status.OPEN)
        .first()
    )
    if escalation is None:
        return 0  # decided or withdrawn before the task ran
    category = escalation.pair.task_category
    experts = (
        get_user_model()
        .objects.filter(groups__name=Role.EXPERT.value, is_active=True)
        .exclude(email="")
        .distinct()
    )
    campaign = escalation.campaign
    sent = 0
    for expert in experts:
        if not (campaign.open_to_all or reviews_campaign(expert, campaign.pk)):
            continue  # they cannot open it: the mail would only tell them of the campaign
        row = expert_settings_for(user=expert)
        if not row.notify_by_email or not _in_domains(row, category):
            continue
        previous = row.last_notified_at
        # The hourly slot, taken before sending: of two tasks racing, one sends.
        taken = (
            ExpertSettings.objects.filter(pk=row.pk, notify_by_email=True)
            .filter(
                Q(last_notified_at__isnull=True) | Q(last_notified_at__lte=now - NOTIFY_INTERVAL)
            )
            .update(last_notified_at=now)
        )
        if not taken:
            continue
        waiting = _open_in_domains(row, expert)
        queue = settings.ARBITER.get("BASE_URL", "") + reverse("expert-queue")
        try:
            send_mail(
                subject=f"Arbiter: {waiting} escalation{'s' if waiting != 1 else ''} waiting",
                message=(
                    f"A pair in {escalation.campaign.name}"
                    f"{f' ({category})' if category else ''} needs an expert's decision: "
                    f"{escalation.get_reason_display()}.\n\n"
                    f"Open escalations in your domains: {waiting}.\n"
                    f"The expert queue: {queue}\n\n"
                    "You get at most one of these an hour. Turn them off or choose your "
                    f"domains at {settings.ARBITER.get('BASE_URL', '')}"
                    f"{reverse('expert-settings')}"
                ),
                from_email=None,
                recipient_list=[expert.email],
            )
        except Exception:
            # Give the slot back so that a retry may send it.
            ExpertSettings.objects.filter(pk=row.pk, last_notified_at=now).update(
                last_notified_at=previous
            )
            raise
        sent += 1
    return sent
