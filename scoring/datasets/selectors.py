"""Reads for the data products: export snapshots."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404

from annotation.models import Campaign
from annotation.roles import Role, user_has_role
from scoring.models import ExportSnapshot


def exports_recent(*, campaign: Campaign, limit: int = 10) -> list[ExportSnapshot]:
    return list(
        ExportSnapshot.objects.filter(campaign=campaign)
        .select_related("job", "campaign")
        .order_by("-version")[:limit]
    )


def export_for_admin(*, export_id: int, user: AbstractBaseUser) -> ExportSnapshot:
    """The snapshot, for admins; anyone else is told it does not exist (no probing)."""
    if not user_has_role(user, Role.ADMIN):
        raise Http404("No such page.")
    snapshot = ExportSnapshot.objects.select_related("job", "campaign").filter(pk=export_id).first()
    if snapshot is None:
        raise Http404("No such export.")
    return snapshot
