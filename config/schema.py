"""OpenAPI schema generation tweaks."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as BaseAutoSchema

from core.serializers import ErrorSerializer

# Errors a call may answer whatever its view declares, and when (see _implied_errors).
_NOT_SIGNED_IN = "Not signed in: no token or session, or a token that is not valid."
_UNREADABLE = "The request could not be read (JSON that does not parse, a value out of range)."
_REFUSED = "A session's request without its CSRF token, or a role the call needs."
_NOT_FOUND = "No such object, or not one you may see."


class AutoSchema(BaseAutoSchema):
    """Name nested serializers after their view (`LabelApi.InputSerializer` → `LabelApiInput`).

    Every APIView nests an `InputSerializer`/`OutputSerializer` (STYLE.md §3); by class name
    alone their schema components would collide.

    Each operation also documents the errors any call of its kind may answer, in the one
    error shape (`ErrorSerializer`), beside those its view declares.
    """

    def get_serializer_name(self, serializer: Any, direction: str) -> str:
        return type(serializer).__qualname__.replace(".", "")

    def get_operation(self, *args: Any, **kwargs: Any) -> Any:
        operation = super().get_operation(*args, **kwargs)
        if not operation:
            return operation
        error = self.resolve_serializer(ErrorSerializer, "response").ref
        responses = operation.setdefault("responses", {})
        for status, description in _implied_errors(operation, self.method):
            responses.setdefault(
                str(status),
                {"content": {"application/json": {"schema": error}}, "description": description},
            )
        operation["responses"] = dict(sorted(responses.items()))
        return operation


def _implied_errors(operation: dict[str, Any], method: str) -> list[tuple[int, str]]:
    """401 for a call that needs a signed-in user; 400 for one that reads a body or query
    parameters (a parse error, a number beyond the database's); 403 for one that writes
    (a session's CSRF check); 404 for one with an id in its path (every such view looks it
    up, answering 404 for no such object or one hidden from the user)."""
    errors: list[tuple[int, str]] = []
    if not any(operation.get("security") or []):
        return errors
    errors.append((401, _NOT_SIGNED_IN))
    parameters = operation.get("parameters") or []
    if "requestBody" in operation or any(p["in"] == "query" for p in parameters):
        errors.append((400, _UNREADABLE))
    if method not in ("GET", "HEAD", "OPTIONS"):
        errors.append((403, _REFUSED))
    if any(p["in"] == "path" for p in parameters):
        errors.append((404, _NOT_FOUND))
    return errors
