"""OpenAPI schema generation tweaks."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as BaseAutoSchema


class AutoSchema(BaseAutoSchema):
    """Name nested serializers after their view (`LabelApi.InputSerializer` → `LabelApiInput`).

    Every APIView nests an `InputSerializer`/`OutputSerializer` (STYLE.md §3); by class name
    alone their schema components would collide.
    """

    def get_serializer_name(self, serializer: Any, direction: str) -> str:
        return type(serializer).__qualname__.replace(".", "")
