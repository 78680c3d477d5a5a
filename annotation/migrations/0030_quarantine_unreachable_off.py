"""A quarantine that could never fire, turned off as it always was in effect.

Campaign.clean now refuses quarantine_min_checks above quarantine_window while a quarantine
minimum is on (the window never holds that many checks, so nobody was ever quarantined). A
campaign stored so before would have every later settings change refused over it. Its
minimums are set to 0, which keeps what it did (no one quarantined) and lets its settings be
changed; an admin who wants the quarantine sets a reachable minimum of checks.
"""

from django.db import migrations
from django.db.models import F, Q


def turn_unreachable_quarantine_off(apps, schema_editor):
    Campaign = apps.get_model("annotation", "Campaign")
    Campaign.objects.filter(
        Q(quarantine_min_gold_accuracy__gt=0) | Q(quarantine_min_agreement__gt=0),
        quarantine_min_checks__gt=F("quarantine_window"),
    ).update(quarantine_min_gold_accuracy=0, quarantine_min_agreement=0)


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0029_quarantine_window_bound"),
    ]

    operations = [
        # Backwards: nothing to undo (the quarantine never fired).
        migrations.RunPython(turn_unreachable_quarantine_off, migrations.RunPython.noop),
    ]
