from __future__ import annotations

from django.urls import path

from scoring.loop import views

urlpatterns = [
    path(
        "scoring/campaigns/<int:campaign_id>/models/",
        views.campaign_models,
        name="scoring-campaign-models",
    ),
    path(
        "scoring/campaigns/<int:campaign_id>/models/rollback",
        views.model_version_rollback_view,
        name="scoring-model-rollback",
    ),
    path(
        "scoring/campaigns/<int:campaign_id>/retrain",
        views.campaign_retrain,
        name="scoring-retrain",
    ),
    path(
        "scoring/model-versions/<int:version_id>/activate",
        views.model_version_activate_view,
        name="scoring-model-activate",
    ),
    path("scoring/jobs/<int:job_id>/", views.job_detail, name="scoring-job"),
    path("scoring/jobs/<int:job_id>/cancel", views.job_cancel_view, name="scoring-job-cancel"),
]
