"""A campaign, its members (with their state transitions) and its rounds."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from annotation.escalation_rules import escalation_rules_problems
from annotation.models.choices import (
    SCALE_VALUES,
    BothBadRoute,
    ConsensusRule,
    ItemKind,
    Outcome,
    RankingExpansion,
    Scale,
    default_escalation_rules,
)

# A lease shorter than this ends before anyone can read a pair: every label would be a 409.
MIN_LEASE_SECONDS = 60


# The largest overlap: a pair's slot counts are small integers (and a spare slot is added).
MAX_ANNOTATORS_PER_PAIR = 1000

# The longest a label stays changeable: a year. The workspace counts the window back from now
# on every pair it shows, and a window reaching before year 1 cannot be counted (it answered
# every annotator of the campaign with a 400, "A number in the request is out of range").
MAX_LABEL_CHANGE_MINUTES = 365 * 24 * 60
# Neighbours a mispredicted pair pulls from the pool: the loop holds sources × k hits at once.
MAX_RETRIEVAL_K = 128
# The settings held as JSON (jsonb), which cannot store a NUL character anywhere in them.
_JSON_SETTINGS = ("attribute_schema", "escalation_rules", "aspects")
# Settings that are a fraction, with the bounds of their check constraints (named in clean).
_FRACTION_SETTINGS = {
    "agreement_target": (-1.0, 1.0, "Krippendorff's alpha, its target, lies between -1 and 1."),
    "qualification_threshold": (0.0, 1.0, "A gold accuracy lies between 0 and 1."),
    "quarantine_min_gold_accuracy": (0.0, 1.0, "A gold accuracy lies between 0 and 1."),
    "quarantine_min_agreement": (0.0, 1.0, "An agreement rate lies between 0 and 1."),
}


def _holds_nul(value: object) -> bool:
    """Whether a text anywhere in this JSON value (a key included) holds a NUL character."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


class Campaign(models.Model):
    name = models.CharField(max_length=200, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to annotators.")
    scale = models.CharField(max_length=20, choices=Scale.choices, default=Scale.FIVE_POINT)
    annotators_per_pair = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_ANNOTATORS_PER_PAIR)],
    )
    lease_seconds = models.PositiveIntegerField(default=900)
    attribute_schema = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            "Allowed values per attribute, e.g. {'task_category': ['math', 'code']}: an import "
            "refuses a pair whose task_category, objectivity or controversiality is not listed."
        ),
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
    retrieval_k = models.PositiveSmallIntegerField(
        default=8, validators=[MaxValueValidator(MAX_RETRIEVAL_K)]
    )
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
    # At most 1,000: each label reads the annotator's last window of checks under its pair's
    # row lock.
    quarantine_window = models.PositiveSmallIntegerField(
        default=50, validators=[MaxValueValidator(1000)]
    )
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
    def takes_rewrites(self) -> bool:
        """Whether labels may carry a rewritten answer: a rewrite names response A or B of a
        pair, so never on a ranking campaign (``clean`` refuses the setting there; this covers
        campaigns saved before that rule)."""
        return self.allow_rewrites and self.item_kind != ItemKind.RANKING

    @property
    def takes_aspect_ratings(self) -> bool:
        """Whether labels may rate aspects of A and B: as rewrites, never on a ranking campaign."""
        return bool(self.aspects) and self.item_kind != ItemKind.RANKING

    @property
    def allowed_preferences(self) -> tuple[int, ...]:
        return SCALE_VALUES[self.scale]

    def clean(self) -> None:
        from annotation.aspects import AspectError, parse_aspects  # pure; no cycle
        from annotation.attribute_schema import AttributeSchemaError, parse_attribute_schema

        for share in ("gold_share", "retest_share", "random_slice_share"):
            value = getattr(self, share)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValidationError({share: "A share lies between 0 and 1."})
        if self.round_size is not None and self.round_size < 1:
            # A round of no pairs never completes, and the loop would stop there.
            raise ValidationError({"round_size": "A round needs at least one pair."})
        errors: dict[str, str | list[str]] = {}
        if self.lease_seconds is not None and self.lease_seconds < MIN_LEASE_SECONDS:
            errors["lease_seconds"] = (
                f"A lease of under {MIN_LEASE_SECONDS} seconds ends before the pair is judged."
            )
        if (
            self.label_change_minutes is not None
            and self.label_change_minutes > MAX_LABEL_CHANGE_MINUTES
        ):
            errors["label_change_minutes"] = (
                f"At most a year ({MAX_LABEL_CHANGE_MINUTES:,} minutes); 0 turns changes off."
            )
        if self.quality_threshold is not None and not 0.0 <= self.quality_threshold <= 1.0:
            errors["quality_threshold"] = "A gold accuracy lies between 0 and 1."
        # Checked by the table's constraints too, whose refusal names no field.
        for fraction, (low, high, message) in _FRACTION_SETTINGS.items():
            value = getattr(self, fraction)
            if value is not None and not low <= value <= high:
                errors[fraction] = message
        if self.activation_tolerance is not None and not -1.0 <= self.activation_tolerance <= 1.0:
            # Accuracies differ by at most 1: beyond that every version, or none, activates.
            errors["activation_tolerance"] = "A difference of accuracies lies between -1 and 1."
        if self.quarantine_window is not None and self.quarantine_window < 1:
            errors["quarantine_window"] = (
                "A window of no labels measures nothing; set the quarantine minimums to 0 instead."
            )
        elif (
            any(
                (minimum or 0) > 0
                for minimum in (self.quarantine_min_gold_accuracy, self.quarantine_min_agreement)
            )
            and self.quarantine_window is not None
            and self.quarantine_min_checks is not None
            and self.quarantine_min_checks > self.quarantine_window
        ):
            # The window holds at most quarantine_window checks of each measure: a higher
            # minimum is never met, and nobody would ever be quarantined.
            errors["quarantine_min_checks"] = (
                f"At most the quarantine window ({self.quarantine_window}): the window never "
                "holds more checks, so nobody would be quarantined."
            )
        # The rules are read on every completed pair: a setting outside what they take is refused
        # here (blank=True lets None past the field checks). Rows saved before this check keep
        # the reading they had (reviewers.consensus.escalation_rules_of).
        rule_problems = escalation_rules_problems(self.escalation_rules)
        if rule_problems:
            errors["escalation_rules"] = rule_problems
        try:
            parse_attribute_schema(self.attribute_schema)
        except AttributeSchemaError as exc:
            errors["attribute_schema"] = str(exc)
        for setting in _JSON_SETTINGS:
            if _holds_nul(getattr(self, setting)):
                # jsonb refuses it: the save would fail with a server error.
                errors.setdefault(
                    setting, "A text in it holds a NUL character, which cannot be stored."
                )
        if errors:
            raise ValidationError(errors)
        try:
            parse_aspects(self.aspects)
        except AspectError as exc:
            raise ValidationError({"aspects": str(exc)}) from exc
        if self.both_bad_route == BothBadRoute.REWRITE and not self.allow_rewrites:
            raise ValidationError(
                {"both_bad_route": "Sending 'both bad' to the rewrite step needs rewrites allowed."}
            )
        if self.item_kind == ItemKind.RANKING:
            # A ranking item shows K responses in a per-assignment order: rewrites and aspect
            # ratings name sides "a" and "b" of an A/B pair, and the Dawid-Skene re-estimate
            # settles a pair's A-versus-B verdict. None of them has a meaning here.
            ranking_errors: dict[str, str] = {}
            if self.allow_rewrites:
                ranking_errors["allow_rewrites"] = (
                    "Rewrites name response A or B of a pair; a ranking campaign has none."
                )
            if self.aspects:
                ranking_errors["aspects"] = (
                    "Aspect ratings are for A/B pairs; a ranking campaign has none."
                )
            if self.consensus_rule == ConsensusRule.DAWID_SKENE:
                ranking_errors["consensus_rule"] = (
                    "Dawid-Skene settles A/B pairs; a ranking campaign takes the majority rule."
                )
            if ranking_errors:
                raise ValidationError(ranking_errors)

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
    # Set when this campaign's invite created the user (``member_invite``): its admins may
    # re-issue the set-password link while the invitation is pending. Null for a user who was
    # added, whatever their account looks like (a token-only account is no invitee of theirs).
    invited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["campaign", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "user"], name="campaign_member_unique"),
        ]
        indexes = [models.Index(fields=["user", "role"], name="campaign_member_user_role")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.campaign_id} as {self.role} ({self.state})"

    @property
    def invitation_pending(self) -> bool:
        """Invited by this campaign and never signed in: no password set, no login yet (the
        members page offers to resend the link; ``member_reinvite`` checks the rest)."""
        return (
            self.invited_at is not None
            and not self.user.has_usable_password()
            and self.user.last_login is None
        )


class MemberTransition(models.Model):
    """One change of a member's state, with why and the figures behind it.

    The history outlives the membership: removing a member records a last transition to
    ``removed`` and leaves ``member`` null, and the campaign and user keep the rows found (the
    pay report's quarantine time reads them).
    """

    REMOVED = "removed"
    STATES = [*CampaignMember.State.choices, (REMOVED, "Removed")]

    member = models.ForeignKey(
        CampaignMember,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="transitions",
    )
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    from_state = models.CharField(max_length=12, choices=CampaignMember.State.choices)
    to_state = models.CharField(max_length=12, choices=STATES)
    reason = models.CharField(max_length=200)
    figures = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["user", "campaign", "at"], name="member_transition_user")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.campaign_id}: {self.from_state} -> {self.to_state}"


class Round(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        CLOSED = "closed"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # The number of the campaign's active model version when the round opened: the model whose
    # scores set the priorities that chose it (a number, not a key: the versions live in the
    # scoring app, above this one). Null when none was active, and for rounds opened before.
    chosen_by_version = models.PositiveIntegerField(null=True, blank=True)

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
