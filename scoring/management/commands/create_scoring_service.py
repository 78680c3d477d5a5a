"""An account for an RLHF pipeline that scores through POST /api/model-versions/{id}/score."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.deploy.serving import scoring_service_account


class Command(BaseCommand):
    help = (
        "Create (or keep) a scoring-service account: a user in the scoring-service group, with "
        "no password and no role, that may score with any ready model version and do nothing "
        "else. Prints a new API token alone on the last line (shown this once: only its "
        "digest is stored); an existing account keeps its token unless --new-token asks for a "
        "new one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--new-token",
            action="store_true",
            help="Issue a new API token even if the account has one; the old one stops working.",
        )

    def handle(self, *args: object, **options: object) -> None:
        username = str(options["username"]).strip()
        if not username:
            raise CommandError("username cannot be empty")
        try:
            account = scoring_service_account(
                username=username, new_token=bool(options["new_token"])
            )
        except ValidationError as exc:
            raise CommandError(f"invalid user {username!r}: {' '.join(exc.messages)}") from None
        except PermissionError as exc:
            raise CommandError(str(exc)) from None
        state = "created" if account.created else "ready (it existed)"
        self.stdout.write(f"scoring-service account {account.username} {state}")
        if account.token is None:
            self.stdout.write(
                "token: unchanged (the account's existing one; it is stored as a digest and "
                "cannot be shown again; --new-token issues a new one and revokes it)"
            )
        else:
            self.stdout.write(account.token)
