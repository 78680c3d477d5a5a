"""DRF's JSON parser with a bound on nesting depth.

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
from rest_framework import parsers
from rest_framework.exceptions import ParseError

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


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):  # noqa: ANN001, ANN201 - DRF's signature
        body = stream.read() if stream is not None else b""
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
