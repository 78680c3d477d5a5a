"""Reads for the data products: export snapshots."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import Http404

from annotation.models import Campaign
from annotation.selectors import is_campaign_admin
from scoring.models import ExportSnapshot


def exports_of_campaign(*, campaign: Campaign) -> QuerySet[ExportSnapshot]:
    """The campaign's export snapshots, newest first."""
    return (
        ExportSnapshot.objects.filter(campaign=campaign)
        .select_related("job", "campaign")
        .order_by("-version", "-id")
    )


def exports_recent(*, campaign: Campaign, limit: int = 10) -> list[ExportSnapshot]:
    return list(exports_of_campaign(campaign=campaign)[:limit])


def export_for_admin(*, export_id: int, user: User) -> ExportSnapshot:
    """The snapshot, for an admin of its campaign (site admin or admin member, who may start
    exports); anyone else is told it does not exist (no probing)."""
    snapshot = ExportSnapshot.objects.select_related("job", "campaign").filter(pk=export_id).first()
    if snapshot is None or not is_campaign_admin(campaign_id=snapshot.campaign_id, user=user):
        raise Http404("No such export.")
    return snapshot
