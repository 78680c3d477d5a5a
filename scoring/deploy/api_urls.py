from __future__ import annotations

from django.urls import path

from scoring.deploy import api

urlpatterns = [
    path(
        "model-versions/<int:version_id>/score",
        api.ModelVersionScoreApi.as_view(),
        name="api-model-score",
    ),
]
