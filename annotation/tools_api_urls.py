"""REST routes of the annotator tools; config/urls.py includes this module at "api/"."""

from __future__ import annotations

from django.urls import path

from annotation import tools_api

urlpatterns = [
    path("tools/search", tools_api.SearchApi.as_view(), name="api-tools-search"),
    path("tools/evidence", tools_api.EvidenceApi.as_view(), name="api-tools-evidence"),
    path("tools/code-runs", tools_api.CodeRunCreateApi.as_view(), name="api-tools-code-runs"),
    path(
        "tools/code-runs/<int:run_id>",
        tools_api.CodeRunDetailApi.as_view(),
        name="api-tools-code-run",
    ),
    path("tools/languages", tools_api.LanguagesApi.as_view(), name="api-tools-languages"),
    path("tools/llm", tools_api.LlmAskApi.as_view(), name="api-tools-llm"),
]
