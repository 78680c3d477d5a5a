"""Migration 0020: pairs imported before the content hash read texts in NFC form (e0dec56)
get the hash the import computes now, so importing their file again finds them (rv6)."""

from __future__ import annotations

import hashlib
import importlib
import json
import unicodedata
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from annotation.importers._json import dumps_sorted
from annotation.importers.records import content_hash, kwise_content_hash
from annotation.models import Campaign, Pair
from annotation.services.imports import pairs_import

BEFORE = [("annotation", "0019_importjob_made_gold_count")]
AFTER = [("annotation", "0020_pair_content_hash_nfc")]
migration = importlib.import_module("annotation.migrations.0020_pair_content_hash_nfc")


def _nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


SYSTEM = "Répondez en français, s'il vous plaît"
PROMPT = "Expliquez à un élève pourquoi le ciel paraît bleu en été"
ANSWER = "La diffusion de Rayleigh disperse le bleu, d'où l'été"
RANKED = ["Le bleu est diffusé davantage", "À cause de l'océan", "Parce que c'est beau, voilà"]


def _conversation(prompt: str, system: str | None = None) -> list[dict[str, str]]:
    turns = [] if system is None else [{"role": "system", "content": system}]
    return [*turns, {"role": "user", "content": prompt}]


def _old_hash(conversation, response_a, response_b) -> str:
    # What the import digested before e0dec56: the texts as imported.
    payload = {"conversation": conversation, "response_a": response_a, "response_b": response_b}
    return hashlib.sha256(dumps_sorted(payload)).hexdigest()


def _old_kwise_hash(conversation, responses) -> str:
    payload = {"conversation": conversation, "responses": [r["content"] for r in responses]}
    return hashlib.sha256(dumps_sorted(payload)).hexdigest()


def _seed(campaign_model: Any, pair_model: Any) -> dict[str, Any]:
    """Pairs as imported before e0dec56, one campaign per case."""

    def pair(campaign, conversation, response_a, response_b, digest=None):
        return pair_model.objects.create(
            campaign=campaign,
            conversation=conversation,
            response_a=response_a,
            response_b=response_b,
            content_hash=digest or _old_hash(conversation, response_a, response_b),
        )

    plain = campaign_model.objects.create(name="imported before")
    ranking = campaign_model.objects.create(name="ranked before", item_kind="ranking")
    copies = campaign_model.objects.create(name="NFD then NFC")
    variants = campaign_model.objects.create(name="two decompositions")
    nfd_conversation = _conversation(_nfd(PROMPT), _nfd(SYSTEM))
    responses = [{"content": _nfd(text), "model": f"m{i}"} for i, text in enumerate(RANKED)]
    # A text decomposed in one word only: neither NFC nor NFD, the same pair in NFC form.
    half = ANSWER.replace("l'été", _nfd("l'été"))
    assert half not in (ANSWER, _nfd(ANSWER))
    seeded = {
        "nfd": pair(plain, nfd_conversation, _nfd(ANSWER), "non"),
        "nfc": pair(plain, _conversation(PROMPT), ANSWER, "oui"),
        # Not the import's hash, but every text is in NFC form: it is left alone.
        "ascii": pair(plain, _conversation("Why?"), "Rayleigh", "No", digest=f"{7:064x}"),
        "kwise": pair_model.objects.create(
            campaign=ranking,
            conversation=_conversation(_nfd(PROMPT)),
            response_a=responses[0]["content"],
            response_b=responses[1]["content"],
            responses=responses,
            content_hash=_old_kwise_hash(_conversation(_nfd(PROMPT)), responses),
        ),
        "nfd_first": pair(copies, _conversation(_nfd(PROMPT)), _nfd(ANSWER), "non"),
        "nfc_later": pair(copies, _conversation(PROMPT), ANSWER, "non"),
        "nfd_variant": pair(variants, _conversation(_nfd(PROMPT)), _nfd(ANSWER), "non"),
        "half_variant": pair(variants, _conversation(_nfd(PROMPT)), half, "non"),
    }
    return seeded


def _hashes(pair_model: Any) -> dict[int, str]:
    return dict(pair_model.objects.values_list("pk", "content_hash"))


def _expected(seeded: dict[str, Any]) -> dict[int, str]:
    """Each seeded pair's hash once migrated."""
    new_pair_hash = content_hash(_conversation(PROMPT), ANSWER, "non")
    expected = {pair.pk: pair.content_hash for pair in seeded.values()}
    expected[seeded["nfd"].pk] = content_hash(_conversation(PROMPT, SYSTEM), ANSWER, "non")
    expected[seeded["kwise"].pk] = kwise_content_hash(
        _conversation(PROMPT), [{"content": text} for text in RANKED]
    )
    # The first imported of two decompositions takes the NFC hash; the later one, and an NFD
    # pair whose campaign holds the NFC copy already, keep theirs (separate pairs as before).
    expected[seeded["nfd_variant"].pk] = new_pair_hash
    assert expected[seeded["nfc_later"].pk] == new_pair_hash
    return expected


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_nfd_pairs_the_nfc_hash_so_their_file_imports_as_duplicates(
    tmp_path,
):
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    seeded = _seed(apps.get_model("annotation", "Campaign"), apps.get_model("annotation", "Pair"))
    before = _hashes(apps.get_model("annotation", "Pair"))

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    pair_model = executor.loader.project_state(AFTER).apps.get_model("annotation", "Pair")
    expected = _expected(seeded)
    assert _hashes(pair_model) == expected
    assert sum(expected[pk] != before[pk] for pk in before) == 3
    # Rerun (both ways of finding the pairs): nothing left to change, the two kept apart
    # are counted again.
    assert migration.pairs_rehash(pair_model, connection, in_sql=True) == (0, 2)
    assert migration.pairs_rehash(pair_model, connection, in_sql=False) == (0, 2)
    assert _hashes(pair_model) == expected

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    plain = Campaign.objects.get(name="imported before")
    row = {"conversation": _conversation(_nfd(PROMPT), _nfd(SYSTEM)), "response_a": _nfd(ANSWER)}
    path = tmp_path / "again.jsonl"
    path.write_text(json.dumps({**row, "response_b": "non"}, ensure_ascii=False) + "\n")
    result = pairs_import(campaign=plain, path=path)
    assert (result.created, result.duplicates) == (0, 1)
    path.write_text(
        json.dumps({**row, "response_b": "non", "preferred": "a"}, ensure_ascii=False) + "\n"
    )
    result = pairs_import(campaign=plain, path=path, as_gold=True)
    assert (result.created, result.made_gold) == (0, 1)
    assert Pair.objects.get(pk=seeded["nfd"].pk).is_gold
    ranking = Campaign.objects.get(name="ranked before")
    path.write_text(
        json.dumps(
            {"prompt": _nfd(PROMPT), "responses": [_nfd(text) for text in RANKED]},
            ensure_ascii=False,
        )
        + "\n"
    )
    result = pairs_import(campaign=ranking, path=path)
    assert (result.created, result.duplicates) == (0, 1)
    assert Pair.objects.count() == len(seeded)


@pytest.mark.django_db
@pytest.mark.parametrize("in_sql", [True, False], ids=["postgresql-filter", "every-pair"])
@pytest.mark.parametrize("small", [False, True], ids=["one-chunk", "chunks-of-2"])
def test_both_ways_of_finding_the_pairs_rehash_the_same_ones(monkeypatch, in_sql, small):
    if small:
        # Pairs that would share a hash fall in different chunks (and windows of ids).
        monkeypatch.setattr(migration, "_CHUNK", 2)
        monkeypatch.setattr(migration, "_WINDOW", 3)
    seeded = _seed(Campaign, Pair)
    assert migration.pairs_rehash(Pair, connection, in_sql=in_sql) == (3, 2)
    assert _hashes(Pair) == _expected(seeded)
