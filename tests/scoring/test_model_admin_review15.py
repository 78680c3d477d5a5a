"""The Django admin's ModelVersion pages go through the registry: every field is read-only
(an edit could archive the active version, or make Stage 2's gold model serve), and the
Activate and Archive actions call ``model_version_activate`` and ``model_version_archive``,
showing their refusals as messages."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from scoring.models import ModelVersion
from tests.factories import CampaignFactory

LIST_URL = "/admin/scoring/modelversion/"


@pytest.fixture
def versions(campaign, tmp_path) -> list[ModelVersion]:
    """v1 loop (active), v2 loop (ready), v3 gold: each with its checkpoint on disk."""
    made = []
    for number, kind in ((1, "loop"), (2, "loop"), (3, "gold")):
        checkpoint = tmp_path / f"v{number}"
        checkpoint.mkdir()
        made.append(
            ModelVersion.objects.create(
                campaign=campaign,
                number=number,
                base="tiny",
                checkpoint=str(checkpoint),
                kind=kind,
                is_active=number == 1,
                label_snapshot={"pairs": 10},
                metrics={"heldout": None},
            )
        )
    return made


@pytest.fixture
def client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def _state(version: ModelVersion) -> tuple[str, bool]:
    version.refresh_from_db()
    return version.status, version.is_active


def _act(client: Client, action: str, *selected: ModelVersion) -> list[tuple[str, str]]:
    response = client.post(
        LIST_URL, {"action": action, "_selected_action": [v.pk for v in selected]}, follow=True
    )
    assert response.redirect_chain == [(LIST_URL, 302)], response.content
    # Shown (and so consumed) on the list the action redirects to.
    return [(message.level_tag, message.message) for message in response.context["messages"]]


def _form(version: ModelVersion, **changes: object) -> dict[str, object]:
    """Every field of the version as the old edit form posted it, with ``changes``."""
    data: dict[str, object] = {
        "campaign": version.campaign_id,
        "number": version.number,
        "base": version.base,
        "mode": version.mode,
        "kind": version.kind,
        "checkpoint": version.checkpoint,
        "label_snapshot": json.dumps(version.label_snapshot),
        "metrics": json.dumps(version.metrics),
        "heldout_accuracy": "0.99",
        "activation_note": "",
        "status": version.status,
    }
    if version.is_active:
        data["is_active"] = "on"
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


def test_the_edit_form_changes_nothing_the_registry_owns(client, versions):
    active, ready, gold = versions
    for version in versions:
        page = client.get(f"{LIST_URL}{version.pk}/change/")
        assert page.status_code == 200
        for field in ("status", "is_active", "kind", "checkpoint", "metrics", "activation_note"):
            assert f'name="{field}"' not in page.content.decode(), field

    client.post(f"{LIST_URL}{active.pk}/change/", _form(active, status="archived"))
    client.post(f"{LIST_URL}{ready.pk}/change/", _form(ready, kind="gold", checkpoint="/x"))
    client.post(f"{LIST_URL}{gold.pk}/change/", _form(gold, is_active="on"))

    assert _state(active) == ("ready", True)
    kept = ModelVersion.objects.get(pk=ready.pk)
    assert (kept.kind, kept.checkpoint, kept.heldout_accuracy) == ("loop", ready.checkpoint, None)
    assert _state(gold) == ("ready", False)
    assert client.get(f"{LIST_URL}add/").status_code == 403  # only training registers one


def test_archive_refuses_the_active_version_and_archives_another(client, versions):
    active, ready, _gold = versions
    messages = _act(client, "archive", active, ready)
    assert messages == [
        ("error", f"{active}: activate another version before archiving the active one"),
        ("success", f"{ready} is archived"),
    ]
    assert _state(active) == ("ready", True)
    assert _state(ready) == ("archived", False)


def test_activate_goes_through_the_registry(client, versions):
    active, ready, gold = versions
    assert _act(client, "activate", gold) == [
        ("error", f"{gold}: v3 is Stage 2's gold model; it never serves")
    ]
    assert _state(gold) == ("ready", False)

    assert _act(client, "activate", ready) == [("success", f"{ready} is now the active version")]
    assert _state(ready) == ("ready", True)
    assert _state(active) == ("ready", False)

    _act(client, "archive", active)
    assert _act(client, "activate", active) == [
        ("error", f"{active}: v1 is archived; only ready versions run")
    ]
    assert _state(active) == ("archived", False)


def test_activate_takes_one_version_per_campaign(client, versions, tmp_path):
    active, ready, _gold = versions
    other_checkpoint = tmp_path / "other"
    other_checkpoint.mkdir()
    other = ModelVersion.objects.create(
        campaign=CampaignFactory(), number=1, base="tiny", checkpoint=str(other_checkpoint)
    )
    assert _act(client, "activate", active, ready, other) == [
        ("error", "a campaign has one active version: select one version per campaign"),
        ("success", f"{other} is now the active version"),
    ]
    assert _state(active) == ("ready", True)
    assert _state(ready) == ("ready", False)
    assert _state(other) == ("ready", True)


def test_the_job_admin_shows_jobs_and_changes_none(client, campaign):
    """An edited status in the Django admin would orphan a running worker or revive a
    finished job: the admin only shows jobs."""
    from django.contrib.auth import get_user_model

    from scoring.models import Job

    job = Job.objects.create(campaign=campaign, kind=Job.Kind.TRAIN, status=Job.Status.RUNNING)
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.org", "x"))
    page = client.get(f"/admin/scoring/job/{job.pk}/change/")
    assert page.status_code == 200 and b'name="status"' not in page.content
    client.post(f"/admin/scoring/job/{job.pk}/change/", {"status": "succeeded"})
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING
    assert client.get("/admin/scoring/job/add/").status_code == 403
    assert client.get("/admin/scoring/job/").status_code == 200
