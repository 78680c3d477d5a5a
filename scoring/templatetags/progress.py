"""A share as whole percent for people (``core.formatting.whole_percent``)."""

from __future__ import annotations

from django import template

from core.formatting import whole_percent as _whole_percent

register = template.Library()


@register.filter
def whole_percent(share: float | None) -> str:
    """``{{ job.progress|whole_percent }} %``: 99 % until the job is done."""
    return "" if share is None else str(_whole_percent(float(share)))
