"""API routes for evaluation sets; config/urls.py includes them under "api/"."""

from __future__ import annotations

from django.urls import path

from scoring.evaluation import api

urlpatterns = [
    path(
        "campaigns/<int:campaign_id>/evaluation-sets",
        api.CampaignEvaluationSetsApi.as_view(),
        name="api-evaluation-sets",
    ),
    path(
        "campaigns/<int:campaign_id>/evaluation-sets/<int:set_id>",
        api.CampaignEvaluationSetApi.as_view(),
        name="api-evaluation-set",
    ),
    path(
        "evaluation-sets", api.SharedEvaluationSetsApi.as_view(), name="api-shared-evaluation-sets"
    ),
    path(
        "evaluation-sets/<int:set_id>",
        api.SharedEvaluationSetApi.as_view(),
        name="api-shared-evaluation-set",
    ),
]
