"""Judgment assistance: recording that an annotator was shown the model's view."""

from __future__ import annotations

from annotation.models import Assignment


def model_view_record_shown(*, assignment: Assignment) -> bool:
    """Mark the assignment as having seen the model's view; only a submitted one can."""
    updated = Assignment.objects.filter(
        pk=assignment.pk, status=Assignment.Status.SUBMITTED
    ).update(model_view_shown=True)
    if updated:
        assignment.model_view_shown = True
    return bool(updated)
