from __future__ import annotations

from django.apps import AppConfig


class ScoringConfig(AppConfig):
    name = "scoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The layers below call up through their hooks, never by importing scoring.
        from django.db.models.signals import pre_delete

        from annotation import hooks as annotation_hooks
        from annotation.models import Campaign
        from reviewers import hooks as reviewers_hooks
        from scoring.campaign_files import campaign_deleted
        from scoring.loop.assistance import model_view_reveal
        from scoring.loop.model_view import pair_model_prediction

        annotation_hooks.model_view_after_submit.register(model_view_reveal)
        reviewers_hooks.model_prediction.register(pair_model_prediction)
        # A deleted campaign's files (checkpoints, exports, vectors) go once the deletion
        # commits: its rows go by cascade, wherever it is deleted from (the admin, a shell).
        # Before the delete: the receiver reads where its versions and exports were written.
        pre_delete.connect(campaign_deleted, sender=Campaign, dispatch_uid="campaign-files")
