"""`import_pairs --campaign NAME` reads the name as the page and the API do: surrounding
spaces are no part of it, so " Demo" imports into "Demo" instead of creating a second one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotation.models import Campaign, Pair
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

AB = {"prompt": "Hi?", "response_a": "Hello", "response_b": "Go away"}


def _file(tmp_path: Path, prompt: str = "Hi?") -> Path:
    path = tmp_path / f"{len(prompt)}.jsonl"
    path.write_text(json.dumps({**AB, "prompt": prompt}) + "\n")
    return path


def test_a_name_with_surrounding_spaces_imports_into_the_campaign_of_that_name(tmp_path):
    demo = CampaignFactory(name="Demo")

    call_command("import_pairs", str(_file(tmp_path)), "--campaign", " Demo\t")

    assert list(Campaign.objects.values_list("name", flat=True)) == ["Demo"]
    assert list(Pair.objects.values_list("campaign_id", flat=True)) == [demo.pk]


def test_a_new_campaign_is_created_under_the_trimmed_name(tmp_path):
    call_command("import_pairs", str(_file(tmp_path)), "--campaign", "  Fresh  ")
    call_command("import_pairs", str(_file(tmp_path, "Hello?")), "--campaign", "Fresh")

    assert list(Campaign.objects.values_list("name", flat=True)) == ["Fresh"]
    assert Pair.objects.filter(campaign__name="Fresh").count() == 2


def test_a_name_of_spaces_only_is_refused(tmp_path):
    with pytest.raises(CommandError, match="needs a name"):
        call_command("import_pairs", str(_file(tmp_path)), "--campaign", "   ")
    assert not Campaign.objects.exists()
