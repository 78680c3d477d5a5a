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
