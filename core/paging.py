"""Keyset paging for the API's lists, as the expert queue pages (``reviewers.selectors.queue``).

A list endpoint answers one page: its body stays the JSON list of rows, the neighbouring pages
are in the ``Link`` header (RFC 8288: rel "next", "prev" and, past the first page, "first"),
and a page is asked for with ``limit`` (1 to 500, default 100) and the cursor ``after`` or
``before`` taken from those links. A cursor is the sort key of the page's last (or first) row,
so a page is one indexed read of at most ``limit + 1`` rows however deep it is, and rows added
or removed meanwhile shift nothing.

``keyset_page`` pages a queryset ordered by model fields (the last of them unique, a primary
key, so that the order is total); ``keyset_list_page`` pages a list already in memory (a
stored report) by a key of its rows the same way. ``ListPageSerializer``, ``page_parameters``,
``page_response`` and ``list_page_response`` give an APIView the same query parameters, schema
and response. A list whose cursors clients already hold in another format (the expert queue's)
pages with the same ``keyset_page``, given its own ``CursorFormat``.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlencode

from django.db import models
from django.db.models import Q, QuerySet
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import BadRequest
from core.text import encodes_as_utf8

T = TypeVar("T", bound=models.Model)
R = TypeVar("R")  # a row of a page: a model instance, or a row of a list in memory

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 500
_CURSOR_MAX_CHARS = 2000
_BIGINT_MAX = 2**63 - 1


@dataclass(frozen=True)
class KeysetPage(Generic[R]):
    """One page of rows, and where its neighbours start (None where there is no such page)."""

    rows: list[R]
    next_cursor: str | None  # the page after: rows after the last one shown
    previous_cursor: str | None  # the page before: rows before the first one shown
    first: bool  # the list's first page


class ListPageSerializer(serializers.Serializer):
    """The paging parameters of a list endpoint (extend it with the endpoint's filters)."""

    limit = serializers.IntegerField(
        min_value=1, max_value=PAGE_SIZE_MAX, default=PAGE_SIZE_DEFAULT
    )
    after = serializers.CharField(required=False, allow_blank=True, max_length=_CURSOR_MAX_CHARS)
    before = serializers.CharField(required=False, allow_blank=True, max_length=_CURSOR_MAX_CHARS)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("after") and data.get("before"):
            raise serializers.ValidationError("Give after or before, not both.")
        return data


def page_parameters() -> list[OpenApiParameter]:
    """The OpenAPI description of ``ListPageSerializer`` and of the Link header."""
    return [
        OpenApiParameter(
            "limit",
            int,
            description=f"Page size, 1 to {PAGE_SIZE_MAX} (default {PAGE_SIZE_DEFAULT}).",
        ),
        OpenApiParameter(
            "after",
            str,
            description="The page after this cursor: take it from the Link header's "
            'rel="next" URL.',
        ),
        OpenApiParameter(
            "before",
            str,
            description="The page before this cursor: take it from the Link header's "
            'rel="prev" URL.',
        ),
        OpenApiParameter(
            "Link",
            str,
            OpenApiParameter.HEADER,
            response=[200],
            description='The neighbouring pages: <url>; rel="next", <url>; rel="prev" '
            'and, past the first page, <url>; rel="first"; absent rels mean no such page.',
        ),
    ]


def _model_field(model: type[models.Model], path: str) -> models.Field:
    """The field that ``path`` ("user__username") names, following relations from ``model``."""
    *relations, name = path.split("__")
    for relation in relations:
        model = model._meta.get_field(relation).related_model  # type: ignore[assignment]
    return model._meta.get_field(name)  # type: ignore[return-value]


def _value(row: models.Model, path: str) -> Any:
    value: Any = row
    for part in path.split("__"):
        value = getattr(value, part)
    return value


def _key(row: models.Model, order: Sequence[str]) -> list[Any]:
    """The row's values of the order's fields: its place in the list."""
    return [_value(row, field.lstrip("-")) for field in order]


def _values_encode(key: Sequence[Any]) -> str:
    values = [value.isoformat() if isinstance(value, datetime) else value for value in key]
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _invalid_cursor(param: str) -> BadRequest:
    return BadRequest(f"{param} is not a position in this list: follow the page links.")


def _values_decode(raw: str, *, length: int, param: str) -> list[Any]:
    """The JSON list of ``length`` values of a cursor; BadRequest for anything else."""
    try:
        text = base64.urlsafe_b64decode(raw.strip() + "=" * (-len(raw.strip()) % 4))
        values = json.loads(text)
    except (binascii.Error, ValueError):
        raise _invalid_cursor(param) from None
    if not isinstance(values, list) or len(values) != length:
        raise _invalid_cursor(param)
    return values


def _cursor_decode(
    raw: str, model: type[models.Model], order: Sequence[str], *, param: str
) -> list[Any]:
    """A cursor of ``_values_encode`` back into the order's values; BadRequest for anything
    else (an edited cursor, another list's)."""
    invalid = _invalid_cursor(param)
    values = _values_decode(raw, length=len(order), param=param)
    decoded: list[Any] = []
    for field_path, value in zip(order, values, strict=True):
        field = _model_field(model, field_path.lstrip("-"))
        if isinstance(field, models.DateTimeField):
            try:
                moment = datetime.fromisoformat(value) if isinstance(value, str) else None
            except ValueError:
                moment = None
            if moment is None or moment.tzinfo is None:
                raise invalid
            decoded.append(moment)
        elif isinstance(field, models.IntegerField | models.AutoField):
            if type(value) is not int or abs(value) > _BIGINT_MAX:
                raise invalid
            decoded.append(value)
        elif isinstance(field, models.CharField | models.TextField):
            # No stored value holds a NUL or a lone surrogate ("\ud800", which JSON escapes),
            # and the database refuses either in a query (a 500).
            if not isinstance(value, str) or "\x00" in value or not encodes_as_utf8(value):
                raise invalid
            decoded.append(value)
        else:  # pragma: no cover - an order on another kind of field is a programming error
            raise TypeError(f"cannot page by {field_path!r} ({type(field).__name__})")
    return decoded


class CursorFormat(Protocol):
    """How a list writes a row's place (its values of the order's fields) as a cursor and
    reads it back: ``decode`` raises BadRequest, naming ``param``, for anything ``encode``
    did not write for this list (an edited cursor, another list's)."""

    def encode(self, key: list[Any]) -> str: ...

    def decode(self, raw: str, *, param: str) -> list[Any]: ...


@dataclass(frozen=True)
class JsonCursor:
    """The API lists' cursors: the order's values as base64 JSON (``_values_encode``)."""

    model: type[models.Model]
    order: Sequence[str]

    def encode(self, key: list[Any]) -> str:
        return _values_encode(key)

    def decode(self, raw: str, *, param: str) -> list[Any]:
        return _cursor_decode(raw, self.model, self.order, param=param)


def beyond(order: Sequence[str], values: Sequence[Any], *, forward: bool) -> Q:
    """The rows strictly after (``forward``) or before the position ``values`` in ``order``:
    (a, b) > (x, y) spelt out, each field in its own direction. The first field is also
    bounded on its own, so that the database starts from the position in its index rather
    than read every row before it."""
    ascending = [not field.startswith("-") for field in order]
    names = [field.lstrip("-") for field in order]

    def lookup(index: int, *, strict: bool) -> str:
        later = "gt" if ascending[index] == forward else "lt"
        return later if strict else f"{later}e"

    condition = Q(**{f"{names[-1]}__{lookup(len(names) - 1, strict=True)}": values[-1]})
    for index in range(len(names) - 2, -1, -1):
        strictly = Q(**{f"{names[index]}__{lookup(index, strict=True)}": values[index]})
        condition = strictly | (Q(**{names[index]: values[index]}) & condition)
    return Q(**{f"{names[0]}__{lookup(0, strict=False)}": values[0]}) & condition


def _reverse(order: Sequence[str]) -> list[str]:
    return [field[1:] if field.startswith("-") else f"-{field}" for field in order]


def keyset_page(
    queryset: QuerySet[T],
    *,
    order: Sequence[str],
    size: int,
    after: str | None = None,
    before: str | None = None,
    cursor: CursorFormat | None = None,
) -> KeysetPage[T]:
    """``size`` rows of ``queryset`` in ``order`` (whose last field is unique): the first, or
    those right after the cursor ``after`` or right before ``before``, cursors written as
    ``cursor`` has them (``JsonCursor`` by default). Where no row is left before ``before``,
    the first page is shown."""
    if after and before:
        raise BadRequest("Give after or before, not both.")
    cursor = cursor or JsonCursor(queryset.model, order)
    ordered = queryset.order_by(*order)
    if before:
        position = cursor.decode(before, param="before")
        backwards = queryset.filter(beyond(order, position, forward=False))
        rows = list(backwards.order_by(*_reverse(order))[: size + 1])
        if len(rows) > size:
            rows = rows[:size][::-1]
            more_after = queryset.filter(
                beyond(order, _key(rows[-1], order), forward=True)
            ).exists()
            return KeysetPage(
                rows=rows,
                next_cursor=cursor.encode(_key(rows[-1], order)) if more_after else None,
                previous_cursor=cursor.encode(_key(rows[0], order)),
                first=False,
            )
        after = None  # nothing before that page: the first page
    if after:
        position = cursor.decode(after, param="after")
        rows = list(ordered.filter(beyond(order, position, forward=True))[: size + 1])
    else:
        rows = list(ordered[: size + 1])
    more_after = len(rows) > size
    rows = rows[:size]
    more_before = (
        bool(after)
        and bool(rows)
        and queryset.filter(beyond(order, _key(rows[0], order), forward=False)).exists()
    )
    return KeysetPage(
        rows=rows,
        next_cursor=cursor.encode(_key(rows[-1], order)) if more_after else None,
        previous_cursor=cursor.encode(_key(rows[0], order)) if more_before else None,
        first=not after,
    )


def keyset_list_page(
    rows: Sequence[R],
    *,
    key: Callable[[R], tuple[str | int, ...]],
    size: int,
    after: str | None = None,
    before: str | None = None,
) -> KeysetPage[R]:
    """``keyset_page`` for a list in memory (a stored report): ``size`` of ``rows`` sorted by
    ``key`` (unique per row; its values strings or integers), the first ones or those right
    after the cursor ``after`` or right before ``before``, with the same cursors and the same
    first page where no row is left before ``before``."""
    if after and before:
        raise BadRequest("Give after or before, not both.")
    ordered = sorted(rows, key=key)
    keys = [key(row) for row in ordered]
    kinds = [type(value) for value in keys[0]] if keys else []  # position() needs keys

    def position(raw: str, param: str) -> tuple[str | int, ...]:
        values = _values_decode(raw, length=len(kinds), param=param)
        # Each value of the kind the key has there (bool is no int here): compared with the
        # keys below, another kind would raise a TypeError, a 500.
        if any(type(v) is not k for v, k in zip(values, kinds, strict=True)):
            raise _invalid_cursor(param)
        return tuple(values)

    if before and keys:
        end = bisect.bisect_left(keys, position(before, "before"))
        if end > size:
            start = end - size
            return KeysetPage(
                rows=ordered[start:end],
                next_cursor=_values_encode(keys[end - 1]) if end < len(keys) else None,
                previous_cursor=_values_encode(keys[start]),
                first=False,
            )
        after = None  # nothing before that page: the first page
    elif before:
        after = None  # an empty list has one page, the first
    start = bisect.bisect_right(keys, position(after, "after")) if after and keys else 0
    end = start + size
    return KeysetPage(
        rows=ordered[start:end],
        next_cursor=_values_encode(keys[end - 1]) if end < len(keys) else None,
        previous_cursor=_values_encode(keys[start]) if start and start < len(keys) else None,
        first=not after,
    )


def query_string(**params: object) -> str:
    """A query string of the non-empty ``params`` (a page's filters and cursor in its links)."""
    return urlencode({name: value for name, value in params.items() if value not in ("", None)})


def page_links(
    request: Request, page: KeysetPage[Any], *, kept: Mapping[str, Any]
) -> dict[str, str]:
    """The URLs of the pages next to ``page`` by rel, the parameters ``kept`` in each."""

    def url(**cursor: str) -> str:
        query = urlencode({k: v for k, v in {**kept, **cursor}.items() if v is not None})
        return request.build_absolute_uri(f"{request.path}?{query}")

    links = {}
    if page.next_cursor:
        links["next"] = url(after=page.next_cursor)
    if page.previous_cursor:
        links["prev"] = url(before=page.previous_cursor)
    if not page.first:
        links["first"] = url()
    return links


def link_response(body: Any, links: Mapping[str, str]) -> Response:
    """``body`` with ``links`` (``page_links``) as its Link header; none where there are none."""
    header = ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links.items())
    return Response(body, headers={"Link": header} if links else None)


def _params(request: Request, filters: type[ListPageSerializer]) -> dict[str, Any]:
    params = filters(data=request.query_params)
    params.is_valid(raise_exception=True)
    return dict(params.validated_data)


def _page_args(data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``keyset_page``/``keyset_list_page`` arguments that the query parameters give."""
    return {
        "size": data["limit"],
        "after": data.get("after") or None,
        "before": data.get("before") or None,
    }


def _respond(
    request: Request, page: KeysetPage[Any], data: Mapping[str, Any], body: Any
) -> Response:
    """``body`` with the Link header to the pages next to ``page``."""
    kept = {k: v for k, v in data.items() if k not in ("after", "before")}
    return link_response(body, page_links(request, page, kept=kept))


def page_response(
    request: Request,
    queryset: QuerySet[T],
    *,
    order: Sequence[str],
    serialize: Callable[[list[T]], Any],
    filters: type[ListPageSerializer] = ListPageSerializer,
) -> Response:
    """The page of ``queryset`` that the request's query parameters ask for: the serialized
    rows as the body, the Link header to the neighbouring pages."""
    data = _params(request, filters)
    page = keyset_page(queryset, order=order, **_page_args(data))
    return _respond(request, page, data, serialize(page.rows))


def list_page_response(
    request: Request,
    rows: Sequence[R],
    *,
    key: Callable[[R], tuple[str | int, ...]],
    serialize: Callable[[list[R]], Any],
    filters: type[ListPageSerializer] = ListPageSerializer,
) -> Response:
    """``page_response`` for a list in memory, paged by ``key`` (``keyset_list_page``)."""
    data = _params(request, filters)
    page = keyset_list_page(rows, key=key, **_page_args(data))
    return _respond(request, page, data, serialize(page.rows))
