"""Errors raised by reviewers services; core.http turns them into HTTP responses."""

from __future__ import annotations

from core.errors import ApplicationError, BadRequest, Conflict, Forbidden


class ReviewError(ApplicationError):
    """Base class; `code` is a stable machine-readable name, `status` the HTTP status."""

    code = "review_error"
    status = 400


class ClaimUnavailable(Conflict, ReviewError):
    """Another expert holds an unexpired claim, or the escalation is no longer open."""

    code = "claim_unavailable"
    status = 409


class ClaimRequired(Conflict, ReviewError):
    """Deciding needs a claim of your own that has not expired."""

    code = "claim_required"
    status = 409


class AlreadyDecided(Conflict, ReviewError):
    """The escalation has its adjudication; decisions are final."""

    code = "already_decided"
    status = 409


class ConflictOfInterest(Forbidden, ReviewError):
    """Nobody adjudicates a pair they labelled."""

    code = "conflict_of_interest"
    status = 403


class InvalidDecision(BadRequest, ReviewError):
    code = "invalid_decision"


class GoldNotAllowed(BadRequest, ReviewError):
    code = "gold_not_allowed"
