from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0014_evals_random_slice"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="pair",
            index=models.Index(
                condition=models.Q(("is_gold", False), ("status", "pooled")),
                fields=["campaign", "-priority", "id"],
                name="pair_pool_priority",
            ),
        ),
    ]
