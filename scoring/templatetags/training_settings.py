"""``{% retrain_settings campaign form %}``: the Retrain form's training settings, with their
defaults (or the campaign's last choice) filled in."""

from __future__ import annotations

from typing import Any

from django import template

from annotation.models import Campaign
from scoring.loop.training import training_settings_for
from scoring.loop.training_fields import RetrainForm

register = template.Library()


@register.inclusion_tag("scoring/_retrain_settings.html")
def retrain_settings(campaign: Campaign, form: Any = None) -> dict[str, Any]:
    if not isinstance(form, RetrainForm):
        form = RetrainForm(initial=training_settings_for(campaign=campaign))
    return {"form": form}
