"""Partial indexes for the reads that walked whole tables to find a few rows (gold pairs,
"both bad" pairs, gold checks, labels set aside), and is_gold in the campaign-status index so
that pair counts by status can be index-only scans.

Built CONCURRENTLY on PostgreSQL (core.migration_operations): labelling and imports go on
while the indexes build on a populated installation, and a killed run can run again. The old
campaign-status index is dropped last, once its replacement exists (concurrently too: an
open read, an export say, no longer holds every writer behind the drop)."""

from __future__ import annotations

from django.db import migrations, models

from core.migration_operations import (
    AddIndexWithoutBlockingWrites,
    RemoveIndexWithoutBlockingWrites,
)


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY runs outside a transaction.
    atomic = False

    dependencies = [
        ("annotation", "0017_member_transition_outlives_member"),
    ]

    operations = [
        AddIndexWithoutBlockingWrites(
            model_name="pair",
            index=models.Index(
                condition=models.Q(("is_gold", True)), fields=["campaign", "id"], name="pair_gold"
            ),
        ),
        AddIndexWithoutBlockingWrites(
            model_name="pair",
            index=models.Index(
                condition=models.Q(("consensus_outcome", "both_bad")),
                fields=["campaign", "id"],
                name="pair_both_bad",
            ),
        ),
        AddIndexWithoutBlockingWrites(
            model_name="pair",
            index=models.Index(
                fields=["campaign", "status", "is_gold"], name="pair_campaign_status_gold"
            ),
        ),
        AddIndexWithoutBlockingWrites(
            model_name="label",
            index=models.Index(
                condition=models.Q(("is_gold_check", True)),
                fields=["annotator", "campaign", "-id"],
                name="label_gold_checks",
            ),
        ),
        AddIndexWithoutBlockingWrites(
            model_name="label",
            index=models.Index(
                condition=models.Q(("set_aside", True)),
                fields=["campaign", "annotator"],
                name="label_set_aside",
            ),
        ),
        RemoveIndexWithoutBlockingWrites(model_name="pair", name="pair_campaign_status"),
    ]
