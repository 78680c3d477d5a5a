from __future__ import annotations

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0006_evals_model_kind_cross_validate"),
    ]

    operations = [
        migrations.AlterField(
            model_name="pairscore",
            name="pair",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="scores",
                to="annotation.pair",
            ),
        ),
    ]
