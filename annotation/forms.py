"""Forms for the annotator workspace. Preferences are in the orientation the annotator saw."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django import forms

from annotation.aspects import SIDES, AspectError, parse_aspects
from annotation.models import Campaign, ItemKind, Outcome
from annotation.services.labels import (
    FLAG_NAMES,
    RATIONALE_MAX_CHARS,
    SECONDS_SPENT_MAX,
    LabelInput,
    RewriteInput,
)
from annotation.services.rewrites import REWRITE_MAX_CHARS, InvalidRewrite, rewrite_length_check
from core.forms import TypedTextField

PREFERENCE_LABELS = {
    2: "A is much better",
    1: "A is better",
    0: "About the same",
    -1: "B is better",
    -2: "B is much better",
}
# Buttons run from A (left) to B (right); the n-th button answers to digit n and to the
# n-th letter of the home row, whatever the scale.
SHORTCUT_LETTERS = "asdfg"
# Outcomes beyond a preference, answered as one more choice of the same radio group.
OUTCOME_LABELS: dict[str, str] = {
    Outcome.BOTH_BAD: "Both are bad",
    Outcome.BOTH_GOOD: "Both are good",
}
OUTCOME_KEYS: dict[str, str] = {Outcome.BOTH_BAD: "b", Outcome.BOTH_GOOD: "o"}
CONFIDENCE_LABELS = {1: "Guess", 2: "Unsure", 3: "Fairly sure", 4: "Sure", 5: "Certain"}
FLAG_LABELS = {
    "unsafe": "Unsafe content",
    "broken": "Broken or unreadable",
    "cannot_judge": "I cannot judge this",
}
# A client clock may run a little ahead of the lease; beyond this the server's figure wins.
SECONDS_SPENT_SLACK = 5.0


@dataclass(frozen=True)
class PreferenceOption:
    value: int
    label: str
    digit: str
    letter: str
    side: str  # "a", "tie" or "b": which response the option favours, for styling
    checked: bool


@dataclass(frozen=True)
class AspectControl:
    """One aspect's two radio groups (response A, response B), as shown."""

    name: str
    label: str
    points: list[int]
    field_a: str
    field_b: str
    checked_a: str
    checked_b: str


def _preference_or_outcome(value: str) -> int | str:
    return value if value in OUTCOME_LABELS else int(value)


def aspect_field_name(aspect: str, side: str) -> str:
    return f"aspect__{aspect}__{side}"


@dataclass(frozen=True)
class RankCard:
    """One response of a ranking item as the workspace shows it, with its rank control."""

    position: int  # shown index, 0-based
    html: Any  # the rendered response (SafeString)
    rank: str  # the rank chosen so far ("" when none)
    ranks: tuple[str, ...]  # "1" .. "K"


class LabelForm(forms.Form):
    preference = forms.TypedChoiceField(
        coerce=_preference_or_outcome,
        error_messages={"required": "Choose which response is better."},
    )
    rationale = TypedTextField(typed_max=RATIONALE_MAX_CHARS, required=False, strip=False)
    confidence = forms.TypedChoiceField(
        coerce=int,
        required=False,
        empty_value=None,
        choices=[(level, str(level)) for level in CONFIDENCE_LABELS],
    )
    flags = forms.MultipleChoiceField(
        required=False, choices=[(name, FLAG_LABELS[name]) for name in FLAG_NAMES]
    )
    # Measured by the browser; never a reason to reject a label, so parsed leniently.
    seconds_spent = forms.CharField(required=False, max_length=40)

    def __init__(self, *args: object, campaign: Campaign, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.campaign = campaign
        self.fields["preference"].choices = [  # type: ignore[attr-defined]
            *((value, PREFERENCE_LABELS[value]) for value in campaign.allowed_preferences),
            *((outcome, OUTCOME_LABELS[outcome]) for outcome in self._outcomes),
        ]
        # A campaign whose aspects do not parse shows none (the admin form refuses them).
        try:
            self.aspects = parse_aspects(campaign.aspects) if campaign.takes_aspect_ratings else []
        except AspectError:
            self.aspects = []
        for aspect in self.aspects:
            for side in SIDES:
                self.fields[aspect_field_name(aspect.name, side)] = forms.TypedChoiceField(
                    coerce=int,
                    required=False,
                    empty_value=None,
                    choices=[(point, str(point)) for point in aspect.points],
                )
        if campaign.takes_rewrites:
            # No max_length: it would count each line break the browser posts as CRLF twice;
            # clean_rewrite_text applies the service's count instead.
            self.fields["rewrite_text"] = forms.CharField(required=False, strip=False)
            self.fields["rewrite_based_on"] = forms.ChoiceField(
                required=False, choices=[("a", "Response A"), ("b", "Response B")]
            )
        self.ranks_shown: list[str] = []
        if campaign.item_kind == ItemKind.RANKING:
            # A ranking item posts rank_0 .. rank_{K-1}, one per shown response (its select
            # sits in the response's card, which dragging may move); no preference is asked.
            preference = self.fields["preference"]
            preference.required = False
            preference.empty_value = None  # type: ignore[attr-defined]
            while f"rank_{len(self.ranks_shown)}" in self.data:
                self.ranks_shown.append(str(self.data[f"rank_{len(self.ranks_shown)}"]))

    # The textareas' maxlength: the browser counts a line break as one character, as
    # the services' checks do (core.text.typed_length).
    rewrite_max_chars = REWRITE_MAX_CHARS
    rationale_max_chars = RATIONALE_MAX_CHARS

    def clean_rewrite_text(self) -> str:
        text: str = self.cleaned_data["rewrite_text"]
        try:
            rewrite_length_check(text)
        except InvalidRewrite as refused:
            raise forms.ValidationError(refused.message) from refused
        return text

    @property
    def _outcomes(self) -> list[str]:
        return [outcome for outcome in self.campaign.allowed_outcomes if outcome in OUTCOME_LABELS]

    @property
    def outcome_options(self) -> list[PreferenceOption]:
        current = str(self["preference"].value()) if self.is_bound else None
        return [
            PreferenceOption(
                value=outcome,  # type: ignore[arg-type]
                label=OUTCOME_LABELS[outcome],
                digit="",
                letter=OUTCOME_KEYS[outcome],
                side=outcome,
                checked=current == outcome,
            )
            for outcome in self._outcomes
        ]

    @property
    def aspect_controls(self) -> list[AspectControl]:
        controls = []
        for aspect in self.aspects:
            names = [aspect_field_name(aspect.name, side) for side in SIDES]
            checked = [str(self[name].value() or "") if self.is_bound else "" for name in names]
            controls.append(
                AspectControl(aspect.name, aspect.label, list(aspect.points), *names, *checked)
            )
        return controls

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.campaign.item_kind == ItemKind.RANKING:
            ranks = self.ranks_shown
            # The selects offer "1" to "K"; str.isdigit would also pass "²" or 5,000 digits,
            # which int() then refuses.
            allowed = {str(rank) for rank in range(1, len(ranks) + 1)}
            if not ranks or any(rank not in allowed for rank in ranks):
                raise forms.ValidationError("Give every response a rank (1 is best).")
        if self.campaign.takes_rewrites and (data.get("rewrite_text") or "").strip():
            if not data.get("rewrite_based_on"):
                self.add_error("rewrite_based_on", "Say which response you rewrote.")
        return data

    def rank_cards(self, responses: Sequence[Any]) -> list[RankCard]:
        ranks = tuple(str(rank) for rank in range(1, len(responses) + 1))
        chosen = self.ranks_shown
        return [
            RankCard(
                position=position,
                html=html,
                rank=chosen[position]
                if position < len(chosen) and chosen[position] in ranks
                else "",
                ranks=ranks,
            )
            for position, html in enumerate(responses)
        ]

    def shown_ranking(self) -> list[list[int]] | None:
        """The ranks as groups of shown indices, best first (equal ranks tie)."""
        if self.campaign.item_kind != ItemKind.RANKING:
            return None
        groups: dict[int, list[int]] = {}
        for position, rank in enumerate(self.ranks_shown):
            groups.setdefault(int(rank), []).append(position)
        return [groups[rank] for rank in sorted(groups)]

    @property
    def preference_options(self) -> list[PreferenceOption]:
        current = str(self["preference"].value()) if self.is_bound else None
        options = []
        for position, value in enumerate(self.campaign.allowed_preferences):
            options.append(
                PreferenceOption(
                    value=value,
                    label=PREFERENCE_LABELS[value],
                    digit=str(position + 1),
                    letter=SHORTCUT_LETTERS[position],
                    side="a" if value > 0 else "b" if value < 0 else "tie",
                    checked=current == str(value),
                )
            )
        return options

    @property
    def confidence_options(self) -> list[tuple[int, str, bool]]:
        current = str(self["confidence"].value()) if self.is_bound else None
        return [(level, text, current == str(level)) for level, text in CONFIDENCE_LABELS.items()]

    @property
    def flag_options(self) -> list[tuple[str, str, bool]]:
        chosen = set(self["flags"].value() or []) if self.is_bound else set()
        return [(name, FLAG_LABELS[name], name in chosen) for name in FLAG_NAMES]

    def label_input(self, *, elapsed_seconds: float) -> LabelInput:
        """The cleaned label; `elapsed_seconds` is the server's time since the lease began."""
        data = self.cleaned_data
        choice = data.get("preference")  # None for a ranking item
        ratings: dict[str, dict[str, int]] = {}
        for aspect in self.aspects:
            for side in SIDES:
                value = data.get(aspect_field_name(aspect.name, side))
                if value is not None:
                    ratings.setdefault(aspect.name, {})[side] = value
        rewrite_text = data.get("rewrite_text") or ""
        return LabelInput(
            preference=0 if isinstance(choice, str) else choice,
            outcome=choice if isinstance(choice, str) else Outcome.PREFERENCE,
            ranking=self.shown_ranking(),
            rationale=data["rationale"],
            confidence=data["confidence"],
            flags=tuple(data["flags"]),
            seconds_spent=sane_seconds_spent(data["seconds_spent"], elapsed_seconds),
            aspect_ratings=ratings,
            rewrite=(
                RewriteInput(rewrite_text, data["rewrite_based_on"])
                if rewrite_text.strip()
                else None
            ),
        )


def sane_seconds_spent(reported: str | None, elapsed_seconds: float) -> float:
    """The browser's timing when it is plausible, else the server's time since the lease.

    The browser measures from when the pair was shown, which is the better figure; but it is
    client input, so it may not be negative, non-finite, or longer than the lease has existed.
    A lease held for days still reports at most the day that label_submit accepts.
    """
    elapsed = min(max(0.0, elapsed_seconds), SECONDS_SPENT_MAX)
    try:
        value = float(reported) if reported else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or value > elapsed + SECONDS_SPENT_SLACK:
        return round(elapsed, 3)
    return round(min(value, elapsed + SECONDS_SPENT_SLACK, SECONDS_SPENT_MAX), 3)
