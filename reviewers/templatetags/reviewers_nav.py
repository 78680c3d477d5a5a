"""The expert queue's count of open escalations, for the top navigation on every page."""

from __future__ import annotations

from django import template

from reviewers.models import Escalation

register = template.Library()


@register.simple_tag
def open_escalations_count() -> int:
    # Exact on every page: open escalations are few (they are decided, or withdrawn), and a
    # partial index on open ones serves the count.
    return Escalation.objects.filter(status=Escalation.Status.OPEN).count()
