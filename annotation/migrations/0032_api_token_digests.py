"""API tokens stored as digests: every raw key kept in clear becomes its digest, so the clients
that hold those keys keep working and the table hands out none of them."""

from __future__ import annotations

import hashlib

from django.db import migrations

# As annotation.services.api_tokens computes it today (a migration keeps its own copy: the
# service may change, the rows this wrote do not).
DIGEST_PREFIX = "b2$"


def _digest(key: str) -> str:
    return DIGEST_PREFIX + hashlib.blake2b(key.encode(), digest_size=18).hexdigest()


def hash_clear_keys(apps, schema_editor):
    """Each stored key that is not a digest already is replaced by its digest. A digest never
    looks like a raw key (its prefix), so a second run leaves the digests alone."""
    Token = apps.get_model("authtoken", "Token")
    tokens = Token.objects.using(schema_editor.connection.alias)
    clear = list(tokens.exclude(key__startswith=DIGEST_PREFIX).values_list("key", flat=True))
    for key in clear:
        # The key is the primary key: an UPDATE of the column, not a save (which would insert
        # a second row beside the clear one).
        tokens.filter(key=key).update(key=_digest(key))


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0031_member_invited_at"),
        ("authtoken", "0004_alter_tokenproxy_options"),
    ]

    operations = [
        # Backwards: nothing. A digest cannot be turned back into its key, and the digests
        # are what the code authenticates against; were this applied again, it skips them.
        migrations.RunPython(hash_clear_keys, migrations.RunPython.noop),
    ]
