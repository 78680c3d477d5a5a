"""The training settings (``scoring.reward_model.job_settings``) as DRF and Django form fields,
for the retrain API and the dashboard's Retrain form."""

from __future__ import annotations

from typing import Any

from django import forms
from rest_framework import serializers

from scoring.reward_model.job_settings import TRAINING_SETTINGS, Setting


def _bounds(setting: Setting, kind: type[int] | type[float]) -> dict[str, Any]:
    """min_value / max_value for a field, only those the setting has."""
    bounds = {"min_value": setting.minimum, "max_value": setting.maximum}
    return {name: kind(value) for name, value in bounds.items() if value is not None}


def _help(setting: Setting) -> str:
    default = "none" if setting.default in (None, "") else setting.default
    return f"{setting.help} Default: {default}."


def serializer_fields_for_settings() -> dict[str, serializers.Field]:
    fields: dict[str, serializers.Field] = {}
    for setting in TRAINING_SETTINGS:
        common: dict[str, Any] = {"required": False, "help_text": _help(setting)}
        if setting.kind == "choice":
            # null or "" means the default, as for every other setting (job_settings).
            field: serializers.Field = serializers.ChoiceField(
                choices=setting.choices, allow_null=True, allow_blank=True, **common
            )
        elif setting.kind == "bool":
            field = serializers.BooleanField(**common, allow_null=True)
        elif setting.kind == "path":
            field = serializers.CharField(**common, allow_blank=True, allow_null=True)
        elif setting.kind == "int":
            field = serializers.IntegerField(**common, allow_null=True, **_bounds(setting, int))
        else:
            field = serializers.FloatField(**common, allow_null=True, **_bounds(setting, float))
        fields[setting.name] = field
    return fields


class RetrainForm(forms.Form):
    """The dashboard's Retrain form; initial values come from ``training_settings_for``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for setting in TRAINING_SETTINGS:
            common: dict[str, Any] = {
                "required": False,
                "label": setting.label,
                "help_text": _help(setting),
            }
            if setting.kind == "choice":
                field: forms.Field = forms.ChoiceField(
                    choices=[(choice, choice) for choice in setting.choices], **common
                )
            elif setting.kind == "bool":
                field = forms.BooleanField(**common)
            elif setting.kind == "path":
                field = forms.CharField(**common, max_length=1000)
            elif setting.kind == "int":
                field = forms.IntegerField(**common, **_bounds(setting, int))
            else:
                field = forms.FloatField(
                    **common, min_value=setting.minimum, max_value=setting.maximum
                )
            self.fields[setting.name] = field
