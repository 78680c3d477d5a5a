"""A partial index on the unfinished code runs (queued or running), so that the stale sweep
and the per-user pending-runs cap read only those, not every finished run ever kept.

Built CONCURRENTLY on PostgreSQL (core.migration_operations), as 0018: annotators go on
running code while it builds."""

from __future__ import annotations

from django.conf import settings
from django.db import migrations, models

from core.migration_operations import AddIndexWithoutBlockingWrites


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("annotation", "0021_importjob_busy_gold"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexWithoutBlockingWrites(
            model_name="coderun",
            index=models.Index(
                condition=models.Q(("status__in", ["queued", "running"])),
                fields=["user", "created_at"],
                name="coderun_unfinished",
            ),
        ),
    ]
