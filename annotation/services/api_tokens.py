"""API tokens, stored as digests: the raw key is shown once, when it is issued, and never kept.

DRF's ``Token`` model holds the digest in its ``key`` column, so a database dump or a
read-only SQL leak hands out no usable credential (as GitHub's and GitLab's access tokens and
django-rest-knox do). A raw key is 160 random bits (DRF's own ``generate_key``), so an
unsalted fast hash is the standard practice: no dictionary or brute force reaches such a key,
and a salted slow hash (a password's) would cost every API call a slow lookup for nothing.

A digest is ``b2$`` and 36 hex digits (blake2b, 144 bits: 39 characters of the column's 40).
A raw DRF key is 40 hex digits, so the two never look alike: the migration that hashes the
keys stored before skips the digests, and applying it again does no harm.
"""

from __future__ import annotations

import hashlib

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from rest_framework.authtoken.models import Token

DIGEST_PREFIX = "b2$"


def api_token_digest(key: str) -> str:
    """What ``Token.key`` holds for the raw ``key``."""
    return DIGEST_PREFIX + hashlib.blake2b(key.encode(), digest_size=18).hexdigest()


def is_api_token_digest(stored: str) -> bool:
    """Whether a stored ``Token.key`` is a digest (not a raw key kept from before)."""
    return stored.startswith(DIGEST_PREFIX)


def _lock_user(user: AbstractBaseUser) -> None:
    # Two issues for one user would each delete the old row and insert theirs: the second
    # insert breaks the token's one-per-user rule. The user's row lock puts them in turn.
    get_user_model().objects.select_for_update().filter(pk=user.pk).exists()


@transaction.atomic
def api_token_issue(*, user: AbstractBaseUser) -> str:
    """A fresh API key for ``user``, returned once (only its digest is stored); the user's
    previous key, if any, stops working."""
    _lock_user(user)
    # Through the ORM (not a QuerySet.update): the delete and save signals empty the token
    # cache of this process (annotation.authentication), so the old key fails at once here.
    Token.objects.filter(user_id=user.pk).delete()
    return _token_create(user)


@transaction.atomic
def api_token_ensure(*, user: AbstractBaseUser) -> str | None:
    """A fresh API key for ``user`` if they have none (returned once); None when they have
    one already, which stays as it is: its raw key cannot be shown again."""
    _lock_user(user)
    if Token.objects.filter(user_id=user.pk).exists():
        return None
    return _token_create(user)


def _token_create(user: AbstractBaseUser) -> str:
    """A new token row for ``user`` (who has none), storing the digest; the raw key."""
    key = Token.generate_key()
    Token.objects.create(key=api_token_digest(key), user_id=user.pk)
    return key
