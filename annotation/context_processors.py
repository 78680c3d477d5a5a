from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from annotation.roles import Role, user_has_role


def nav(request: HttpRequest) -> dict[str, Any]:
    """The roles the navigation shows links for; computed only when a template asks."""

    def roles() -> dict[str, bool]:
        user = request.user
        return {
            "is_annotator": user_has_role(user, Role.ANNOTATOR),
            "is_expert": user_has_role(user, Role.EXPERT),
            "is_admin": user_has_role(user, Role.ADMIN),
        }

    return {"nav": SimpleLazyObject(roles)}
