from __future__ import annotations

from django.urls import path

from annotation import views

urlpatterns: list = [
    path("campaigns/<int:campaign_id>/", views.campaign_detail, name="campaign-detail"),
]
