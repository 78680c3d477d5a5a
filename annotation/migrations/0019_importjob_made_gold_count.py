"""A gold import's rows that made pairs already in the campaign gold, counted on the job."""
from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0018_scale_partial_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="importjob",
            name="made_gold_count",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
