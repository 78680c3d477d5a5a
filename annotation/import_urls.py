from __future__ import annotations

from django.urls import path

from annotation import campaign_views, import_views

urlpatterns = [
    path("campaigns/new/", campaign_views.campaign_new, name="campaign-new"),
    path("campaigns/<int:campaign_id>/import/", import_views.import_page, name="import-page"),
    path(
        "campaigns/<int:campaign_id>/import/<int:job_id>/",
        import_views.import_job_detail,
        name="import-job",
    ),
]
