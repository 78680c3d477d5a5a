from __future__ import annotations

from django.urls import include, path

from annotation import views

urlpatterns = [
    path("campaigns/<int:campaign_id>/", views.campaign_detail, name="campaign-detail"),
    path("assignments/<int:assignment_id>/", views.assignment_page, name="assignment-page"),
    path(
        "assignments/<int:assignment_id>/change/",
        views.assignment_label_change_view,
        name="assignment-label-change",
    ),
    path(
        "assignments/<int:assignment_id>/label/",
        views.assignment_label,
        name="assignment-label",
    ),
    path(
        "assignments/<int:assignment_id>/skip/",
        views.assignment_skip_view,
        name="assignment-skip",
    ),
    # The workspace embeds the tools panel, so its routes come with the workspace's.
    path("", include("annotation.tools_urls")),
]
