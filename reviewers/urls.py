from __future__ import annotations

from django.urls import path

from reviewers import views

urlpatterns = [
    path("experts/queue/", views.expert_queue, name="expert-queue"),
    path("annotators/report/", views.annotator_report_page, name="annotator-report"),
    path("experts/next", views.expert_next_view, name="expert-next"),
    path("experts/settings/", views.expert_settings_page, name="expert-settings"),
    path(
        "escalations/<int:escalation_id>/open", views.escalation_open_view, name="escalation-open"
    ),
    path(
        "escalations/<int:escalation_id>/", views.escalation_review_page, name="escalation-review"
    ),
    path(
        "escalations/<int:escalation_id>/claim",
        views.escalation_claim_view,
        name="escalation-claim",
    ),
    path(
        "escalations/<int:escalation_id>/release",
        views.escalation_release_view,
        name="escalation-release",
    ),
    path(
        "escalations/<int:escalation_id>/adjudicate",
        views.escalation_adjudicate_view,
        name="escalation-adjudicate",
    ),
    path(
        "escalations/<int:escalation_id>/promote-gold",
        views.escalation_promote_gold_view,
        name="escalation-promote-gold",
    ),
    path(
        "campaigns/<int:campaign_id>/agreement/",
        views.campaign_agreement_page,
        name="campaign-agreement",
    ),
    path(
        "campaigns/<int:campaign_id>/quality/",
        views.campaign_quality_page,
        name="annotator-quality",
    ),
]
