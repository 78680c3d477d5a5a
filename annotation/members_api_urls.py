"""REST routes of campaign membership; config/urls.py includes this module at "api/"."""

from __future__ import annotations

from django.urls import path

from annotation import members_api

urlpatterns = [
    path(
        "campaigns/<int:campaign_id>/members",
        members_api.MembersApi.as_view(),
        name="api-campaign-members",
    ),
    path(
        "campaigns/<int:campaign_id>/members/<int:user_id>",
        members_api.MemberApi.as_view(),
        name="api-campaign-member",
    ),
]
