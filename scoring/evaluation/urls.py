from __future__ import annotations

from django.urls import path

from scoring.evaluation import views

urlpatterns = [
    path(
        "scoring/campaigns/<int:campaign_id>/evaluations/",
        views.campaign_evaluations,
        name="scoring-campaign-evaluations",
    ),
    path(
        "scoring/campaigns/<int:campaign_id>/evaluations/upload",
        views.evaluation_set_upload_view,
        name="scoring-evaluation-set-upload",
    ),
]
