"""Judgment assistance: recording that an annotator was shown the model's view."""

from __future__ import annotations

from typing import Any

from annotation.models import Assignment
from scoring.loop.model_view import model_view_for_assignment


def model_view_record_shown(*, assignment: Assignment) -> bool:
    """Mark the assignment as having seen the model's view; only a submitted one can."""
    updated = Assignment.objects.filter(
        pk=assignment.pk, status=Assignment.Status.SUBMITTED
    ).update(model_view_shown=True)
    if updated:
        assignment.model_view_shown = True
    return bool(updated)


def model_view_reveal(*, assignment: Assignment) -> dict[str, Any] | None:
    """The model's view for an annotator who just submitted, recorded as shown; None when not
    allowed or no version scored the pair. Registered on ``annotation.hooks``."""
    view = model_view_for_assignment(assignment)
    if view is None:
        return None
    model_view_record_shown(assignment=assignment)
    return view
