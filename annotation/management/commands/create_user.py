from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from annotation.roles import Role
from annotation.services.users import user_create


def _messages(error: ValidationError) -> str:
    if hasattr(error, "message_dict"):
        items = error.message_dict.items()
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in items)
    return " ".join(error.messages)


class Command(BaseCommand):
    help = (
        "Create a user with a role; prints a new API token alone on the last line (shown this "
        "once: only its digest is stored). An existing user keeps their token unless "
        "--new-token asks for a new one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=[role.value for role in Role])
        parser.add_argument(
            "--password",
            help="Generated and printed when omitted for a new user; an existing one keeps theirs. "
            "A given one must pass the site's password rules (AUTH_PASSWORD_VALIDATORS).",
        )
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--new-token",
            action="store_true",
            help="Issue a new API token even if the user has one; their old one stops working.",
        )

    def handle(self, *args: object, **options: object) -> None:
        username = str(options["username"])
        if not username.strip():
            raise CommandError("username cannot be empty")
        password_given = options["password"] is not None
        try:
            with transaction.atomic():
                user, password, token = user_create(
                    username=username,
                    role=Role(str(options["role"])),
                    password=str(options["password"]) if password_given else None,
                    email=str(options["email"]),
                    check_password_rules=True,
                    new_token=bool(options["new_token"]),
                )
        except ValidationError as exc:
            raise CommandError(f"invalid user {username!r}: {_messages(exc)}") from None
        self.stdout.write(f"user {user.username} ({options['role']}) ready")
        if password is None:
            self.stdout.write("password: unchanged (an existing user; --password sets one)")
        elif not password_given:
            self.stdout.write(f"password: {password}")
        if token is None:
            self.stdout.write(
                "token: unchanged (an existing user's; it is stored as a digest and cannot be "
                "shown again; --new-token issues a new one and revokes it)"
            )
        else:
            self.stdout.write(token)
