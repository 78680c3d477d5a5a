from __future__ import annotations

from django.urls import path

from annotation import api

urlpatterns = [
    path("campaigns", api.CampaignCreateApi.as_view(), name="api-campaign-create"),
    path(
        "campaigns/<int:campaign_id>",
        api.CampaignSettingsApi.as_view(),
        name="api-campaign-settings",
    ),
    path("campaigns/<int:campaign_id>/next", api.CampaignNextApi.as_view(), name="api-next"),
    path("campaigns/<int:campaign_id>/progress", api.ProgressApi.as_view(), name="api-progress"),
    path(
        "campaigns/<int:campaign_id>/labels.jsonl",
        api.LabelsExportApi.as_view(),
        name="api-labels-export",
    ),
    path("campaigns/<int:campaign_id>/imports", api.ImportApi.as_view(), name="api-import"),
    path("assignments/<int:assignment_id>/label", api.LabelApi.as_view(), name="api-label"),
    path("assignments/<int:assignment_id>/skip", api.SkipApi.as_view(), name="api-skip"),
]
