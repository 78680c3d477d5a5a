"""Opening escalations: each one a recorded reason why humans must look again."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from annotation.models import Pair
from reviewers.models import Escalation


def escalation_open(*, pair: Pair, reason: str, detail: str = "", disagreement: float = 0.0
                    ) -> Escalation:
    """Open an escalation for the pair, or add the reason to the one already open."""
    existing = Escalation.objects.filter(pair=pair, status=Escalation.Status.OPEN).first()
    if existing is None:
        try:
            with transaction.atomic():
                escalation = Escalation.objects.create(
                    campaign_id=pair.campaign_id,
                    pair=pair,
                    reason=reason,
                    detail=detail,
                    disagreement=disagreement,
                )
        except IntegrityError:
            # Another transaction opened one first (partial unique constraint).
            existing = Escalation.objects.get(pair=pair, status=Escalation.Status.OPEN)
        else:
            Pair.objects.filter(pk=pair.pk).update(status=Pair.Status.ESCALATED)
            return escalation
    if reason != existing.reason and reason not in existing.detail:
        existing.detail = f"{existing.detail}\nalso: {reason} {detail}".strip()
        existing.save(update_fields=["detail"])
    Pair.objects.filter(pk=pair.pk).update(status=Pair.Status.ESCALATED)
    return existing
