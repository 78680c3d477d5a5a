from __future__ import annotations

from django.urls import path

from scoring.loop import api

urlpatterns = [
    path(
        "campaigns/<int:campaign_id>/model-versions",
        api.ModelVersionsApi.as_view(),
        name="api-model-versions",
    ),
    path(
        "campaigns/<int:campaign_id>/model-versions/rollback",
        api.ModelVersionRollbackApi.as_view(),
        name="api-model-rollback",
    ),
    path(
        "model-versions/<int:version_id>/activate",
        api.ModelVersionActivateApi.as_view(),
        name="api-model-activate",
    ),
    path("campaigns/<int:campaign_id>/retrain", api.RetrainApi.as_view(), name="api-retrain"),
    path("jobs/<int:job_id>", api.JobApi.as_view(), name="api-job"),
    path("jobs/<int:job_id>/cancel", api.JobCancelApi.as_view(), name="api-job-cancel"),
    path(
        "assignments/<int:assignment_id>/model-view",
        api.ModelViewApi.as_view(),
        name="api-model-view",
    ),
]
