from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0008_job_releases"),
    ]

    operations = [
        migrations.AddField(
            model_name="pairscore",
            name="rewards",
            field=models.JSONField(blank=True, null=True),
        ),
    ]
