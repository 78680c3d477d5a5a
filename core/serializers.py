"""Input serializers that refuse names they do not know.

DRF drops keys a serializer has no field for, so a misspelt setting (``"itemkind"``,
``"epoch"``, ``"rol"``) silently becomes its default and the request goes on. An API's input
serializer derives from ``StrictSerializer`` (``StrictSerializer, serializers.ModelSerializer``
for a model's) and answers a 400 ``{"detail": "unknown field …", "code": "unknown_field"}``
naming them instead, the same way the job schemas refuse unknown parameters
(``scoring.jobs.params``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from core.errors import BadRequest

# Sent by Django's form posts (a browser on the browsable API) beside the fields themselves.
_ALWAYS_ALLOWED = frozenset({"csrfmiddlewaretoken"})


class UnknownFields(BadRequest):
    code = "unknown_field"


class StrictSerializer(serializers.Serializer[Any]):
    """A serializer whose input may hold only its writable fields (see the module docstring)."""

    def to_internal_value(self, data: Any) -> Any:
        # Not a mapping: DRF's own "expected a dictionary" error follows.
        if isinstance(data, Mapping):
            known = [name for name, field in self.fields.items() if not field.read_only]
            unknown = sorted(set(data) - set(known) - _ALWAYS_ALLOWED)
            if unknown:
                named = ", ".join(map(str, unknown[:20]))
                more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
                raise UnknownFields(
                    f"unknown field {named}{more} (this request takes {', '.join(known)})"
                )
        return super().to_internal_value(data)


def typed_text_field(*, limit: int, too_long: str, help_text: str, **kwargs: Any) -> Any:
    """A text field for what people type into a textarea, limited to ``limit`` characters
    as the service counts them (a line break one: ``core.text.typed_length``). A client may
    send CRLF line breaks, so this bounds the text at twice the limit and leaves the exact
    count to the service; past the bound it says the limit itself (``too_long``)."""
    return serializers.CharField(
        max_length=2 * limit,
        error_messages={"max_length": too_long},
        help_text=f"{help_text} At most {limit:,} characters, a line break (CRLF or LF) "
        "counted as one.",
        **kwargs,
    )


class ErrorSerializer(serializers.Serializer[Any]):
    """The body of every error the API answers (core.http, config.middleware,
    config.error_views), as the OpenAPI schema documents it; a serializer's field errors
    answer `{field: [message, ...]}` instead."""

    detail = serializers.CharField(help_text="What was wrong, for a person to read.")
    code = serializers.CharField(
        help_text="A stable machine-readable name: `not_authenticated`, `not_found`, "
        "`unknown_field`, `lease_expired`, ..."
    )
