"""The three roles. A role is a Django group; admins are also staff for the Django admin."""

from __future__ import annotations

from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group


class Role(StrEnum):
    ANNOTATOR = "annotator"
    EXPERT = "expert"
    ADMIN = "admin"


def user_has_role(user: AbstractBaseUser | AnonymousUser, role: Role) -> bool:
    if not user.is_authenticated:
        return False
    if getattr(user, "is_superuser", False):
        return True
    # Admins may do everything experts and annotators do; experts do not annotate, so that
    # nobody adjudicates a dispute they took part in.
    allowed = {role.value, Role.ADMIN.value}
    return user.groups.filter(name__in=allowed).exists()  # type: ignore[attr-defined]


def role_groups() -> dict[Role, Group]:
    return {role: Group.objects.get_or_create(name=role.value)[0] for role in Role}
