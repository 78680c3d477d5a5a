"""Who may see what: experts, admins and campaign members, each answered with a 404."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User
from django.db.models import Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone

from annotation.models import Campaign, CampaignMember, Pair
from annotation.roles import Role, user_has_role
from reviewers.models import Escalation, ExpertSettings

_REVIEWING_ROLES = (CampaignMember.Role.EXPERT, CampaignMember.Role.ADMIN)


def require_expert(user: User) -> None:
    """Experts and admins only; anyone else is told the page does not exist."""
    if not user_has_role(user, Role.EXPERT):
        raise Http404("No such page.")


def expert_domains(user: User) -> list[str]:
    """The task categories an expert covers (``ExpertSettings.domains``, shared with the
    hourly e-mail); none listed: a generalist, who sees escalations once they are open to all."""
    settings_row = ExpertSettings.objects.filter(user_id=user.pk).only("domains").first()
    return list(settings_row.domains) if settings_row is not None else []


def visible_to_expert(user: User, *, now: datetime | None = None) -> Q:
    """Escalations ``user`` may see: all for admins; for an expert, those of their domains at
    once and the others once the campaign's domain wait is over."""
    if user_has_role(user, Role.ADMIN):
        return Q()
    now = now or timezone.now()
    visible = Q(open_to_all_at__isnull=True) | Q(open_to_all_at__lte=now)
    domains = expert_domains(user)
    if domains:
        visible |= Q(pair__task_category__in=domains)
    return visible


def require_admin(user: User) -> None:
    """Admins only; anyone else is told the page does not exist."""
    if not user_has_role(user, Role.ADMIN):
        raise Http404("No such page.")


def escalation_for_expert(*, escalation_id: int, user: User) -> Escalation:
    require_expert(user)
    escalation = get_object_or_404(
        Escalation.objects.select_related("pair", "campaign", "claimed_by"), pk=escalation_id
    )
    if not escalation.campaign.open_to_all and not reviews_campaign(user, escalation.campaign_id):
        raise Http404("No such escalation.")
    # Checked on the row: an escalation open to all (the common case) costs no query more.
    waiting = escalation.open_to_all_at is not None and escalation.open_to_all_at > timezone.now()
    if (
        waiting
        and not user_has_role(user, Role.ADMIN)
        and escalation.pair.task_category not in expert_domains(user)
    ):
        raise Http404("No such escalation.")
    return escalation


def reviews_campaign(user: User, campaign_id: int) -> bool:
    """An expert (or admin) member of the campaign, or a site admin."""
    member = CampaignMember.objects.filter(
        campaign_id=campaign_id, user_id=user.pk, role__in=_REVIEWING_ROLES
    )
    return member.exists() or user_has_role(user, Role.ADMIN)


def campaigns_reviewable(viewer: User) -> QuerySet[Campaign]:
    """The campaigns whose escalations ``viewer`` may see (``visible_to``), by name."""
    campaigns = Campaign.objects.order_by("name")
    if user_has_role(viewer, Role.ADMIN):
        return campaigns
    theirs = CampaignMember.objects.filter(user_id=viewer.pk, role__in=_REVIEWING_ROLES)
    return campaigns.filter(Q(open_to_all=True) | Q(pk__in=theirs.values("campaign_id")))


def visible_to(escalations: QuerySet[Escalation], viewer: User | None) -> QuerySet[Escalation]:
    """Site admins see every campaign's escalations; experts those of open campaigns and of
    campaigns where they are expert (or admin) members."""
    if viewer is None or user_has_role(viewer, Role.ADMIN):
        return escalations
    theirs = CampaignMember.objects.filter(user_id=viewer.pk, role__in=_REVIEWING_ROLES)
    return escalations.filter(
        Q(campaign__open_to_all=True) | Q(campaign_id__in=theirs.values("campaign_id"))
    )


def pair_for_admin(*, pair_id: int, user: User) -> Pair:
    """The pair for a site admin, or for an admin member of its campaign; 404 otherwise."""
    pairs = Pair.objects.select_related("campaign")
    if user_has_role(user, Role.ADMIN):
        return get_object_or_404(pairs, pk=pair_id)
    theirs = CampaignMember.objects.filter(user_id=user.pk, role=CampaignMember.Role.ADMIN)
    if not user.is_authenticated:
        raise Http404("No such pair.")
    return get_object_or_404(pairs.filter(campaign_id__in=theirs.values("campaign_id")), pk=pair_id)


def campaign_for_expert(*, campaign_id: int, user: User) -> Campaign:
    """The campaign, for an expert who reviews it (open to all, or an expert or admin member;
    site admins always); 404 otherwise."""
    require_expert(user)
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    if not campaign.open_to_all and not reviews_campaign(user, campaign.pk):
        raise Http404("No such campaign.")
    return campaign


def pair_for_expert(*, pair_id: int, user: User) -> Pair:
    """The pair, for an expert who reviews its campaign; 404 otherwise."""
    require_expert(user)
    pair = get_object_or_404(Pair.objects.select_related("campaign"), pk=pair_id)
    if not pair.campaign.open_to_all and not reviews_campaign(user, pair.campaign_id):
        raise Http404("No such pair.")
    return pair
