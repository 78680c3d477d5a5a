from __future__ import annotations

from django.urls import path

from reviewers import api

urlpatterns = [
    path(
        "campaigns/<int:campaign_id>/agreement",
        api.CampaignAgreementApi.as_view(),
        name="api-campaign-agreement",
    ),
    path(
        "campaigns/<int:campaign_id>/quality",
        api.AnnotatorQualityApi.as_view(),
        name="api-annotator-quality",
    ),
    path("escalations", api.EscalationListApi.as_view(), name="api-escalations"),
    path(
        "escalations/<int:escalation_id>",
        api.EscalationDetailApi.as_view(),
        name="api-escalation-detail",
    ),
    path(
        "escalations/<int:escalation_id>/claim",
        api.EscalationClaimApi.as_view(),
        name="api-escalation-claim",
    ),
    path(
        "escalations/<int:escalation_id>/release",
        api.EscalationReleaseApi.as_view(),
        name="api-escalation-release",
    ),
    path(
        "escalations/<int:escalation_id>/adjudicate",
        api.EscalationAdjudicateApi.as_view(),
        name="api-escalation-adjudicate",
    ),
    path("pairs/<int:pair_id>/gold", api.PairGoldApi.as_view(), name="api-pair-gold"),
    path(
        "campaigns/<int:campaign_id>/rewrite-queue",
        api.RewriteQueueApi.as_view(),
        name="api-rewrite-queue",
    ),
    path("pairs/<int:pair_id>/rewrites", api.PairRewriteApi.as_view(), name="api-pair-rewrites"),
]
