"""Database defaults for the gold import's counters (0019, 0021): during an upgrade the
previous release's web and worker processes still create import jobs, naming only the
columns they know; without a default in the table their inserts failed."""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0022_coderun_unfinished_index"),
    ]

    operations = [
        migrations.AlterField(
            model_name="importjob",
            name="busy_gold_count",
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(
            model_name="importjob",
            name="made_gold_count",
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
    ]
