"""Page routes of the annotator tools (htmx partials) and the corpus admin page; config/urls.py
includes this module at ""."""

from __future__ import annotations

from django.urls import path

from annotation import tools_views

urlpatterns = [
    path("tools/panel", tools_views.tools_panel, name="tools-panel"),
    path("tools/search", tools_views.tools_search, name="tools-search"),
    path("tools/attach", tools_views.tools_attach, name="tools-attach"),
    path("tools/code-runs", tools_views.tools_code_run, name="tools-code-run"),
    path(
        "tools/code-runs/<int:run_id>",
        tools_views.tools_code_run_detail,
        name="tools-code-run-detail",
    ),
    path("tools/llm", tools_views.tools_llm, name="tools-llm"),
    path("tools/corpora/", tools_views.corpora, name="tools-corpora"),
]
