"""Creating users with a role and an API token."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Field

from annotation.roles import Role, role_groups
from annotation.services.api_tokens import api_token_ensure, api_token_issue
from core.text import encodes_as_utf8


@transaction.atomic
def user_create(
    *,
    username: str,
    role: Role,
    password: str | None = None,
    email: str = "",
    reset_password: bool = False,
    check_password_rules: bool = False,
    new_token: bool = False,
) -> tuple[AbstractUser, str | None, str | None]:
    """Create (or update the role of) a user; returns (user, password, API token key).

    A new user without a ``password`` gets a generated one, returned so it can be shown once.
    An existing user keeps theirs (None is returned) unless one is given or
    ``reset_password`` asks for a new one: changing a role must not lock its owner out. An
    invalid name or e-mail, or an empty password, raises ValidationError and stores nothing.

    ``check_password_rules`` also holds a given password to AUTH_PASSWORD_VALIDATORS (length,
    common passwords, likeness to the user's name and e-mail): for passwords an operator
    chooses (create_user). Generated ones (seed_demo's, a new user's) are random, and test
    fixtures pass short known ones on purpose.

    The API key is returned once, when it is issued (only its digest is stored): for a user
    without one, or with ``new_token``, which revokes the user's previous key. A user who has
    one keeps it, and None is returned for it: it cannot be shown again.
    """
    user_model = get_user_model()
    # The name is checked before any row exists: get_or_create would store an invalid one
    # (or fail in the database on an over-long one) before full_clean could say why.
    name_field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    assert isinstance(name_field, Field)  # noqa: S101 - a user model's name is a plain field
    name_field.clean(username, None)
    # The e-mail too (its format and the column's 254 characters): it is stored by the
    # get_or_create below, whose INSERT would fail on an over-long one (a DataError).
    email_field = user_model._meta.get_field("email")
    assert isinstance(email_field, Field)  # noqa: S101 - AbstractUser's email is a plain field
    try:
        email_field.clean(email, None)
    except ValidationError as exc:
        raise ValidationError({"email": exc.messages}) from None
    if password == "":
        # set_password("") stores a usable hash: anyone could log in with an empty password.
        raise ValidationError({"password": "a password cannot be empty"})
    # A command-line argument that is not UTF-8 reaches here with lone surrogates ("\udc80"),
    # which the e-mail's domain check lets through: neither the INSERT nor the hash could
    # encode them.
    for field_name, value in (("email", email), ("password", password or "")):
        if not encodes_as_utf8(value):
            raise ValidationError(
                {field_name: "not valid UTF-8 text (a lone surrogate such as \\udc80)"}
            )
    if password is not None and check_password_rules:
        # Checked against the user as they will be (an unsaved one when new), so the
        # likeness-to-name-or-e-mail rule sees the name and e-mail, and before any write.
        existing = user_model.objects.filter(username=username).first()
        subject = existing or user_model(username=username, email=email)
        try:
            validate_password(password, subject)
        except ValidationError as exc:
            raise ValidationError({"password": exc.messages}) from None
    # Case-insensitively, as an invitation checks: "Ada" beside "ada" is another account to
    # Django but the same name to a reader (a look-alike of ada's on every page).
    look_alike = (
        user_model.objects.filter(username__iexact=username).exclude(username=username).first()
    )
    if look_alike is not None:
        raise ValidationError(
            {
                "username": f"{look_alike.get_username()!r} exists: names that differ only in case "
                "are refused (give that name to change that user)"
            }
        )
    user, created = user_model.objects.get_or_create(username=username, defaults={"email": email})
    if password is None and (created or reset_password):
        password = secrets.token_urlsafe(12)
    if password is not None:
        user.set_password(password)
    user.is_staff = role is Role.ADMIN
    user.is_superuser = role is Role.ADMIN
    user.full_clean(exclude=["password"])
    user.save()
    groups = role_groups()
    user.groups.remove(*groups.values())
    user.groups.add(groups[role])
    token = api_token_issue(user=user) if new_token else api_token_ensure(user=user)
    return user, password, token
