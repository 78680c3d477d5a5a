"""Errors raised by annotation services; views translate them to HTTP statuses."""

from __future__ import annotations


class AnnotationError(Exception):
    """Base class; `code` is a stable machine-readable name."""

    code = "annotation_error"


class LeaseExpired(AnnotationError):
    code = "lease_expired"


class AlreadyFinished(AnnotationError):
    code = "already_finished"


class InvalidLabel(AnnotationError):
    code = "invalid_label"


class LabelLocked(AnnotationError):
    """The label can no longer be changed: its grace period is over, or an expert decided."""

    code = "label_locked"
