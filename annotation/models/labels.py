"""An annotator's work on a pair: the leased assignment, the label, rewrites and evidence."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models.campaigns import Campaign, Round
from annotation.models.choices import Outcome
from annotation.models.pairs import Pair


class Assignment(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        SUBMITTED = "submitted"
        EXPIRED = "expired"
        SKIPPED = "skipped"

    class Kind(models.TextChoices):
        REGULAR = "regular"
        RETEST = "retest"
        GOLD = "gold"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="assignments")
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    round = models.ForeignKey(Round, null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.REGULAR)
    swapped = models.BooleanField(help_text="True when B was shown on the left as A.")
    leased_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    model_view_shown = models.BooleanField(default=False)
    # K-wise items: the canonical response index shown at each position (a random
    # permutation, as ``swapped`` is for A/B). Null on A/B pairs.
    display_order = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            # Last line of defence: nobody sees the same pair twice.
            models.UniqueConstraint(fields=["pair", "annotator"], name="assignment_pair_annotator"),
        ]
        indexes = [
            models.Index(
                fields=["lease_expires_at"],
                name="assignment_active_lease",
                condition=Q(status="active"),
            ),
            models.Index(fields=["annotator", "campaign", "status"], name="assignment_annotator"),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk}"


class LeaseGuard(models.Model):
    """The row every new lease of an annotator in a campaign is taken through.

    Two `next` calls of one annotator at once (two tabs, a double click, a client's retry)
    each read a snapshot without the other's new lease, so a check for a live lease alone
    let both take one. Each take first writes this row, which queues them: the later one
    sees that the row's last writer (``taken_by``, a PostgreSQL transaction id) is not in its
    snapshot and takes nothing, then reads the other's lease afresh. A row lock on a narrow
    table, not a unique index on assignments: that index cost 6-13% of the engine's labels/s
    (likely its dead entries, one per finished lease, which every unique check visits)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    # The last take's transaction (PostgreSQL xid8, as a number); unused on SQLite, whose
    # IMMEDIATE transactions already take their turn before they read.
    taken_by = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["annotator", "campaign"], name="leaseguard_annotator_campaign"
            ),
        ]

    def __str__(self) -> str:
        return f"lease guard {self.annotator_id}/{self.campaign_id}"


class Label(models.Model):
    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="label")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="labels")
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="labels")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="labels"
    )
    preference = models.SmallIntegerField(help_text="Canonical orientation, -2 … 2.")
    outcome = models.CharField(
        max_length=10,
        choices=Outcome.choices,
        default=Outcome.PREFERENCE,
        db_default=Outcome.PREFERENCE,
    )
    # {aspect: {"a": n, "b": n}}, canonical sides (as imported), whatever was shown on the left.
    aspect_ratings = models.JSONField(default=dict, blank=True)
    # K-wise items: groups of canonical response indices, best first ([[2], [0, 1], [3]]).
    # ``preference`` then holds response 0 against response 1 (1, 0 or -1), so that the
    # pairwise views of a label stay defined.
    ranking = models.JSONField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    confidence = models.PositiveSmallIntegerField(null=True, blank=True)
    flag_unsafe = models.BooleanField(default=False)
    flag_broken = models.BooleanField(default=False)
    flag_cannot_judge = models.BooleanField(default=False)
    seconds_spent = models.FloatField(null=True, blank=True)
    is_retest = models.BooleanField(default=False)
    is_gold_check = models.BooleanField(default=False)
    shown_first = models.CharField(
        max_length=1, help_text="Canonical side shown on the left: 'a' or 'b'."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Each change (within the campaign's grace period) appends the values it replaced, oldest
    # first: {"preference", "rationale", "confidence", "flags", "seconds_spent", "until"}.
    # Null until the first change.
    history = models.JSONField(null=True, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)
    # Set aside when its annotator was quarantined before the pair settled: kept, but left out
    # of consensus, agreement and exports; its slot went back to the pair.
    set_aside = models.BooleanField(default=False, db_default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["pair", "annotator"], name="label_pair_annotator"),
            models.CheckConstraint(
                condition=Q(preference__gte=-2, preference__lte=2), name="label_preference_range"
            ),
            models.CheckConstraint(
                condition=Q(confidence__isnull=True) | Q(confidence__gte=1, confidence__lte=5),
                name="label_confidence_range",
            ),
            models.CheckConstraint(
                condition=Q(outcome="preference") | Q(preference=0),
                name="label_outcome_has_no_preference",
            ),
        ]
        indexes = [
            models.Index(fields=["campaign", "created_at"], name="label_campaign_time"),
            # Agreement's grouped query reads regular labels per pair from this index alone.
            models.Index(
                fields=["campaign", "pair"],
                include=["preference"],
                condition=Q(is_retest=False, is_gold_check=False, set_aside=False),
                name="label_regular_votes",
            ),
            # An annotator's latest labels in a campaign: the rolling quality window.
            models.Index(fields=["annotator", "campaign", "-id"], name="label_annotator_recent"),
            # An annotator's gold checks in a campaign, latest or first: quarantine's gold
            # window and qualification read them without walking every other label.
            models.Index(
                fields=["annotator", "campaign", "-id"],
                condition=Q(is_gold_check=True),
                name="label_gold_checks",
            ),
            # The members page counts each member's labels set aside (a few, if any).
            models.Index(
                fields=["campaign", "annotator"],
                condition=Q(set_aside=True),
                name="label_set_aside",
            ),
        ]

    def __str__(self) -> str:
        return f"label {self.pk}"

    @property
    def flags(self) -> list[str]:
        names = {"unsafe": self.flag_unsafe, "broken": self.flag_broken}
        names["cannot_judge"] = self.flag_cannot_judge
        return [name for name, on in names.items() if on]


class Rewrite(models.Model):
    """A human-written correction of one of a pair's responses: a new response of its own.

    ``based_on`` is the canonical side ('a' or 'b') whose text the author started from; the
    export can emit (rewrite ≻ that response) as a pair of its own, marked in its provenance.
    """

    class BasedOn(models.TextChoices):
        A = "a"
        B = "b"

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="rewrites")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="rewrites")
    # Written with a label (annotators) or on its own (experts): then both are empty.
    label = models.ForeignKey(
        "Label", null=True, blank=True, on_delete=models.SET_NULL, related_name="rewrites"
    )
    assignment = models.ForeignKey(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="rewrites"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="rewrites"
    )
    text = models.TextField()
    based_on = models.CharField(max_length=1, choices=BasedOn.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(based_on__in=["a", "b"]), name="rewrite_based_on_side"
            ),
        ]
        indexes = [models.Index(fields=["campaign", "pair"], name="rewrite_campaign_pair")]

    def __str__(self) -> str:
        return f"rewrite {self.pk}"


class Evidence(models.Model):
    """What an annotator used while an assignment was open: searches, code runs, LLM answers."""

    class Kind(models.TextChoices):
        SEARCH = "search"
        ATTACHED_RESULT = "attached_result"
        CODE_RUN = "code_run"
        LLM = "llm"

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="evidence")
    label = models.ForeignKey(
        Label, null=True, blank=True, on_delete=models.SET_NULL, related_name="evidence"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} evidence {self.pk}"
