"""Reads shared by the rooms of the scoring app (loop, datasets, dashboard)."""

from __future__ import annotations

from annotation.models import Campaign
from scoring.models import ModelVersion


def active_model_version(*, campaign: Campaign) -> ModelVersion | None:
    """The campaign's active model version (at most one: a partial unique constraint), or None.

    The one place that says which version is active: training, scoring, rounds, the registry,
    exports and the model pages all ask here.
    """
    return ModelVersion.objects.filter(campaign=campaign, is_active=True).first()
