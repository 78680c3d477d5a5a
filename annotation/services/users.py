"""Creating users with a role and an API token."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import transaction
from django.db.models import Field
from rest_framework.authtoken.models import Token

from annotation.roles import Role, role_groups


@transaction.atomic
def user_create(
    *,
    username: str,
    role: Role,
    password: str | None = None,
    email: str = "",
    reset_password: bool = False,
) -> tuple[AbstractUser, str | None, str]:
    """Create (or update the role of) a user; returns (user, password, API token key).

    A new user without a ``password`` gets a generated one, returned so it can be shown once.
    An existing user keeps theirs (None is returned) unless one is given or
    ``reset_password`` asks for a new one: changing a role must not lock its owner out. An
    invalid name or e-mail raises ValidationError and stores nothing.
    """
    user_model = get_user_model()
    # The name is checked before any row exists: get_or_create would store an invalid one
    # (or fail in the database on an over-long one) before full_clean could say why.
    name_field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    assert isinstance(name_field, Field)  # noqa: S101 - a user model's name is a plain field
    name_field.clean(username, None)
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
    token, _ = Token.objects.get_or_create(user=user)
    return user, password, token.key
