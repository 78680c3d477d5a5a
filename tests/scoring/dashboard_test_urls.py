"""The project's URLs plus the dashboard and export routes, until config/urls.py includes them."""

from __future__ import annotations

from django.urls import include, path

from config.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    *project_urlpatterns,
    path("", include("scoring.dashboard_urls")),
    path("api/", include("scoring.export_api_urls")),
]
