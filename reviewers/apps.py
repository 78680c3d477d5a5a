from __future__ import annotations

from django.apps import AppConfig


class ReviewersConfig(AppConfig):
    name = "reviewers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # annotation calls up through its hooks, never by importing reviewers.
        from annotation import hooks
        from reviewers.services.consensus import pair_label_changed, pair_label_recorded
        from reviewers.services.escalations import (
            escalation_claims_release_for_labeller,
            escalation_claims_release_for_member,
        )
        from reviewers.services.member_quality import (
            member_label_submitted,
            members_requalify,
        )

        hooks.label_recorded.register(pair_label_recorded)
        hooks.label_recorded.register(escalation_claims_release_for_labeller)
        hooks.label_changed.register(pair_label_changed)
        hooks.label_submitted.register(member_label_submitted)
        hooks.member_stopped_reviewing.register(escalation_claims_release_for_member)
        hooks.qualification_changed.register(members_requalify)
