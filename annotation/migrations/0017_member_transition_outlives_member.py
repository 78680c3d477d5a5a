"""A member's state history outlives the membership: each transition names its campaign and
user, and removing the member leaves its transitions (member set null) instead of deleting
them.

Going back deletes the transitions of members removed since (the schema before cannot hold a
transition without its member, and removing a member deleted its history then)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def name_campaign_and_user(apps, schema_editor):
    Transition = apps.get_model("annotation", "MemberTransition")
    Member = apps.get_model("annotation", "CampaignMember")
    member = Member.objects.filter(pk=OuterRef("member_id"))
    Transition.objects.update(
        campaign_id=Subquery(member.values("campaign_id")[:1]),
        user_id=Subquery(member.values("user_id")[:1]),
    )


def forget_removed_members(apps, schema_editor):
    """Backwards only, before ``member`` is NOT NULL again."""
    Transition = apps.get_model("annotation", "MemberTransition")
    Transition.objects.filter(member__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0016_round_chosen_by_version"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="membertransition",
            name="campaign",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="annotation.campaign",
            ),
        ),
        migrations.AddField(
            model_name="membertransition",
            name="user",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(name_campaign_and_user, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="membertransition",
            name="campaign",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="annotation.campaign",
            ),
        ),
        migrations.AlterField(
            model_name="membertransition",
            name="user",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="membertransition",
            name="member",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="transitions",
                to="annotation.campaignmember",
            ),
        ),
        migrations.AlterField(
            model_name="membertransition",
            name="to_state",
            field=models.CharField(
                choices=[
                    ("qualifying", "Qualifying"),
                    ("active", "Active"),
                    ("quarantined", "Quarantined"),
                    ("removed", "Removed"),
                ],
                max_length=12,
            ),
        ),
        migrations.AddIndex(
            model_name="membertransition",
            index=models.Index(fields=["user", "campaign", "at"], name="member_transition_user"),
        ),
        # Last, so that going back runs it first.
        migrations.RunPython(migrations.RunPython.noop, forget_removed_members),
    ]
