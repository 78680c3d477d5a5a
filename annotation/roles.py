"""The three roles. A role is a Django group; admins are also staff for the Django admin."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group

# Where roles loaded together with the user (see user_roles_remember) are kept on the user.
_KNOWN_ROLES = "_arbiter_roles"
# Marks a user object that lives for one request only (see user_roles_read_once).
_READ_ONCE = "_arbiter_roles_read_once"


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
    known = getattr(user, _KNOWN_ROLES, None)
    if known is None and getattr(user, _READ_ONCE, False):
        names = user.groups.filter(name__in=[r.value for r in Role]).values_list(  # type: ignore[attr-defined]
            "name", flat=True
        )
        known = frozenset(Role(name) for name in names)
        user_roles_remember(user, known)
    if known is not None:
        return role in known or Role.ADMIN in known
    allowed = {role.value, Role.ADMIN.value}
    return user.groups.filter(name__in=allowed).exists()  # type: ignore[attr-defined]


def user_roles_remember(user: AbstractBaseUser, roles: Iterable[Role]) -> None:
    """Record the roles of a user object that was loaded for one request only.

    The API's token lookup reads the roles in the same query as the user, which saves a
    query on every call; a user object that lives longer (a test's fixture) never gets this.
    """
    setattr(user, _KNOWN_ROLES, frozenset(roles))


def user_roles_read_once(user: AbstractBaseUser | AnonymousUser) -> None:
    """Let the first role check read all of this user's roles, and later checks reuse them.

    For the user of one request (see ``config.middleware.RolesOncePerRequestMiddleware``): a
    page asks several roles (navigation, the view's access rule, its selectors), one query
    each before. A user object that lives longer (a test's fixture, a task's) keeps asking
    the database, so that a role given meanwhile counts.
    """
    if user.is_authenticated:
        setattr(user, _READ_ONCE, True)


def role_groups() -> dict[Role, Group]:
    return {role: Group.objects.get_or_create(name=role.value)[0] for role in Role}
