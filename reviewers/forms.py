from __future__ import annotations

from typing import Any

from django import forms

from annotation.models import Campaign, ItemKind
from annotation.rankings import ranking_validate
from core.forms import TypedTextField
from reviewers.models import Adjudication
from reviewers.selectors.review import preference_words
from reviewers.services.adjudications import ADJUDICATION_NOTE_MAX_CHARS

DISCARD = "discard"
RANKING = "ranking"


class AdjudicationForm(forms.Form):
    """One choice: a canonical preference, or discard the pair as ambiguous; and a note."""

    verdict = forms.ChoiceField(widget=forms.RadioSelect, label="Decision")
    note = TypedTextField(
        typed_max=ADJUDICATION_NOTE_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Why: what decided it, or why it cannot be decided.",
    )

    ranking = forms.CharField(
        required=False,
        max_length=200,
        help_text="Responses by number, best first: '>' between ranks, '=' for a tie "
        "(2 > 1 = 3 > 4).",
    )

    def __init__(self, *args: Any, campaign: Campaign, size: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A ranking item (``size`` responses) is decided by a ranking, not an A/B choice.
        self.size = size if campaign.item_kind == ItemKind.RANKING else 0
        if self.size:
            choices = [(RANKING, "Decide the ranking below")]
        else:
            del self.fields["ranking"]
            choices = [
                (str(value), preference_words(value, campaign=campaign))
                for value in sorted(campaign.allowed_preferences, reverse=True)
            ]
        choices.append((DISCARD, "Discard as ambiguous"))
        verdict = self.fields["verdict"]
        assert isinstance(verdict, forms.ChoiceField)  # noqa: S101 - declared above
        verdict.choices = choices

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        if self.size and self.cleaned_data.get("verdict") == RANKING:
            text = self.cleaned_data.get("ranking", "")
            try:
                numbered = [[int(n) for n in group.split("=")] for group in text.split(">")]
            except ValueError:
                self.add_error("ranking", "Write response numbers with '>' and '=' only.")
                return cleaned
            numbers = [number for group in numbered for number in group]
            missing = sorted(set(range(1, self.size + 1)) - set(numbers))
            extra = sorted({n for n in numbers if numbers.count(n) > 1 or not 0 < n <= self.size})
            if missing or extra:
                problems = [f"missing: {', '.join(map(str, missing))}"] if missing else []
                if extra:
                    problems.append(f"repeated or unknown: {', '.join(map(str, extra))}")
                self.add_error(
                    "ranking",
                    f"Rank each of the responses 1 to {self.size} once ({'; '.join(problems)}).",
                )
                return cleaned
            groups = [[number - 1 for number in group] for group in numbered]
            self.cleaned_data["ranking_groups"] = ranking_validate(groups, size=self.size)
        return cleaned

    def ranking_groups(self) -> list[list[int]] | None:
        """The decided ranking in canonical indices (0-based), or None."""
        return self.cleaned_data.get("ranking_groups")

    def decision(self) -> tuple[str, int | None]:
        """(Adjudication.Decision, canonical preference or None) from the cleaned verdict."""
        verdict = self.cleaned_data["verdict"]
        if verdict == DISCARD:
            return Adjudication.Decision.DISCARD, None
        if verdict == RANKING:
            return Adjudication.Decision.PREFERENCE, None
        return Adjudication.Decision.PREFERENCE, int(verdict)


class ExpertSettingsForm(forms.Form):
    notify_by_email = forms.BooleanField(
        required=False, label="E-mail me about new escalations (at most one e-mail an hour)"
    )
    domains = forms.CharField(
        required=False,
        max_length=2000,
        label="Only in these task categories",
        help_text=(
            "Comma-separated, e.g. math, code. Escalations of these categories reach you at "
            "once, by e-mail too; the others once their campaign's domain wait is over (60 "
            "minutes by default). Empty: e-mail about every category, and see each escalation "
            "once its wait is over."
        ),
    )

    def domain_list(self) -> list[str]:
        return [part.strip() for part in self.cleaned_data["domains"].split(",") if part.strip()]


class QualityListingForm(forms.Form):
    """Which page of the quality page's annotators: a user-name filter, "flagged only" and the
    cursor of a page link (as the members page's ``ListingForm``)."""

    q = forms.CharField(max_length=150, required=False, strip=True)
    flagged = forms.BooleanField(required=False)
    after = forms.CharField(max_length=2000, required=False)
    before = forms.CharField(max_length=2000, required=False)
