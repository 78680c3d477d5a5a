"""An export's download name is a safe file name: the demo campaign "Demo: checkable answers"
was offered as "Demo:_checkable_answers-export-v1.jsonl", a name Windows refuses and in which a
campaign named "a/b" would read as a folder."""

from __future__ import annotations

import pytest

from scoring.datasets.export import ExportFilters, export_create, export_run
from scoring.models import ExportSnapshot
from tests.conftest import api_client_for
from tests.scoring import test_export

# Fixtures shared with the export service tests.
annotators = test_export.annotators
history = test_export.history


@pytest.fixture
def export_dir(settings, tmp_path):
    settings.ARBITER = {**settings.ARBITER, "EXPORT_DIR": tmp_path / "exports"}
    return tmp_path / "exports"


@pytest.mark.parametrize(
    ("campaign_name", "expected"),
    [
        ("Demo: checkable answers", "Demo_checkable_answers-export-v1.jsonl"),
        ("team/a\\b <v2>?", "teamab_v2-export-v1.jsonl"),
    ],
)
def test_the_download_name_keeps_only_safe_characters(
    campaign, history, admin_user, export_dir, campaign_name, expected
):
    campaign.name = campaign_name
    campaign.save(update_fields=["name"])
    snapshot = export_create(
        campaign=campaign,
        file_format="jsonl",
        filters=ExportFilters(),
        user=admin_user,
        enqueue=False,
    )
    export_run(job_id=snapshot.job_id)
    snapshot = ExportSnapshot.objects.get(pk=snapshot.pk)
    response = api_client_for(admin_user).get(f"/api/exports/{snapshot.pk}/download")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="{expected}"'
