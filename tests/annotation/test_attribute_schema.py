"""A campaign's attribute schema (``Campaign.attribute_schema``): the values a pair's
task_category, objectivity and controversiality may take. Checked when the setting is saved
(API, admin, creation), and applied to every import: a pair whose attribute is not listed is
refused at its line and the file stores nothing. It was stored and never read before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annotation.attribute_schema import (
    AttributeSchemaError,
    attribute_schema_problem,
    parse_attribute_schema,
)
from annotation.importers import ImportFormatError
from annotation.models import Campaign, Pair
from annotation.services.imports import pairs_import
from tests.conftest import api_client_for
from tests.factories import CampaignFactory

SCHEMA = {"task_category": ["math", "code"], "objectivity": ["objective", "subjective"]}


def test_a_schema_parses_to_allowed_values_per_attribute():
    assert parse_attribute_schema(SCHEMA) == {
        "task_category": frozenset({"math", "code"}),
        "objectivity": frozenset({"objective", "subjective"}),
    }
    assert parse_attribute_schema({}) == parse_attribute_schema(None) == {}


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (["math"], "must be an object"),
        ({"annotation_guideline": ["x"]}, "'annotation_guideline' cannot be listed"),
        ({"domain": ["x"]}, "'domain' cannot be listed"),
        ({"task_category": []}, "non-empty list"),
        ({"task_category": "math"}, "non-empty list"),
        ({"task_category": ["math", 3]}, "3 is not a value"),
        ({"task_category": ["math", " "]}, "' ' is not a value"),
        ({"task_category": [" math"]}, "' math' is not a value"),
        ({"task_category": ["math", "math"]}, "listed twice"),
        ({"task_category": ["x" * 101]}, "longer than 100 characters"),
        ({"task_category": [str(n) for n in range(1001)]}, "at most 1,000 values"),
    ],
)
def test_a_schema_that_is_not_attribute_to_values_is_refused_saying_why(raw, words):
    with pytest.raises(AttributeSchemaError, match=words.replace("(", r"\(")):
        parse_attribute_schema(raw)


def test_a_pair_fits_when_each_listed_attribute_is_absent_or_allowed():
    schema = parse_attribute_schema(SCHEMA)
    assert attribute_schema_problem(schema, {}) == ""
    assert (
        attribute_schema_problem(schema, {"task_category": "code", "controversiality": "x"}) == ""
    )
    assert attribute_schema_problem(schema, {"task_category": "Math"}) == (
        "attributes.task_category 'Math' is not one of this campaign's values (code, math)"
    )


@pytest.mark.django_db
def test_the_settings_api_refuses_a_malformed_schema_and_keeps_a_good_one(admin_user):
    campaign = CampaignFactory()
    api = api_client_for(admin_user)
    refused = api.patch(
        f"/api/campaigns/{campaign.pk}",
        {"attribute_schema": {"task_category": "math"}},
        format="json",
    )
    assert refused.status_code == 400, refused.content
    assert "attribute_schema" in refused.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).attribute_schema == {}
    kept = api.patch(f"/api/campaigns/{campaign.pk}", {"attribute_schema": SCHEMA}, format="json")
    assert kept.status_code == 200, kept.content
    assert Campaign.objects.get(pk=campaign.pk).attribute_schema == SCHEMA


def _jsonl(path: Path, categories: list[str | None]) -> Path:
    rows = []
    for number, category in enumerate(categories):
        row: dict[str, object] = {
            "prompt": f"Question {number}?",
            "response_a": "yes",
            "response_b": "no",
        }
        if category is not None:
            row["attributes"] = {"task_category": category}
        rows.append(json.dumps(row))
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.django_db
def test_an_import_refuses_a_pair_outside_the_schema_at_its_line_and_stores_nothing(tmp_path):
    campaign = CampaignFactory(attribute_schema=SCHEMA)
    path = _jsonl(tmp_path / "pairs.jsonl", ["math", None, "poetry"])
    with pytest.raises(
        ImportFormatError, match="line 3: attributes.task_category 'poetry' is not one of"
    ):
        pairs_import(campaign=campaign, path=path)
    assert not Pair.objects.filter(campaign=campaign).exists()

    result = pairs_import(campaign=campaign, path=_jsonl(tmp_path / "ok.jsonl", ["math", None]))
    assert result.created == 2
    assert sorted(Pair.objects.values_list("task_category", flat=True)) == ["", "math"]


@pytest.mark.django_db
def test_an_import_into_a_campaign_with_an_unreadable_stored_schema_applies_none(tmp_path):
    campaign = CampaignFactory()
    # Saved before the setting was checked (the settings refuse it until it is fixed).
    Campaign.objects.filter(pk=campaign.pk).update(attribute_schema=["math"])
    campaign.refresh_from_db()
    result = pairs_import(campaign=campaign, path=_jsonl(tmp_path / "p.jsonl", ["poetry"]))
    assert result.created == 1
