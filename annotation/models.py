"""Campaigns, pairs, rounds, assignments, labels and the evidence behind them.

Orientation: every stored preference is canonical (A and B as imported). What an annotator
saw is kept on the assignment (`swapped`), and the API and pages speak in the shown
orientation. Preference values: 2 = A much better, 1 = A better, 0 = tie, -1 = B better,
-2 = B much better.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Scale(models.TextChoices):
    BINARY = "binary", "Binary (A or B)"
    THREE_POINT = "three_point", "Three-point (A, tie, B)"
    FIVE_POINT = "five_point", "Five-point (A much better … B much better)"


SCALE_VALUES: dict[str, tuple[int, ...]] = {
    Scale.BINARY: (1, -1),
    Scale.THREE_POINT: (1, 0, -1),
    Scale.FIVE_POINT: (2, 1, 0, -1, -2),
}

DEFAULT_ESCALATION_RULES = {
    "no_majority": True,
    "opposite_directions": True,
    "disagreement_threshold": 0.5,
    "flags": True,
    "retest_contradiction": True,
    "model_contradiction": True,
    "model_confidence": 0.9,
    "deadline_hours": 72,
}


def default_escalation_rules() -> dict[str, object]:
    return dict(DEFAULT_ESCALATION_RULES)


class Campaign(models.Model):
    name = models.CharField(max_length=200, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to annotators.")
    scale = models.CharField(max_length=20, choices=Scale.choices, default=Scale.FIVE_POINT)
    annotators_per_pair = models.PositiveSmallIntegerField(default=3)
    lease_seconds = models.PositiveIntegerField(default=900)
    attribute_schema = models.JSONField(
        default=dict,
        blank=True,
        help_text="Allowed values per attribute, e.g. {'task_category': ['math', 'code']}.",
    )
    agreement_target = models.FloatField(default=0.85)
    escalation_rules = models.JSONField(default=default_escalation_rules, blank=True)
    retest_share = models.FloatField(default=0.05)
    gold_share = models.FloatField(default=0.0)
    quality_threshold = models.FloatField(
        default=0.6, help_text="Annotators below this gold accuracy are flagged."
    )
    auto_retrain = models.BooleanField(default=False)
    reveal_model_after_submit = models.BooleanField(default=False)
    retrieval_k = models.PositiveSmallIntegerField(default=8)
    activation_tolerance = models.FloatField(
        default=0.0,
        help_text=(
            "A newly trained model becomes active only if its held-out accuracy is at most "
            "this much below the active model's."
        ),
    )
    round_size = models.PositiveIntegerField(default=500)
    # How long an annotator may change a label after submitting it (never once an expert
    # decided the pair); 0 turns changes off.
    label_change_minutes = models.PositiveIntegerField(default=10)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(annotators_per_pair__gte=1), name="campaign_annotators_positive"
            ),
            models.CheckConstraint(
                condition=Q(agreement_target__gte=-1) & Q(agreement_target__lte=1),
                name="campaign_target_in_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def allowed_preferences(self) -> tuple[int, ...]:
        return SCALE_VALUES[self.scale]


class Round(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        CLOSED = "closed"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["campaign", "number"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "number"], name="round_number_unique"),
            models.UniqueConstraint(
                fields=["campaign"], condition=Q(status="open"), name="one_open_round_per_campaign"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} round {self.number}"


class Pair(models.Model):
    class Status(models.TextChoices):
        POOLED = "pooled"
        QUEUED = "queued"
        IN_ANNOTATION = "in_annotation"
        COMPLETE = "complete"
        ESCALATED = "escalated"
        RESOLVED = "resolved"
        DISCARDED = "discarded"

    class Provenance(models.TextChoices):
        NONE = "", "No consensus yet"
        GOLD = "gold"
        UNANIMOUS = "unanimous"
        MAJORITY = "majority"
        ADJUDICATED = "adjudicated"
        DISCARDED = "discarded"
        UNRESOLVED = "unresolved"

    # No index of its own: the composite indexes below all start with the campaign, and every
    # index is paid for on each imported row and on each update that moves a pair on.
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="pairs", db_index=False
    )
    round = models.ForeignKey(
        Round, null=True, blank=True, on_delete=models.SET_NULL, related_name="pairs"
    )
    conversation = models.JSONField(help_text="List of {role, content} turns before the responses.")
    response_a = models.TextField()
    response_b = models.TextField()
    # The importer caps both at 255 characters.
    source = models.CharField(max_length=255, blank=True)
    external_id = models.CharField(max_length=255, blank=True)
    content_hash = models.CharField(max_length=64)
    # The five Skywork preference attributes.
    task_category = models.CharField(max_length=100, blank=True)  # indexed with the campaign
    objectivity = models.CharField(max_length=100, blank=True)
    controversiality = models.CharField(max_length=100, blank=True)
    desired_attributes = models.TextField(blank=True)
    annotation_guideline = models.TextField(blank=True)
    # The source's own chosen/rejected label, unverified ("silver"), canonical orientation.
    silver_preference = models.SmallIntegerField(null=True, blank=True)
    is_gold = models.BooleanField(default=False)
    gold_preference = models.SmallIntegerField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    priority = models.FloatField(default=0.0)
    priority_reason = models.TextField(blank=True)
    # Assignment slots in use (active or submitted) and the cap they may reach. The cap is
    # annotators_per_pair, plus one for each double-blind re-test; the engine increments
    # slots_taken with a conditional UPDATE, so the database enforces the cap.
    slots_taken = models.PositiveSmallIntegerField(default=0)
    slot_cap = models.PositiveSmallIntegerField(default=3)
    labels_count = models.PositiveSmallIntegerField(default=0)
    # Consensus, filled when the pair has its labels (or by adjudication).
    consensus_preference = models.SmallIntegerField(null=True, blank=True)
    provenance = models.CharField(
        max_length=20, choices=Provenance.choices, default=Provenance.NONE, blank=True
    )
    disagreement = models.FloatField(null=True, blank=True)
    # Stage 2 automatic curation of unverified pairs.
    curation = models.CharField(max_length=20, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "content_hash"], name="pair_hash_unique"),
            models.CheckConstraint(
                condition=Q(slots_taken__lte=models.F("slot_cap")), name="pair_slots_within_cap"
            ),
            models.CheckConstraint(
                condition=Q(silver_preference__isnull=True)
                | Q(silver_preference__gte=-2, silver_preference__lte=2),
                name="pair_silver_in_range",
            ),
        ]
        indexes = [
            # What the assignment engine scans: open pairs by priority, then age.
            models.Index(
                fields=["campaign", "-priority", "id"],
                name="pair_open_queue",
                condition=Q(status__in=["queued", "in_annotation"]),
            ),
            models.Index(fields=["campaign", "status"], name="pair_campaign_status"),
            # What opening a round reads: the pool's pairs by priority, then id, so the next
            # round's LIMIT n rows come off the index in order instead of sorting a pool of
            # millions (scoring.loop.rounds.round_open_next).
            models.Index(
                fields=["campaign", "-priority", "id"],
                name="pair_pool_priority",
                condition=Q(status="pooled", is_gold=False),
            ),
            # Filters by category (export, agreement) are always within a campaign.
            models.Index(fields=["campaign", "task_category"], name="pair_campaign_category"),
        ]

    def __str__(self) -> str:
        return f"pair {self.pk}"


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


class Label(models.Model):
    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="label")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="labels")
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="labels")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="labels"
    )
    preference = models.SmallIntegerField(help_text="Canonical orientation, -2 … 2.")
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
        ]
        indexes = [
            models.Index(fields=["campaign", "created_at"], name="label_campaign_time"),
            # Agreement's grouped query reads regular labels per pair from this index alone.
            models.Index(
                fields=["campaign", "pair"],
                include=["preference"],
                condition=Q(is_retest=False, is_gold_check=False),
                name="label_regular_votes",
            ),
        ]

    def __str__(self) -> str:
        return f"label {self.pk}"

    @property
    def flags(self) -> list[str]:
        names = {"unsafe": self.flag_unsafe, "broken": self.flag_broken}
        names["cannot_judge"] = self.flag_cannot_judge
        return [name for name, on in names.items() if on]


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


class CodeRun(models.Model):
    """A sandboxed code run requested by a user; a Celery worker fills the result."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    assignment = models.ForeignKey(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="code_runs"
    )
    language = models.CharField(max_length=20)
    code = models.TextField()
    stdin = models.TextField(blank=True)
    tests = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    result = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"code run {self.pk}"


class ImportJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="imports")
    file = models.CharField(
        max_length=500,
        help_text="Path of the file on disk; an upload is removed once the import has finished.",
    )
    original_name = models.CharField(max_length=300)
    # What stays of an upload once its import has finished (the file itself is removed).
    file_bytes = models.BigIntegerField(null=True, blank=True)
    file_sha256 = models.CharField(max_length=64, blank=True)
    as_gold = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    rows_read = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    error_line = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"import {self.pk} ({self.status})"


class Corpus(models.Model):
    """A fact corpus searched by annotators."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "corpora"

    def __str__(self) -> str:
        return self.name


class Document(models.Model):
    corpus = models.ForeignKey(Corpus, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(max_length=500)
    body = models.TextField()
    source = models.CharField(max_length=1000, blank=True, help_text="URL or citation.")
    attribution = models.CharField(max_length=500, blank=True, help_text="Licence / credit.")

    def __str__(self) -> str:
        return self.title
