"""Stored retrieval_k values above the bound 0027 put on new ones, brought down to it.

0027 only added a validator: a campaign saved with a larger k before (the settings API took
up to 32,767) kept it, so the loop went on holding sources × k neighbours at once, and every
later settings change of that campaign, whatever it changed, was refused over retrieval_k.
"""

from django.db import migrations

MAX_RETRIEVAL_K = 128  # annotation.models.campaigns.MAX_RETRIEVAL_K as of this migration


def clamp_retrieval_k(apps, schema_editor):
    Campaign = apps.get_model("annotation", "Campaign")
    Campaign.objects.filter(retrieval_k__gt=MAX_RETRIEVAL_K).update(retrieval_k=MAX_RETRIEVAL_K)


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0027_retrieval_k_bound"),
    ]

    operations = [
        # Backwards: nothing to undo (the larger values are not kept anywhere).
        migrations.RunPython(clamp_retrieval_k, migrations.RunPython.noop),
    ]
