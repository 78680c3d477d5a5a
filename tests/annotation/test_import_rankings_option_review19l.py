"""`import_pairs --rankings RULE` names the campaign it creates (README "Command line"): an
existing campaign of another kind or rule is refused, not silently imported into by its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotation.models import ItemKind, Pair, RankingExpansion
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

KWISE = {"prompt": "Name a prime number.", "responses": ["2", "4", "7", "9"]}
AB = {"prompt": "Hi?", "response_a": "Hello", "response_b": "Go away"}


def jsonl(path: Path, row: dict) -> Path:
    path.write_text(json.dumps(row) + "\n")
    return path


def test_it_refuses_a_ranking_rule_other_than_the_existing_campaigns(tmp_path):
    CampaignFactory(
        name="uf", item_kind=ItemKind.RANKING, ranking_expansion=RankingExpansion.ALL_PAIRS
    )
    path = jsonl(tmp_path / "k.jsonl", KWISE)
    with pytest.raises(CommandError, match="all_pairs"):
        call_command("import_pairs", str(path), "--campaign", "uf", "--rankings", "adjacent")
    assert not Pair.objects.exists()


def test_it_refuses_rankings_for_an_existing_pair_campaign(tmp_path):
    CampaignFactory(name="ab")
    path = jsonl(tmp_path / "ab.jsonl", AB)
    with pytest.raises(CommandError, match="not a ranking campaign"):
        call_command("import_pairs", str(path), "--campaign", "ab", "--rankings", "adjacent")
    assert not Pair.objects.exists()


def test_the_existing_campaigns_own_rule_is_accepted(tmp_path, capsys):
    CampaignFactory(
        name="uf", item_kind=ItemKind.RANKING, ranking_expansion=RankingExpansion.ADJACENT
    )
    path = jsonl(tmp_path / "k.jsonl", KWISE)
    call_command("import_pairs", str(path), "--campaign", "uf", "--rankings", "adjacent")
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["created"] == 1
