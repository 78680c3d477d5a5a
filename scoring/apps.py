from __future__ import annotations

from django.apps import AppConfig


class ScoringConfig(AppConfig):
    name = "scoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The layers below call up through their hooks, never by importing scoring.
        from annotation import hooks as annotation_hooks
        from reviewers import hooks as reviewers_hooks
        from scoring.loop.assistance import model_view_reveal
        from scoring.loop.model_view import pair_model_prediction

        annotation_hooks.model_view_after_submit.register(model_view_reveal)
        reviewers_hooks.model_prediction.register(pair_model_prediction)
