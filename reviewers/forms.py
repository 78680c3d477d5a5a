from __future__ import annotations

from typing import Any

from django import forms

from annotation.models import Campaign
from reviewers.models import Adjudication
from reviewers.selectors import preference_words

DISCARD = "discard"


class AdjudicationForm(forms.Form):
    """One choice: a canonical preference, or discard the pair as ambiguous; and a note."""

    verdict = forms.ChoiceField(widget=forms.RadioSelect, label="Decision")
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=20_000,
        help_text="Why: what decided it, or why it cannot be decided.",
    )

    def __init__(self, *args: Any, campaign: Campaign, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [
            (str(value), preference_words(value, campaign=campaign))
            for value in sorted(campaign.allowed_preferences, reverse=True)
        ]
        choices.append((DISCARD, "Discard as ambiguous"))
        verdict = self.fields["verdict"]
        assert isinstance(verdict, forms.ChoiceField)  # noqa: S101 - declared above
        verdict.choices = choices

    def decision(self) -> tuple[str, int | None]:
        """(Adjudication.Decision, canonical preference or None) from the cleaned verdict."""
        verdict = self.cleaned_data["verdict"]
        if verdict == DISCARD:
            return Adjudication.Decision.DISCARD, None
        return Adjudication.Decision.PREFERENCE, int(verdict)


class ExpertSettingsForm(forms.Form):
    notify_by_email = forms.BooleanField(
        required=False, label="E-mail me about new escalations (at most one e-mail an hour)"
    )
    domains = forms.CharField(
        required=False,
        max_length=2000,
        label="Only in these task categories",
        help_text="Comma-separated, e.g. math, code. Empty: every category.",
    )

    def domain_list(self) -> list[str]:
        return [part.strip() for part in self.cleaned_data["domains"].split(",") if part.strip()]
