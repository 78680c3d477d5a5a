"""The review page: an escalated pair's labels, evidence and attributes as an expert reads them."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.models import User

from annotation.models import Campaign, Evidence, Label, Outcome, Pair
from annotation.roles import Role, user_has_role
from annotation.services.tools import evidence_line
from reviewers import hooks
from reviewers.models import Adjudication, Escalation
from reviewers.selectors.queue import claim_state

EVIDENCE_SUMMARY_CHARS = 240

PREFERENCE_WORDS = {
    2: "A much better",
    1: "A better",
    0: "Tie",
    -1: "B better",
    -2: "B much better",
}


def preference_words(preference: int | None, *, campaign: Campaign) -> str:
    if preference is None:
        return "—"
    if len(campaign.allowed_preferences) < 5 and preference in (1, -1):
        return "A" if preference > 0 else "B"
    return PREFERENCE_WORDS.get(preference, str(preference))


def evidence_summary(payload: Any, *, kind: str = "") -> str:
    """A one-line account of an evidence payload, whatever tool produced it.

    Evidence of the annotator tools reads as the export and the label's summary read it
    (`evidence_line`): a code run's outcome is the program's ("timeout", "tests fail"), not the
    run's bookkeeping state, which is "done" whatever the program did."""
    if isinstance(payload, dict) and kind in Evidence.Kind.values:
        text = evidence_line(Evidence(kind=kind, payload=payload))
    elif isinstance(payload, dict):
        preferred = ("query", "title", "url", "language", "status", "exit_code", "prompt")
        parts = [
            f"{key}: {payload[key]}" for key in preferred if payload.get(key) not in (None, "")
        ]
        if not parts:
            parts = [f"{key}: {value}" for key, value in payload.items()]
        text = "; ".join(_flat(part) for part in parts)
    else:
        text = _flat(json.dumps(payload, default=str))
    if len(text) > EVIDENCE_SUMMARY_CHARS:
        text = text[: EVIDENCE_SUMMARY_CHARS - 1] + "…"
    return text


def _flat(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return " ".join(text.split())


def ranking_words(ranking: list[list[int]]) -> str:
    """A canonical ranking as the expert page writes it, responses numbered from 1:
    "2 > 1 = 3 > 4" (response 2 best, 1 and 3 tied)."""
    return " > ".join(" = ".join(str(index + 1) for index in group) for group in ranking)


def escalation_review(*, escalation: Escalation, viewer: User) -> dict[str, Any]:
    """Everything an expert needs to decide, in canonical orientation (A and B as imported).

    Annotators appear as "Annotator 1, 2, …" in the order they labelled; only admins also see
    usernames.
    """
    pair = escalation.pair
    campaign = escalation.campaign
    show_names = user_has_role(viewer, Role.ADMIN)
    entries = _label_entries(pair, campaign=campaign, show_names=show_names)
    attributes = [
        {"name": name, "label": label, "value": getattr(pair, name)}
        for name, label in (
            ("task_category", "Task category"),
            ("objectivity", "Objectivity"),
            ("controversiality", "Controversiality"),
            ("desired_attributes", "Desired attributes"),
            ("annotation_guideline", "Annotation guideline"),
        )
    ]
    adjudication = getattr(escalation, "adjudication", None)
    return {
        "escalation": escalation,
        "pair": pair,
        "campaign": campaign,
        "reasons": [
            line
            for line in [escalation.get_reason_display(), *escalation.detail.splitlines()]
            if line
        ],
        "labels": entries,
        "attributes": attributes,
        "prediction": hooks.model_prediction.first(pair=pair),
        "claim": claim_state(escalation, viewer=viewer),
        "adjudication": adjudication,
        "decision_words": _decision_words(adjudication, campaign=campaign),
        "choices": [
            (value, preference_words(value, campaign=campaign))
            for value in sorted(campaign.allowed_preferences, reverse=True)
        ],
        "show_names": show_names,
    }


def _decision_words(adjudication: Adjudication | None, *, campaign: Campaign) -> str | None:
    """The decision as the page writes it: a ranking item's ranking in the responses' numbers
    (its ``preference``, response 0 against response 1, is no A/B verdict), else the preference."""
    if adjudication is None:
        return None
    if adjudication.ranking is not None:
        return ranking_words(adjudication.ranking)
    return preference_words(adjudication.preference, campaign=campaign)


def _shown_as(label: Label) -> str:
    """How the annotator saw the responses, when not as imported: their rationale speaks of
    what they saw ("A" for the response on the left, "Response 1" for the first one shown),
    while the page and its verdicts speak in canonical order. "" when they saw them as here."""
    display_order = label.assignment.display_order
    if display_order:  # a ranking item's label
        if list(display_order) == sorted(display_order):
            return ""
        order = ", ".join(str(index + 1) for index in display_order)
        return (
            f"Saw the responses in the order {order}: their Response 1 is Response "
            f"{display_order[0] + 1} here, and so on."
        )
    if label.shown_first == "b":
        return "Saw B on the left, as A: in the rationale, A means B here and B means A."
    return ""


def _label_kind(label: Label) -> str:
    # A quarantined annotator's label is shown, marked, so that the expert does not read it as
    # one of the votes the consensus counted.
    if label.set_aside:
        return "set aside"
    if label.is_retest:
        return "re-test"
    return "gold check" if label.is_gold_check else ""


def _label_entries(pair: Pair, *, campaign: Campaign, show_names: bool) -> list[dict[str, Any]]:
    """The pair's labels as the review page lists them, numbered in the order they came;
    ``kind`` marks those the consensus did not count (re-test, gold check, set aside)."""
    labels = (
        Label.objects.filter(pair=pair)
        .select_related("annotator", "assignment")
        .prefetch_related("evidence")
        .order_by("created_at", "id")
    )
    entries = []
    for number, label in enumerate(labels, start=1):
        kind = _label_kind(label)
        entries.append(
            {
                "number": number,
                "name": f"Annotator {number}",
                "username": label.annotator.username if show_names else None,
                "preference": label.preference,
                "preference_words": (
                    ranking_words(label.ranking)
                    if label.ranking is not None
                    else preference_words(label.preference, campaign=campaign)
                    if label.outcome == Outcome.PREFERENCE
                    else label.get_outcome_display()
                ),
                "outcome": label.outcome,
                "ranking": label.ranking,
                # (aspect, sides) pairs, not the dict: a template reading ``.items`` of a dict
                # with an aspect named "items" would get that aspect's ratings.
                "aspect_ratings": list((label.aspect_ratings or {}).items()),
                "rationale": label.rationale,
                # The rationale's orientation: what the annotator saw on the left, or in what
                # order (canonical indices by position); ``shown_as`` says it in words.
                "shown_first": label.shown_first,
                "display_order": label.assignment.display_order,
                "shown_as": _shown_as(label),
                "confidence": label.confidence,
                "flags": label.flags,
                "seconds_spent": label.seconds_spent,
                "kind": kind,
                "evidence": [
                    {
                        "kind": item.kind,
                        "kind_display": item.get_kind_display(),
                        "summary": evidence_summary(item.payload, kind=item.kind),
                    }
                    for item in label.evidence.all()
                ],
            }
        )
    return entries
