from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.models import Campaign, CampaignMember
from annotation.services.members import member_add, member_remove
from core.errors import ApplicationError


def _campaign(key: str) -> Campaign:
    """A campaign by id, or by name. An all-digit key that is one campaign's id and another's
    name is refused as ambiguous, naming both ids: each id then reaches its own campaign."""
    by_id = Campaign.objects.filter(pk=int(key)).first() if key.isdecimal() else None
    by_name = Campaign.objects.filter(name=key).first()
    if by_id is not None and by_name is not None and by_id.pk != by_name.pk:
        raise CommandError(
            f"{key!r} is ambiguous: it is the id {by_id.pk} of {by_id.name!r} and the name of "
            f"campaign id {by_name.pk}; give the id of the one you mean"
        )
    found = by_id or by_name
    if found is None:
        raise CommandError(f"no campaign {key!r} (give its id or its name)")
    return found


class Command(BaseCommand):
    help = "Add a user to a campaign (with a role) or remove them: campaign_member add|remove."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["add", "remove"])
        parser.add_argument("campaign", help="Campaign id or name.")
        parser.add_argument("user", help="User name.")
        parser.add_argument(
            "--role", default=CampaignMember.Role.ANNOTATOR, choices=CampaignMember.Role.values
        )

    def handle(self, *args: object, **options: object) -> None:
        campaign = _campaign(str(options["campaign"]))
        username = str(options["user"])
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        try:
            if options["action"] == "add":
                member = member_add(campaign=campaign, user=user, role=str(options["role"]))
                self.stdout.write(
                    f"{username} is a member of {campaign.name!r} as {member.role} ({member.state})"
                )
            else:
                member_remove(campaign=campaign, user_id=user.pk)
                self.stdout.write(f"{username} removed from {campaign.name!r}")
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
