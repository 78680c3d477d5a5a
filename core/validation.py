"""Bounds of what the databases store, for input checks shared by every app."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from rest_framework import serializers

# The widest integer either database stores (PostgreSQL bigint, SQLite INTEGER). A larger one
# raises OverflowError on SQLite and "out of range" on PostgreSQL, so input is checked first.
DB_INT_MAX = 2**63 - 1
DB_INT_MIN = -(2**63)
# Longest uploaded file name accepted: longer names answer 400. An upload is stored on disk
# under a uuid, not its name: Linux refuses names past 255 bytes, 128 letters such as "é".
UPLOAD_NAME_MAX = 200
# Room a multipart body takes beside its file: boundaries, part headers (the file's name is at
# most UPLOAD_NAME_MAX characters), the CSRF token and a few small fields.
UPLOAD_FORM_OVERHEAD_BYTES = 64 * 1024

_View = TypeVar("_View")


def upload_max_bytes(
    bound: Callable[[], int], setting: str, advice: str = ""
) -> Callable[[_View], _View]:
    """Mark a view (a function, or a DRF APIView class) as taking an upload of at most
    ``bound()`` bytes, named by ``setting`` in the refusal (``advice`` ends it).
    config.middleware.UploadBoundMiddleware answers 413 to a request whose Content-Length is
    over it before anything reads the body: Django's CSRF check reads a form post whole,
    writing its file to a temporary file."""

    def mark(view: _View) -> _View:
        view.upload_max_bytes = (bound, setting, advice)  # type: ignore[attr-defined]
        return view

    return mark


# A whole number as a form or query string spells it: ASCII digits, an optional sign and
# surrounding spaces. int() alone also reads "1_0" as 10 and other scripts' digits.
ASCII_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")


class DbIntegerField(serializers.IntegerField):
    """DRF's IntegerField bounded by what the database stores (an id, an offset, a filter)."""

    def __init__(self, **kwargs):  # noqa: ANN003, ANN204 - DRF's field signature
        kwargs.setdefault("max_value", DB_INT_MAX)
        kwargs.setdefault("min_value", DB_INT_MIN)
        super().__init__(**kwargs)


class IntegerOutOfRange(ValueError):
    """A number in the request beyond what the database stores; answered 400
    (config.middleware.RequestFaultMiddleware)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is out of range (at most {DB_INT_MAX})")


def int_param(raw: str | None, *, name: str = "a number") -> int | None:
    """A form or query parameter as an integer, None when it is not one (blank, not a number);
    IntegerOutOfRange when it is a number the database cannot hold."""
    if raw is None:
        return None
    raw = raw.strip()
    if not raw or len(raw) > 4300:  # int() refuses longer digit strings anyway
        return None
    if not ASCII_INTEGER.fullmatch(raw):
        return None
    value = int(raw)
    if not DB_INT_MIN <= value <= DB_INT_MAX:
        raise IntegerOutOfRange(name)
    return value
