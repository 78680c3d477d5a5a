"""Dashboard pages; config/urls.py includes them at the site root."""

from __future__ import annotations

from django.urls import path

from scoring.dashboard import views as dashboard_views

urlpatterns = [
    path("dashboard/", dashboard_views.dashboard_index, name="dashboard"),
    path(
        "campaigns/<int:campaign_id>/dashboard/",
        dashboard_views.campaign_dashboard,
        name="campaign-dashboard",
    ),
    path(
        "campaigns/<int:campaign_id>/dashboard/exports",
        dashboard_views.dashboard_export_create,
        name="dashboard-export-create",
    ),
    path(
        "campaigns/<int:campaign_id>/dashboard/curations",
        dashboard_views.dashboard_curation_create,
        name="dashboard-curation-create",
    ),
]
