"""Errors raised by reviewers services; views and the API translate them to HTTP statuses."""

from __future__ import annotations


class ReviewError(Exception):
    """Base class; `code` is a stable machine-readable name, `status` the HTTP status."""

    code = "review_error"
    status = 400


class ClaimUnavailable(ReviewError):
    """Another expert holds an unexpired claim, or the escalation is no longer open."""

    code = "claim_unavailable"
    status = 409


class ClaimRequired(ReviewError):
    """Deciding needs a claim of your own that has not expired."""

    code = "claim_required"
    status = 409


class AlreadyDecided(ReviewError):
    """The escalation has its adjudication; decisions are final."""

    code = "already_decided"
    status = 409


class ConflictOfInterest(ReviewError):
    """Nobody adjudicates a pair they labelled."""

    code = "conflict_of_interest"
    status = 403


class InvalidDecision(ReviewError):
    code = "invalid_decision"


class GoldNotAllowed(ReviewError):
    code = "gold_not_allowed"
