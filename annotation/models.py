"""Campaigns, pairs, rounds, assignments, labels and the evidence behind them.

Orientation: every stored preference is canonical (A and B as imported). What an annotator
saw is kept on the assignment (`swapped`), and the API and pages speak in the shown
orientation. Preference values: 2 = A much better, 1 = A better, 0 = tie, -1 = B better,
-2 = B much better.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
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


class Outcome(models.TextChoices):
    """What a label (or a pair's consensus) says beyond which response is better.

    ``both_bad`` and ``both_good`` carry preference 0, so the preference maths (consensus
    strength, disagreement, alpha) count them as "neither is better"; the outcome keeps them
    apart from a plain tie, and neither ever becomes a chosen/rejected pair.
    """

    PREFERENCE = "preference", "A preference (or a tie)"
    BOTH_BAD = "both_bad", "Both bad"
    BOTH_GOOD = "both_good", "Both good"


class BothBadRoute(models.TextChoices):
    """Where a pair goes when its consensus is "both bad"."""

    NONE = "none", "Nowhere: keep it apart in the export"
    EXPERT = "expert", "To an expert (escalation)"
    REWRITE = "rewrite", "To the rewrite step"


# Largest number of points an aspect's scale may have (scale_max - scale_min + 1).
ASPECT_MAX_POINTS = 10


class ConsensusRule(models.TextChoices):
    MAJORITY = "majority", "Majority of directions"
    DAWID_SKENE = "dawid_skene", "Dawid-Skene (reliability-weighted)"


class ItemKind(models.TextChoices):
    PAIR = "pair", "Pairs (A/B)"
    RANKING = "ranking", "Rankings of 2 to 9 responses"


class RankingExpansion(models.TextChoices):
    """How a consensus ranking becomes chosen/rejected pairs (training and export)."""

    ALL_PAIRS = "all_pairs", "Every pair of differently ranked responses"
    BEST_VS_EACH = "best_vs_each", "Each best response against each lower one"
    ADJACENT = "adjacent", "Each rank group against the next"


# A K-wise item holds this many responses at least and at most.
MIN_RESPONSES = 2
MAX_RESPONSES = 9


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
    # The share of each round drawn at random from the pool instead of by priority: the
    # baseline that shows whether error-driven prioritisation pays (see scoring.dashboard).
    random_slice_share = models.FloatField(default=0.10, db_default=0.10)
    # How long an annotator may change a label after submitting it (never once an expert
    # decided the pair); 0 turns changes off.
    label_change_minutes = models.PositiveIntegerField(default=10)
    # Membership (annotation.services.members): a campaign that is not open to all gives work,
    # pages and API answers only to its members (site admins see everything). Campaigns made
    # before membership existed were migrated open; new ones are members-only.
    open_to_all = models.BooleanField(
        default=False, help_text="Any annotator and expert may work here, members or not."
    )
    # Qualification: a new member first judges this many gold pairs and is admitted to regular
    # work when their gold accuracy reaches the threshold (0 turns qualification off).
    qualification_gold_count = models.PositiveSmallIntegerField(default=0)
    qualification_threshold = models.FloatField(default=0.8)
    # Quarantine: after each label the annotator's last `quarantine_window` gold checks and
    # consensus-checked labels are measured; below a minimum (0 turns that check off), with at
    # least `quarantine_min_checks` of them, the annotator is quarantined.
    quarantine_min_gold_accuracy = models.FloatField(default=0.0)
    quarantine_min_agreement = models.FloatField(default=0.0)
    quarantine_min_checks = models.PositiveSmallIntegerField(default=10)
    quarantine_window = models.PositiveSmallIntegerField(default=50)
    # Per-aspect ratings asked for each response besides the overall judgment:
    # [{"name": "helpfulness", "label": "Helpfulness", "scale_min": 1, "scale_max": 5}, ...].
    aspects = models.JSONField(default=list, blank=True)
    # Annotators (and experts) may write a corrected copy of the better response.
    allow_rewrites = models.BooleanField(default=False)
    both_bad_route = models.CharField(
        max_length=10, choices=BothBadRoute.choices, default=BothBadRoute.NONE
    )
    # How settled pairs get their verdict: a majority of directions, or Dawid-Skene's
    # reliability-weighted estimate (re-estimated over the campaign by a debounced task).
    consensus_rule = models.CharField(
        max_length=20,
        choices=ConsensusRule.choices,
        default=ConsensusRule.MAJORITY,
        db_default=ConsensusRule.MAJORITY,
    )
    # An escalation is first offered to experts whose domains include the pair's task
    # category; every expert sees it once this many minutes have passed (0: at once).
    escalation_domain_wait_minutes = models.PositiveIntegerField(default=60, db_default=60)
    # Pairwise campaigns judge A against B; ranking campaigns rank each item's K responses.
    item_kind = models.CharField(max_length=10, choices=ItemKind.choices, default=ItemKind.PAIR)
    ranking_expansion = models.CharField(
        max_length=20, choices=RankingExpansion.choices, default=RankingExpansion.ALL_PAIRS
    )
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
            models.CheckConstraint(
                condition=Q(qualification_threshold__gte=0, qualification_threshold__lte=1)
                & Q(quarantine_min_gold_accuracy__gte=0, quarantine_min_gold_accuracy__lte=1)
                & Q(quarantine_min_agreement__gte=0, quarantine_min_agreement__lte=1),
                name="campaign_member_thresholds_in_range",
            ),
            models.CheckConstraint(
                condition=Q(random_slice_share__gte=0) & Q(random_slice_share__lte=1),
                name="campaign_random_slice_in_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def allowed_preferences(self) -> tuple[int, ...]:
        return SCALE_VALUES[self.scale]

    def clean(self) -> None:
        from annotation.aspects import AspectError, parse_aspects  # pure; no cycle

        try:
            parse_aspects(self.aspects)
        except AspectError as exc:
            raise ValidationError({"aspects": str(exc)}) from exc
        if self.both_bad_route == BothBadRoute.REWRITE and not self.allow_rewrites:
            raise ValidationError(
                {"both_bad_route": "Sending 'both bad' to the rewrite step needs rewrites allowed."}
            )

    @property
    def allowed_outcomes(self) -> tuple[str, ...]:
        """ "Both good" only on scales with a tie: without one, "equally good" has no place."""
        if 0 in self.allowed_preferences:
            return (Outcome.PREFERENCE, Outcome.BOTH_BAD, Outcome.BOTH_GOOD)
        return (Outcome.PREFERENCE, Outcome.BOTH_BAD)

    @property
    def quarantine_enabled(self) -> bool:
        return self.quarantine_min_gold_accuracy > 0 or self.quarantine_min_agreement > 0


class CampaignMember(models.Model):
    """A user's role in one campaign and where they stand in it.

    Only ``annotation.services.members`` writes ``state``; each change leaves a
    ``MemberTransition`` with its reason and figures.
    """

    class Role(models.TextChoices):
        ANNOTATOR = "annotator"
        EXPERT = "expert"
        ADMIN = "admin"

    class State(models.TextChoices):
        QUALIFYING = "qualifying"
        ACTIVE = "active"
        QUARANTINED = "quarantined"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="campaign_memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.ANNOTATOR)
    state = models.CharField(max_length=12, choices=State.choices, default=State.ACTIVE)
    # The latest qualification figures (checks, correct, accuracy, threshold, outcome), shown
    # to admins while the member qualifies or is held back.
    qualification = models.JSONField(null=True, blank=True)
    added_at = models.DateTimeField(auto_now_add=True)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["campaign", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "user"], name="campaign_member_unique"),
        ]
        indexes = [models.Index(fields=["user", "role"], name="campaign_member_user_role")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.campaign_id} as {self.role} ({self.state})"


class MemberTransition(models.Model):
    """One change of a member's state, with why and the figures behind it."""

    member = models.ForeignKey(
        CampaignMember, on_delete=models.CASCADE, related_name="transitions"
    )
    from_state = models.CharField(max_length=12, choices=CampaignMember.State.choices)
    to_state = models.CharField(max_length=12, choices=CampaignMember.State.choices)
    reason = models.CharField(max_length=200)
    figures = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.from_state} -> {self.to_state}"


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
    class Selection(models.TextChoices):
        """How a round took the pair from the pool (blank: it is in no round)."""

        NONE = "", "Not in a round"
        PRIORITY = "priority"
        RANDOM = "random"

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
        # Settled by the campaign's Dawid-Skene estimate (reliability-weighted).
        DAWID_SKENE = "dawid_skene"
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
    # K-wise items only (null on A/B pairs): every response, [{"content", "model"}], in
    # imported (canonical) order; response_a and response_b repeat the first two.
    responses = models.JSONField(null=True, blank=True)
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
    # K-wise: the source's own ranking (e.g. UltraFeedback ratings), groups of canonical
    # response indices, best first; unverified.
    silver_ranking = models.JSONField(null=True, blank=True)
    is_gold = models.BooleanField(default=False)
    gold_preference = models.SmallIntegerField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    priority = models.FloatField(default=0.0)
    priority_reason = models.TextField(blank=True)
    # db_default: the importers' COPY and raw INSERTs name their columns and leave it out.
    selection = models.CharField(
        max_length=10,
        choices=Selection.choices,
        default=Selection.NONE,
        db_default=Selection.NONE,
        blank=True,
    )
    # Assignment slots in use (active or submitted) and the cap they may reach. The cap is
    # annotators_per_pair, plus one for each double-blind re-test; the engine increments
    # slots_taken with a conditional UPDATE, so the database enforces the cap.
    slots_taken = models.PositiveSmallIntegerField(default=0)
    slot_cap = models.PositiveSmallIntegerField(default=3)
    labels_count = models.PositiveSmallIntegerField(default=0)
    # Consensus, filled when the pair has its labels (or by adjudication).
    consensus_preference = models.SmallIntegerField(null=True, blank=True)
    # "both_bad"/"both_good" when a majority of labels said so (consensus_preference is 0).
    # A database default too: the importer COPYs rows without naming this column.
    consensus_outcome = models.CharField(
        max_length=10,
        choices=Outcome.choices,
        default=Outcome.PREFERENCE,
        db_default=Outcome.PREFERENCE,
    )
    provenance = models.CharField(
        max_length=20, choices=Provenance.choices, default=Provenance.NONE, blank=True
    )
    disagreement = models.FloatField(null=True, blank=True)
    # The settling rule's probability of the consensus direction (Dawid-Skene only; null for
    # a plain majority, gold and adjudication).
    consensus_posterior = models.FloatField(null=True, blank=True)
    # Of the slots in use, how many were shown with B on the left: the engine gives the next
    # annotator the less used orientation, so a pair's orientations stay balanced.
    # db_default too: the importer's COPY names its columns and leaves the rest to the table.
    swapped_taken = models.PositiveSmallIntegerField(default=0, db_default=0)
    # K-wise: the consensus (or adjudicated) ranking, groups of canonical indices, best first.
    consensus_ranking = models.JSONField(null=True, blank=True)
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
