"""The project's URLs plus the annotator tools' routes, until config/urls.py includes them."""

from __future__ import annotations

from django.urls import include, path

from config.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    *project_urlpatterns,
    path("", include("annotation.tools_urls")),
    path("api/", include("annotation.tools_api_urls")),
]
