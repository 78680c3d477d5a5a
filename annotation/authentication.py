"""API authentication: DRF's token scheme, with the user's roles read in the same query."""

from __future__ import annotations

import functools

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.utils.translation import gettext_lazy as _
from drf_spectacular.drainage import set_override
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from annotation.prepared_reads import fetch_one_prepared, instances_from_row, model_columns
from annotation.roles import Role, user_roles_remember


class TokenWithRolesAuthentication(TokenAuthentication):
    """DRF's token authentication, with the user's roles read in the same query.

    Every annotator call checks a role; reading the groups with the token saves a query per
    call on the hot path (next, label), and plain SQL saves compiling three subqueries.
    """

    def authenticate_credentials(self, key: str) -> tuple:
        token_model = self.get_model()
        params = [*(role.value for role in Role), key]
        sql = _token_user_sql(token_model)
        if connection.vendor == "postgresql":  # every API call: prepared, no ORM compiling
            row = fetch_one_prepared(sql, params)
            user = None
            if row is not None:
                columns = model_columns(get_user_model(), "u")
                (user,) = instances_from_row(row, [columns])
                for role, has_role in zip(Role, row[len(columns.attnames) :], strict=True):
                    setattr(user, f"has_{role.value}", has_role)
        else:
            user = next(iter(get_user_model().objects.raw(sql, params)), None)
        if user is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        user_roles_remember(user, [role for role in Role if getattr(user, f"has_{role.value}")])
        token = token_model(key=key, user=user)
        token._state.adding = False
        return (user, token)


@functools.cache
def _token_user_sql(token_model: type) -> str:
    quote = connection.ops.quote_name
    user_model = get_user_model()
    groups = user_model._meta.get_field("groups")
    user_pk = quote(user_model._meta.pk.column)
    member_user, member_group = quote(groups.m2m_column_name()), quote(groups.m2m_reverse_name())
    memberships = quote(groups.remote_field.through._meta.db_table)
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
