"""The expert queue's count of open escalations, for the top navigation on every page."""

from __future__ import annotations

from django import template

from reviewers.selectors.queue import escalation_queue

register = template.Library()


@register.simple_tag(takes_context=True)
def open_escalations_count(context: template.Context) -> int:
    # Exact on every page: open escalations are few (they are decided, or withdrawn), and a
    # partial index on open ones serves the count. Only those the queue shows the user: their
    # campaigns, and their domains until the campaign's domain wait is over.
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return 0
    return escalation_queue(viewer=user).count()
