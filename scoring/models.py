"""Jobs run by workers, reward-model versions, model scores and exports.

Pair vectors are not here: they live in part files (``scoring.loop.vector_store``).

A job row, not Celery's result backend, is the truth about a job: workers claim it with a
conditional UPDATE, write progress and log lines to it, and finish it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from annotation.models import Campaign, Pair, Round


class Job(models.Model):
    class Kind(models.TextChoices):
        TRAIN = "train"
        SCORE = "score"
        LOOP = "loop", "Retrain, score and open the next round"
        EXPORT = "export"
        CURATE = "curate"
        EVALUATE = "evaluate", "Evaluate on evaluation sets"
        CROSS_VALIDATE = "cross_validate", "Cross-validate a training configuration"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Stage(models.TextChoices):
        """Where a sharded job is: its own worker's part, its shards, or its last part."""

        MAIN = "", "main"
        SHARDS = "shards"  # no worker owns the job: its shards run on any gpu worker
        FINISHING = "finishing"  # every shard succeeded; the job's task runs its last part

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Claims after a release for a transient error (``job_release``): attempts that were not
    # lost workers, so the lost-worker limit does not count them.
    releases = models.PositiveSmallIntegerField(default=0, db_default=0)
    worker = models.CharField(max_length=200, blank=True)
    stage = models.CharField(max_length=10, choices=Stage.choices, default=Stage.MAIN, blank=True)
    # The queue its task was sent to where the caller overrode the route (``job_enqueue``):
    # the stale-job sweep sends it there again. Empty: the route of its task.
    queue = models.CharField(max_length=200, blank=True, default="", db_default="")
    # Sends by the stale-job sweep since a worker last claimed the job, and when the last one
    # was: each waits twice as long as the one before (``scoring.jobs.claims``).
    resends = models.PositiveSmallIntegerField(default=0, db_default=0)
    resent_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["campaign", "kind", "-created_at"], name="job_recent")]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED}


class JobShard(models.Model):
    """One slice of a job's pairs (ids ``first_id``..``last_id`` of its target set), run by any
    worker: claimed, heartbeaten and fenced by ``attempts`` like a job (``scoring.jobs.shards``).
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="shards")
    index = models.PositiveIntegerField()
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()
    planned = models.PositiveIntegerField(help_text="Pairs in the range when it was planned.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    scored = models.PositiveIntegerField(default=0)
    embedded = models.PositiveIntegerField(default=0)
    result = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the shard computed for its job's last part (an evaluation: correct and "
        "scored pairs per set and subset); written once, when the shard's work ends.",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="job_shard_unique"),
            models.CheckConstraint(condition=Q(first_id__lte=F("last_id")), name="shard_range"),
        ]

    def __str__(self) -> str:
        return f"shard {self.index} of job {self.job_id} ({self.status})"


class JobLogLine(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="log_lines")
    created_at = models.DateTimeField(auto_now_add=True)
    message = models.TextField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.message[:80]


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        READY = "ready"
        ARCHIVED = "archived"

    class Kind(models.TextChoices):
        """``loop``: trained on the verified labels, may become active; ``gold``: Stage 2's gold
        model, trained on human-verified pairs only (as the curation job chose), never active."""

        LOOP = "loop"
        GOLD = "gold"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField()
    base = models.CharField(max_length=500)
    mode = models.CharField(max_length=10, default="head")
    kind = models.CharField(
        max_length=10, choices=Kind.choices, default=Kind.LOOP, db_default=Kind.LOOP
    )
    checkpoint = models.CharField(max_length=1000)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    round = models.ForeignKey(Round, null=True, blank=True, on_delete=models.SET_NULL)
    label_snapshot = models.JSONField(
        default=dict, help_text="Which labels it saw: counts, max label id, digest of pair ids."
    )
    metrics = models.JSONField(default=dict)
    heldout_accuracy = models.FloatField(null=True, blank=True)
    activation_note = models.CharField(
        max_length=300, blank=True, help_text="Why the activation gate kept it inactive, if so."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.READY)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["campaign", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "number"], name="model_version_unique"),
            models.UniqueConstraint(
                fields=["campaign"], condition=Q(is_active=True), name="one_active_model"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} model v{self.number}"


class PairScore(models.Model):
    """The model's rewards for a pair (canonical orientation) and p(A better); for a verified
    ranking item also the reward of every response (prioritisation judges the item by its
    expanded pairs, not by its first two responses)."""

    # No index of its own: the unique (pair, model_version) index starts with the pair and
    # serves every look-up by pair; a second one cost 21–23 bytes a row (benchmarks/loop_scale.py).
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="scores", db_index=False)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="scores")
    reward_a = models.FloatField()
    reward_b = models.FloatField()
    p_a_better = models.FloatField()
    # One reward per response in imported order (``reward_a``, ``reward_b`` are the first two),
    # for a ranking item with a verified consensus ranking when it was scored; null otherwise.
    rewards = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["pair", "model_version"], name="pair_score_unique")
        ]

    def __str__(self) -> str:
        return f"score of {self.pair_id} by v{self.model_version_id}"


class Retrieval(models.Model):
    """Why a pair was moved up the queue: it resembles a pair the model got wrong."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="retrievals")
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="retrievals")
    similar_to = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="+")
    p = models.FloatField(help_text="Model's probability of agreeing with the human label.")
    similarity = models.FloatField()
    reason = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.reason


class ExportSnapshot(models.Model):
    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="export")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="exports")
    version = models.PositiveIntegerField()
    format = models.CharField(max_length=10)
    filters = models.JSONField(default=dict)
    path = models.CharField(max_length=1000, blank=True)
    manifest = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "version"], name="export_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.campaign} export v{self.version}"


class EvaluationPrompt(models.Model):
    """Prompts of an evaluation set (e.g. RewardBench) to decontaminate against."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="eval_prompts")
    set_name = models.CharField(max_length=200)
    text = models.TextField()

    def __str__(self) -> str:
        return self.set_name


# --- Evaluation sets (RewardBench layout) ------------------------------------------------------


class EvaluationSet(models.Model):
    """Preference pairs with a known answer (chosen beats rejected), grouped in subsets, that every
    ready model version is scored on. ``campaign`` empty: shared by every campaign."""

    campaign = models.ForeignKey(
        Campaign,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="evaluation_sets",
        help_text="Empty: shared by every campaign.",
    )
    name = models.CharField(max_length=200)
    filename = models.CharField(max_length=500, blank=True)
    sha256 = models.CharField(max_length=64, help_text="Of the pairs as stored, in order.")
    pairs_count = models.PositiveIntegerField(default=0)
    subsets = models.JSONField(default=dict, help_text="{subset: pairs}")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "name"],
                condition=Q(campaign__isnull=False),
                name="evaluation_set_unique",
            ),
            models.UniqueConstraint(
                fields=["name"], condition=Q(campaign__isnull=True), name="shared_evaluation_set"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class EvaluationItem(models.Model):
    evaluation_set = models.ForeignKey(
        EvaluationSet, on_delete=models.CASCADE, related_name="items"
    )
    position = models.PositiveIntegerField()
    subset = models.CharField(max_length=200)
    conversation = models.JSONField()
    chosen = models.TextField()
    rejected = models.TextField()
    prompt = models.TextField(help_text="The user turns, for decontamination.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["evaluation_set", "position"], name="evaluation_item_position"
            )
        ]

    def __str__(self) -> str:
        return f"{self.evaluation_set} #{self.position}"


class EvaluationResult(models.Model):
    """A version's accuracy on a set: overall and per subset, with 95% Wilson intervals."""

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="evaluations"
    )
    evaluation_set = models.ForeignKey(
        EvaluationSet, on_delete=models.CASCADE, related_name="results"
    )
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    set_sha256 = models.CharField(max_length=64, help_text="The set's content when evaluated.")
    accuracy = models.FloatField()
    n = models.PositiveIntegerField()
    ci_low = models.FloatField()
    ci_high = models.FloatField()
    subsets = models.JSONField(default=dict, help_text="{subset: {accuracy, n, ci_low, ci_high}}")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_version", "evaluation_set"], name="evaluation_result_unique"
            )
        ]

    def __str__(self) -> str:
        return f"v{self.model_version_id} on {self.evaluation_set_id}: {self.accuracy:.3f}"
