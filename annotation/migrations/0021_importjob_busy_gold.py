"""A gold import's rows naming a pair being judged right now (left as it was), counted on the
job."""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0020_pair_content_hash_nfc"),
    ]

    operations = [
        migrations.AddField(
            model_name="importjob",
            name="busy_gold_count",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
