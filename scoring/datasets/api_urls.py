"""API routes for exports and curation; config/urls.py includes them under "api/"."""

from __future__ import annotations

from django.urls import path

from scoring.datasets import api as export_api

urlpatterns = [
    path(
        "campaigns/<int:campaign_id>/exports", export_api.ExportsApi.as_view(), name="api-exports"
    ),
    path(
        "exports/<int:export_id>/download",
        export_api.ExportDownloadApi.as_view(),
        name="api-export-download",
    ),
    path(
        "campaigns/<int:campaign_id>/curations",
        export_api.CurationsApi.as_view(),
        name="api-curations",
    ),
]
