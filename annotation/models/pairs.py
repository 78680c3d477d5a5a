"""A pair (or a K-wise item): what is judged, where it stands and its consensus."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from annotation.models.campaigns import Campaign, Round
from annotation.models.choices import Outcome


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
            # With is_gold, a count of pairs by status, gold apart (the workspace's counts, the
            # dashboard's), can read this index alone, not the pairs' wide rows.
            models.Index(
                fields=["campaign", "status", "is_gold"], name="pair_campaign_status_gold"
            ),
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
            # Drawing a gold check reads the campaign's gold pairs only (a few dozen to a few
            # thousand), not every pair (annotation.services.assignments._take_gold_pair).
            models.Index(fields=["campaign", "id"], name="pair_gold", condition=Q(is_gold=True)),
            # The rewrite step's queue: the few "both bad" pairs, oldest first
            # (reviewers.selectors.queue.rewrite_queue).
            models.Index(
                fields=["campaign", "id"],
                name="pair_both_bad",
                condition=Q(consensus_outcome=Outcome.BOTH_BAD),
            ),
        ]

    def __str__(self) -> str:
        return f"pair {self.pk}"
