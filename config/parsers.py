"""DRF's JSON parser with bounds on size and nesting depth.

Django bounds a form body (DATA_UPLOAD_MAX_MEMORY_SIZE) but DRF reads a JSON body whole from
the stream, so without a bound one request could hold a web process's memory with gigabytes.
A JSON body over ``ARBITER_API_MAX_JSON_BYTES`` is a 413, refused from its Content-Length
before anything is read, or after reading one byte past the bound where there is none.

The standard library's decoder recurses once per level, so a body of 100,000 "[" ends in a
RecursionError (a 500). orjson parses without Python recursion and stops at 1,024 levels;
after it, an iterative walk refuses anything deeper than MAX_JSON_DEPTH, which no request of
this API comes near, so that nothing downstream (serializers, json.dumps into a JSON column)
recurses far either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from django.conf import settings
from rest_framework import parsers, status
from rest_framework.exceptions import APIException, ParseError

MAX_JSON_DEPTH = 64


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a decoded JSON value holds containers nested deeper than `limit`, walked
    without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class RequestBodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"


def max_json_bytes() -> int:
    return int(settings.ARBITER["API_MAX_JSON_BYTES"])


def _declared_length(parser_context: dict[str, Any] | None) -> int | None:
    request = (parser_context or {}).get("request")
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        return None


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):  # noqa: ANN001, ANN201 - DRF's signature
        limit = max_json_bytes()
        too_large = RequestBodyTooLarge(
            f"a JSON body may hold at most {limit} bytes (ARBITER_API_MAX_JSON_BYTES)"
        )
        declared = _declared_length(parser_context)
        if declared is not None and declared > limit:
            raise too_large
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise too_large
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if "depth limit" in str(exc) or "recursion" in str(exc).lower():
                raise ParseError(
                    f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels"
                ) from None
            raise ParseError(f"JSON parse error - {exc}") from None
        if json_depth_exceeds(data):
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels")
        return data
