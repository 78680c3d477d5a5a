"""Partial indexes for the reads that walked whole tables to find a few rows (gold pairs,
"both bad" pairs, gold checks, labels set aside), and is_gold in the campaign-status index so
that pair counts by status can be index-only scans.

Plain AddIndex, as earlier index migrations: SQLite (the embedded default) has no
CONCURRENTLY. The old campaign-status index is dropped last, once its replacement exists, so
the table's exclusive lock for the drop is held only for the commit."""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0017_member_transition_outlives_member"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="pair",
            index=models.Index(
                condition=models.Q(("is_gold", True)), fields=["campaign", "id"], name="pair_gold"
            ),
        ),
        migrations.AddIndex(
            model_name="pair",
            index=models.Index(
                condition=models.Q(("consensus_outcome", "both_bad")),
                fields=["campaign", "id"],
                name="pair_both_bad",
            ),
        ),
        migrations.AddIndex(
            model_name="pair",
            index=models.Index(
                fields=["campaign", "status", "is_gold"], name="pair_campaign_status_gold"
            ),
        ),
        migrations.AddIndex(
            model_name="label",
            index=models.Index(
                condition=models.Q(("is_gold_check", True)),
                fields=["annotator", "campaign", "-id"],
                name="label_gold_checks",
            ),
        ),
        migrations.AddIndex(
            model_name="label",
            index=models.Index(
                condition=models.Q(("set_aside", True)),
                fields=["campaign", "annotator"],
                name="label_set_aside",
            ),
        ),
        migrations.RemoveIndex(model_name="pair", name="pair_campaign_status"),
    ]
