"""Escalations of disputed pairs and the experts' adjudications of them."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import Campaign, Pair


class Escalation(models.Model):
    class Reason(models.TextChoices):
        NO_MAJORITY = "no_majority", "No majority"
        OPPOSITE_DIRECTIONS = "opposite_directions", "Opposite directions"
        FLAGGED = "flagged", "Flagged by an annotator"
        RETEST_CONTRADICTION = "retest_contradiction", "Re-test contradicts consensus"
        MODEL_CONTRADICTION = "model_contradiction", "Confident model contradicts unanimous label"
        BOTH_BAD = "both_bad", "Both responses bad"
        MANUAL = "manual", "Escalated by an admin"
        LOW_POSTERIOR = "low_posterior", "Weighted consensus below the posterior threshold"

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"
        # Closed without a decision: a changed label, or a clear weighted consensus, settled
        # the dispute it was opened for.
        WITHDRAWN = "withdrawn"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="escalations")
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="escalations")
    reason = models.CharField(max_length=30, choices=Reason.choices)
    detail = models.TextField(blank=True)
    disagreement = models.FloatField(default=0.0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    # A claim is held by one expert until it expires; taken with a conditional UPDATE.
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    # Until then only experts whose domains include the pair's task category see it; null:
    # every expert at once (no category, or the campaign waits 0 minutes).
    open_to_all_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # One open escalation per pair; further reasons are appended to its detail.
            models.UniqueConstraint(
                fields=["pair"], condition=Q(status="open"), name="one_open_escalation_per_pair"
            ),
        ]
        indexes = [
            models.Index(
                fields=["campaign", "created_at"],
                name="escalation_open_queue",
                condition=Q(status="open"),
            ),
            models.Index(
                fields=["campaign", "-disagreement", "created_at"],
                name="escalation_most_disputed",
                condition=Q(status="open"),
            ),
        ]

    def __str__(self) -> str:
        return f"escalation {self.pk} ({self.reason})"


class Adjudication(models.Model):
    class Decision(models.TextChoices):
        PREFERENCE = "preference"
        DISCARD = "discard"

    escalation = models.OneToOneField(
        Escalation, on_delete=models.CASCADE, related_name="adjudication"
    )
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="adjudications")
    expert = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=20, choices=Decision.choices)
    preference = models.SmallIntegerField(null=True, blank=True, help_text="Canonical orientation.")
    # K-wise items: the decided ranking, groups of canonical response indices, best first
    # (``preference`` then holds response 0 against response 1).
    ranking = models.JSONField(null=True, blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(decision="preference") & Q(preference__gte=-2, preference__lte=2))
                | (Q(decision="discard") & Q(preference__isnull=True)),
                name="adjudication_decision_consistent",
            ),
        ]

    def __str__(self) -> str:
        return f"adjudication of {self.pair_id}"


class ExpertSettings(models.Model):
    """An expert's notification settings: e-mail about new escalations in their domains (task
    categories; none listed means all), at most once an hour, unless turned off."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="expert_settings"
    )
    notify_by_email = models.BooleanField(default=True)
    domains = models.JSONField(
        default=list, blank=True, help_text="Task categories to hear about; empty for all."
    )
    # Taken with a conditional UPDATE before each e-mail: at most one an hour per expert.
    last_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "expert settings"

    def __str__(self) -> str:
        return f"settings of {self.user}"
