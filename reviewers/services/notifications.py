"""E-mail to experts about new escalations in their domains, at most once an hour each.

An escalation's commit enqueues ``reviewers.notify_experts``; the task calls
``experts_notify``, which takes each expert's hourly slot with a conditional UPDATE before
sending, so a re-run (or two escalations at once) never sends an expert a second e-mail in the
hour. Experts turn it off, or narrow it to task categories, on their settings page.

An expert hears only of an escalation they can open now: during the campaign's domain wait
(``Escalation.open_to_all_at``) that is the experts of its category, and the run then sends
itself again for that moment, when it tells the others.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, User
from django.core.mail import send_mail
from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from annotation.models import CampaignMember, Label
from annotation.roles import Role
from reviewers.models import Escalation, ExpertSettings
from reviewers.selectors.access import _REVIEWING_ROLES as REVIEWING_ROLES
from reviewers.selectors.queue import escalation_queue

NOTIFY_INTERVAL = timedelta(hours=1)

logger = logging.getLogger(__name__)


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


def _open_in_domains(row: ExpertSettings, expert: User, now: datetime) -> int:
    # Only escalations the expert may open now: another campaign's, or one still reserved for
    # other domains, is not theirs to count.
    open_escalations = escalation_queue(viewer=expert, now=now)
    if row.domains:
        open_escalations = open_escalations.filter(pair__task_category__in=row.domains)
    return open_escalations.count()


def _opens_to_them_at(
    escalation: Escalation, row: ExpertSettings, *, is_admin: bool
) -> datetime | None:
    # As ``visible_to_expert``: admins and the category's experts see it at once (None), the
    # others at the end of the campaign's domain wait (None too where there is none).
    if escalation.pair.task_category in row.domains or is_admin:
        return None
    return escalation.open_to_all_at


def _due_experts(escalation: Escalation, now: datetime) -> QuerySet[User]:
    """Active experts with an address who can open the escalation's campaign, did not label
    its pair, and whose hourly slot is free, with their settings (None: never set, so on for
    all domains) and ``is_admin``, in one query: the slot, rarely free while escalations come
    often, is asked first, so that a notice costs no query per expert who is not due an
    e-mail.

    A superset of those ``experts_notify`` mails: the domains, the wait and an e-mail that
    counted the escalation already are checked there (the last one again by the slot's UPDATE).
    """
    memberships = get_user_model().groups.through.objects.filter(user_id=OuterRef("pk"))
    is_admin = Q(is_superuser=True) | Exists(memberships.filter(group__name=Role.ADMIN.value))
    # An e-mail since the last moment anyone came to see the escalation counted it for all
    # (the slot's UPDATE checks each one's own moment).
    seen_by_all_since = max(
        escalation.created_at, escalation.open_to_all_at or escalation.created_at
    )
    slot_free = Q(expert_settings__last_notified_at__isnull=True) | Q(
        expert_settings__last_notified_at__lte=now - NOTIFY_INTERVAL,
        expert_settings__last_notified_at__lt=seen_by_all_since,
    )
    experts = (
        get_user_model()
        .objects.filter(Exists(memberships.filter(group__name=Role.EXPERT.value)))
        .filter(is_active=True)
        .exclude(email="")
        .filter(Q(expert_settings__isnull=True) | Q(expert_settings__notify_by_email=True))
        .filter(slot_free)
        # Nobody decides a pair they labelled (an admin, or an expert who also annotates): the
        # e-mail would spend their hourly slot on a pair they cannot take.
        .exclude(
            Exists(Label.objects.filter(pair_id=escalation.pair_id, annotator_id=OuterRef("pk")))
        )
        .select_related("expert_settings")
        .annotate(is_admin=ExpressionWrapper(is_admin, output_field=BooleanField()))
        .order_by("pk")
    )
    campaign = escalation.campaign
    if not campaign.open_to_all:
        # Otherwise they cannot open it: the mail would only tell them of the campaign.
        reviewers = CampaignMember.objects.filter(
            campaign_id=campaign.pk, user_id=OuterRef("pk"), role__in=REVIEWING_ROLES
        )
        experts = experts.filter(Exists(reviewers) | is_admin)
    return experts


def _notify_again_at(escalation: Escalation) -> None:
    # By name, as escalations.py sends the first run. Best effort: a broker that is down costs
    # the late notice, not the experts' e-mails already sent. A duplicate (a retried run sends
    # it again) is harmless: the hourly slot lets one of them send.
    try:
        current_app.send_task(
            "reviewers.notify_experts", args=(escalation.pk,), eta=escalation.open_to_all_at
        )
    except Exception:  # kombu's OperationalError and the transport's own connection errors
        logger.warning("could not schedule the late expert notice for escalation %s", escalation.pk)


def experts_notify(*, escalation_id: int, now: datetime | None = None) -> int:
    """E-mail the experts whose domains cover the escalation's pair and who can open it now,
    unless an e-mail since it became theirs to see has counted it; returns how many. During
    its domain wait that is its category's experts: the run schedules itself again for the
    end of the wait, for the others."""
    now = now or timezone.now()
    escalation = (
        Escalation.objects.select_related("pair", "campaign")
        .filter(pk=escalation_id, status=Escalation.Status.OPEN)
        .first()
    )
    if escalation is None:
        return 0  # decided or withdrawn before the task ran
    category = escalation.pair.task_category
    if escalation.open_to_all_at is not None and escalation.open_to_all_at > now:
        _notify_again_at(escalation)
    sent = 0
    for expert in _due_experts(escalation, now):
        # None: they never saved their settings (on, all domains); made now, for the slot.
        row = getattr(expert, "expert_settings", None) or expert_settings_for(user=expert)
        if not row.notify_by_email or not _in_domains(row, category):
            continue
        # is_admin: the query's annotation, unknown to the type checker.
        opens_at = _opens_to_them_at(escalation, row, is_admin=getattr(expert, "is_admin", False))
        if opens_at is not None and opens_at > now:
            continue  # still reserved for its category's experts: the later run tells them
        visible_since = opens_at or escalation.created_at
        previous = row.last_notified_at
        # The hourly slot, taken before sending: of two tasks racing, one sends.
        taken = (
            ExpertSettings.objects.filter(pk=row.pk, notify_by_email=True)
            .filter(
                Q(last_notified_at__isnull=True) | Q(last_notified_at__lte=now - NOTIFY_INTERVAL)
            )
            # An e-mail sent since they could see it counted it already (the scheduled run
            # at the end of the wait skips the category's experts told at the start).
            .exclude(last_notified_at__gte=visible_since)
            .update(last_notified_at=now)
        )
        if not taken:
            continue
        waiting = _open_in_domains(row, expert, now)
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
