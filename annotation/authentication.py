"""API authentication: DRF's token scheme, with the user's roles read in the same query.

Every annotator call (next, label) authenticates; a web process keeps what it read for a token
for ``ARBITER_TOKEN_CACHE_SECONDS`` (default 5), so a busy annotator costs one lookup per few
seconds rather than one per call. A change to users, tokens or group memberships made through
Django empties this process's cache at once; other processes see it within those seconds
(0 turns the cache off).

The token table holds digests, not keys (``annotation.services.api_tokens``): a presented key
is looked up, and cached, by its digest.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Model
from django.utils.translation import gettext_lazy as _
from drf_spectacular.drainage import set_override
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from annotation.prepared_reads import fetch_one_prepared, instances_from_row, model_columns
from annotation.roles import Role, user_roles_remember
from annotation.services.api_tokens import api_token_digest


class TokenWithRolesAuthentication(TokenAuthentication):
    """DRF's token authentication, with the user's roles read in the same query.

    Every annotator call checks a role; reading the groups with the token saves a query per
    call on the hot path (next, label), and plain SQL saves compiling three subqueries.
    """

    def authenticate_credentials(self, key: str) -> tuple:
        if "\x00" in key:
            # No key holds one (refused before hashing, as before digests: PostgreSQL
            # refuses a NUL in a query's text, a 500, should a key ever reach SQL).
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token_model = self.get_model()
        digest = api_token_digest(key)
        cached = _cached_user(digest)
        found = cached or _read_user(token_model, digest)
        if found is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        user, roles = found
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        if cached is None:
            _remember_user(digest, user, roles)
        user_roles_remember(user, roles)
        # request.auth is the row as stored: its key is the digest, never the raw key (which
        # a save of this object would otherwise write to the table in clear).
        token = token_model(key=digest, user=user)
        token._state.adding = False
        return (user, token)


def _read_user(
    token_model: type[Model], digest: str
) -> tuple[AbstractBaseUser, frozenset[Role]] | None:
    """(the user of the token stored as ``digest``, their roles), or None for no such token."""
    params = [*(role.value for role in Role), digest]
    sql = _token_user_sql(token_model)
    if connection.vendor == "postgresql":  # every API call: prepared, no ORM compiling
        row = fetch_one_prepared(sql, params)
        if row is None:
            return None
        columns = model_columns(get_user_model(), "u")
        (found,) = instances_from_row(row, [columns])
        user: AbstractBaseUser = cast(AbstractBaseUser, found)
        flags: Sequence[Any] = row[len(columns.attnames) :]
    else:
        raw_user = next(iter(get_user_model().objects.raw(sql, params)), None)
        if raw_user is None:
            return None
        user = raw_user
        flags = [getattr(user, f"has_{role.value}") for role in Role]
    return user, frozenset(role for role, has_role in zip(Role, flags, strict=True) if has_role)


# token digest -> (monotonic expiry, the user's field values, its roles). Field values, not the
# user object: each request gets an instance of its own to change as it likes.
_token_cache: dict[str, tuple[float, dict, frozenset]] = {}
_token_cache_lock = threading.Lock()
_TOKEN_CACHE_MAX = 10_000
# The cache's clock; a test gives it one of its own to step past an expiry without sleeping.
token_cache_clock: Callable[[], float] = time.monotonic


def _cached_user(digest: str) -> tuple | None:
    seconds = settings.ARBITER["TOKEN_CACHE_SECONDS"]
    found = _token_cache.get(digest) if seconds > 0 else None
    if found is None or found[0] < token_cache_clock():
        return None
    _expires, values, roles = found
    user = get_user_model()(**values)
    user._state.adding = False
    user._state.db = connection.alias
    return user, roles


def _remember_user(digest: str, user, roles: frozenset) -> None:  # noqa: ANN001 - the user model
    seconds = settings.ARBITER["TOKEN_CACHE_SECONDS"]
    if seconds <= 0:
        return
    values = {field.attname: getattr(user, field.attname) for field in user._meta.concrete_fields}
    with _token_cache_lock:
        if len(_token_cache) >= _TOKEN_CACHE_MAX:
            _token_cache.clear()
        _token_cache[digest] = (token_cache_clock() + seconds, values, roles)


def token_cache_clear(**_signal_kwargs: object) -> None:
    """Forget every cached token (connected to changes of users, tokens and groups)."""
    with _token_cache_lock:
        _token_cache.clear()


@functools.cache
def _token_user_sql(token_model: type[Model]) -> str:
    quote = connection.ops.quote_name
    user_model = get_user_model()
    groups = user_model._meta.get_field("groups")
    user_pk = quote(user_model._meta.pk.column)
    member_user, member_group = quote(groups.m2m_column_name()), quote(groups.m2m_reverse_name())
    through = cast(type[Model], groups.remote_field.through)  # Django creates it
    memberships = quote(through._meta.db_table)
    group_table = quote(Group._meta.db_table)
    role_check = (
        "EXISTS (SELECT 1 FROM {memberships} m JOIN {groups} g ON g.id = m.{group}"
        " WHERE m.{user} = u.{pk} AND g.name = %s) AS has_{role}"
    )
    role_checks = ", ".join(
        role_check.format(
            memberships=memberships,
            groups=group_table,
            group=member_group,
            user=member_user,
            pk=user_pk,
            role=role.value,
        )
        for role in Role
    )
    columns = model_columns(user_model, "u").select_sql
    return (
        f"SELECT {columns}, {role_checks} FROM {quote(token_model._meta.db_table)} t"  # noqa: S608
        f" JOIN {quote(user_model._meta.db_table)} u ON u.{user_pk} = t.user_id"
        " WHERE t.key = %s"
    )


# Same header, same "tokenAuth" security scheme in the OpenAPI schema as DRF's class.
set_override(TokenWithRolesAuthentication, "suppress_collision_warning", True)
