"""Rewritten answers: a human-corrected copy of one of a pair's responses."""

from __future__ import annotations

from typing import Any

from annotation.errors import InvalidLabel
from annotation.models import Assignment, Campaign, Label, Pair, Rewrite
from core.text import line_breaks_as_in, typed_length, unchanged_copy

REWRITE_MAX_CHARS = 50_000
# The refusal of a longer one: the service's, and the APIs' for a text past their bound.
REWRITE_TOO_LONG = f"a rewritten answer is at most {REWRITE_MAX_CHARS:,} characters"


class InvalidRewrite(InvalidLabel):
    code = "invalid_rewrite"


def rewrite_check(*, campaign: Campaign, text: str, based_on: str) -> None:
    """Raise InvalidRewrite unless the campaign takes rewrites and this one is well formed."""
    if not campaign.takes_rewrites:
        raise InvalidRewrite("this campaign does not take rewritten answers")
    if based_on not in Rewrite.BasedOn.values:
        raise InvalidRewrite("based_on must be 'a' or 'b'")
    if not text.strip():
        raise InvalidRewrite("a rewritten answer cannot be empty")
    rewrite_length_check(text)


def rewrite_length_check(text: str) -> None:
    """Raise InvalidRewrite if the rewrite is longer than REWRITE_MAX_CHARS, counting a line
    break as one character, CRLF or LF (core.text.typed_length): a browser posts a textarea's
    lines joined by CRLF, and the rewrite is stored with the original's line breaks. The
    workspace form checks with this too, so that the page and the service count alike."""
    if typed_length(text) > REWRITE_MAX_CHARS:
        raise InvalidRewrite(REWRITE_TOO_LONG)


def rewrite_create(
    *,
    pair_id: int,
    campaign: Campaign,
    author_id: Any,
    text: str,
    based_on: str,
    label: Label | None = None,
    assignment: Assignment | None = None,
) -> Rewrite:
    """Store a rewrite of the pair's ``based_on`` response (canonical side).

    Its line breaks are stored as the original's. A text that is the original unchanged is
    refused (InvalidRewrite): the workspace copies the response into the box, and submitting
    it as it was would export (X ≻ X) and take the pair out of the rewrite queue. An identical
    text from the same author for the same pair is stored once, per label (a resubmitted form,
    a changed label that keeps its rewrite; an author's rewrite as an expert is not the one of
    their label, which a change of the label withdraws).
    """
    rewrite_check(campaign=campaign, text=text, based_on=based_on)
    column = "response_a" if based_on == Rewrite.BasedOn.A else "response_b"
    original = Pair.objects.filter(pk=pair_id).values_list(column, flat=True).first() or ""
    text = line_breaks_as_in(text, original)
    if unchanged_copy(text, original):
        raise InvalidRewrite(
            "the rewritten answer is the response it started from, unchanged: edit it, or "
            "send no rewrite"
        )
    existing = Rewrite.objects.filter(
        pair_id=pair_id, author_id=author_id, based_on=based_on, text=text, label=label
    ).first()
    if existing is not None:
        return existing
    rewrite = Rewrite(
        pair_id=pair_id,
        campaign=campaign,
        author_id=author_id,
        text=text,
        based_on=based_on,
        label=label,
        assignment=assignment,
    )
    rewrite.full_clean(exclude=["pair", "campaign", "author", "label", "assignment"])
    rewrite.save()
    return rewrite


def rewrite_of_label_replace(
    *,
    label: Label,
    assignment: Assignment,
    text: str | None,
    based_on: str = "",
) -> Rewrite | None:
    """Make ``text`` (on the canonical side ``based_on``) the label's one rewrite, or leave it
    none when ``text`` is None; called when the label's values change.

    The label's earlier rewrites are deleted, not kept beside it: each Rewrite is a training
    row of the export (rewrite ≻ original), so a draft the annotator corrected or withdrew must
    not stay one. The label's history keeps the rewrite it replaced. An identical text on the
    same side keeps its row, and its id.
    """
    kept = None
    if text is not None:
        kept = rewrite_create(
            pair_id=label.pair_id,
            campaign=assignment.campaign,
            author_id=label.annotator_id,
            text=text,
            based_on=based_on,
            label=label,
            assignment=assignment,
        )
    earlier = Rewrite.objects.filter(label=label)
    if kept is not None:
        earlier = earlier.exclude(pk=kept.pk)
    earlier.delete()
    return kept


def rewrite_by_expert(*, pair: Pair, expert: Any, text: str, based_on: str) -> Rewrite:
    """An expert's rewrite of a pair (for example one whose consensus is "both bad")."""
    return rewrite_create(
        pair_id=pair.pk, campaign=pair.campaign, author_id=expert.pk, text=text, based_on=based_on
    )
