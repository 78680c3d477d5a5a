from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from annotation.models import Campaign, CampaignMember
from annotation.roles import Role, user_has_role
from annotation.selectors import member_of


class _AdministeredCampaigns:
    """``{% if campaign in nav.administers %}``: whether the user is an admin member of it.

    The campaign in view is known to the template, not here, hence a container. It asks
    ``member_of``, which reuses the membership the view read with the campaign (annotator
    pages), so only pages that did not read it pay a query.
    """

    def __init__(self, request: HttpRequest) -> None:
        self.request = request

    def __contains__(self, campaign: object) -> bool:
        user = self.request.user
        if not isinstance(campaign, Campaign) or not user.is_authenticated:
            return False
        member = member_of(campaign=campaign, user_id=user.pk)
        return member is not None and member.role == CampaignMember.Role.ADMIN


def nav(request: HttpRequest) -> dict[str, Any]:
    """The roles the navigation shows links for; computed only when a template asks."""

    def roles() -> dict[str, Any]:
        user = request.user
        return {
            "is_annotator": user_has_role(user, Role.ANNOTATOR),
            "is_expert": user_has_role(user, Role.EXPERT),
            "is_admin": user_has_role(user, Role.ADMIN),
            "administers": _AdministeredCampaigns(request),
        }

    return {"nav": SimpleLazyObject(roles)}
