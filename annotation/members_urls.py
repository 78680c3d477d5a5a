"""The campaign members page (admins); config/urls.py includes this module at ""."""

from __future__ import annotations

from django.urls import path

from annotation import members_views

urlpatterns = [
    path(
        "campaigns/<int:campaign_id>/members/", members_views.members_page, name="campaign-members"
    ),
    path(
        "campaigns/<int:campaign_id>/members/change",
        members_views.members_change,
        name="campaign-members-change",
    ),
    path(
        "campaigns/<int:campaign_id>/members/<int:user_id>/",
        members_views.member_change,
        name="campaign-member",
    ),
]
