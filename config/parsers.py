"""A JSON parser for DRF with bounds on size and nesting depth.

A JSON body over ``ARBITER_API_MAX_JSON_BYTES`` (16 MiB) is a 413, refused from its
Content-Length before anything is read, or after reading one byte past the bound where there
is none. The parser is not a subclass of DRF's JSONParser: DRF reads the body of one of those
through ``request.body``, which Django bounds by DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB, meant
for form posts), answering its HTML "Bad Request (400)" to a JSON body over it. Given the
request's stream instead, this parser applies its own bound; forms keep Django's.

The standard library's decoder recurses once per level, so a body of 100,000 "[" ends in a
RecursionError (a 500). orjson parses without Python recursion and stops at 1,024 levels;
after it, a walk level by level refuses anything deeper than MAX_JSON_DEPTH, which no request
of this API comes near, so that nothing downstream (serializers, json.dumps into a JSON column)
recurses far either.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from rest_framework import parsers, status
from rest_framework.exceptions import APIException, ParseError

MAX_JSON_DEPTH = 64
# What JSON decodes to that holds other values (orjson makes exactly these types).
_CONTAINERS = (dict, list)


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a decoded JSON value holds containers nested deeper than `limit`.

    One pass, a level at a time, each level's containers gathered by a single comprehension:
    a walk pushing each container on a stack with its depth took 0.6 s on 400,000 small lists
    and 20 s on the 4,000,000 of a 16 MiB body; this takes 0.06 and 0.8 s (orjson took 3.5 s
    to parse that body, on the same loaded 2-core machine)."""
    level = [value] if type(value) in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for node in level
            for child in (node.values() if type(node) is dict else node)
            if type(child) in _CONTAINERS
        ]
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


class JSONParser(parsers.BaseParser):
    media_type = "application/json"

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
