"""Errors raised by annotation services; core.http turns them into HTTP responses."""

from __future__ import annotations

from core.errors import ApplicationError, Conflict


class AnnotationError(ApplicationError):
    """Base class; `code` is a stable machine-readable name."""

    code = "annotation_error"


class LeaseExpired(Conflict, AnnotationError):
    code = "lease_expired"


class AlreadyFinished(Conflict, AnnotationError):
    code = "already_finished"


class InvalidLabel(AnnotationError):
    code = "invalid_label"


class LabelLocked(Conflict, AnnotationError):
    """The label can no longer be changed: its grace period is over, or an expert decided."""

    code = "label_locked"
