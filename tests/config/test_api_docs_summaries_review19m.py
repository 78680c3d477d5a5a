"""The API docs' summaries say what each method does: GET /api/campaigns/{id}/retrain (which
only reads the settings a retrain starts from) was listed as "Retrain now (closes the open
round)", as its POST is."""

from __future__ import annotations

from drf_spectacular.generators import SchemaGenerator


def test_reading_the_retrain_settings_is_not_documented_as_a_retrain():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    retrain = schema["paths"]["/api/campaigns/{campaign_id}/retrain"]
    assert retrain["post"]["summary"] == "Retrain now (closes the open round)"
    assert "Retrain now" not in retrain["get"]["summary"]
    assert "settings" in retrain["get"]["summary"]
