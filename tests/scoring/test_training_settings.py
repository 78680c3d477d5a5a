"""Training settings (mode, base model, epochs, learning rate, max length, token budget,
gradient checkpointing, processes, strategy, Liger, precision) from the Retrain form, the API
and the command line, with their defaults shown, and bad values refused with nothing started."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from scoring.models import Job
from scoring.reward_model import build_tiny_reward_model
from scoring.reward_model.job_settings import (
    SettingsError,
    parse_training_settings,
    training_defaults,
)
from tests.conftest import api_client_for
from tests.factories import CampaignFactory

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_settings_are_typed_and_bad_ones_are_named() -> None:
    parsed = parse_training_settings(
        {"mode": "full", "epochs": "2.5", "token_budget": "8192", "processes": 2,
         "gradient_checkpointing": "on", "max_length": "", "liger": False, "strategy": "fsdp",
         "precision": "float32"}
    )
    assert parsed == {
        "mode": "full", "epochs": 2.5, "token_budget": 8192, "processes": 2,
        "gradient_checkpointing": True, "liger": False, "strategy": "fsdp",
        "precision": "float32",
    }
    with pytest.raises(SettingsError) as error:
        parse_training_settings(
            {"mode": "sideways", "learning_rate": "fast", "token_budget": 3, "processes": "1.5",
             "strategy": "zero3", "precision": "fp8"}
        )
    assert set(error.value.errors) == {
        "mode", "learning_rate", "token_budget", "processes", "strategy", "precision"
    }
    with pytest.raises(SettingsError, match="only in full mode"):
        parse_training_settings({"processes": 2})
    with pytest.raises(SettingsError, match="fsdp trains only in full mode"):
        parse_training_settings({"mode": "head", "strategy": "fsdp"})
    assert training_defaults()["token_budget"] == 2048 and training_defaults()["processes"] == 1
    assert training_defaults()["strategy"] == "ddp" and training_defaults()["precision"] == "auto"


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.mark.django_db
def test_the_retrain_form_shows_the_defaults_then_the_campaigns_last_choice(
    admin_client, tmp_path, django_capture_on_commit_callbacks
):
    campaign = CampaignFactory()
    url = f"/scoring/campaigns/{campaign.pk}/models/"
    html = admin_client.get(url).content.decode()
    assert 'name="token_budget"' in html and 'value="2048"' in html
    assert "Default: 2048." in html and 'name="processes"' in html
    assert 'name="strategy"' in html and "Default: ddp." in html
    assert '<option value="fsdp"' in html
    base = build_tiny_reward_model(tmp_path / "base")
    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post(
            f"/scoring/campaigns/{campaign.pk}/retrain",
            {"mode": "full", "base_model": str(base), "token_budget": "4096",
             "gradient_checkpointing": "on", "processes": "2", "epochs": "3",
             "strategy": "fsdp"},
            **HTMX,
        )
    assert response.status_code == 200
    job = Job.objects.get(campaign=campaign)
    assert job.params["mode"] == "full" and job.params["base_model"] == str(base)
    assert job.params["token_budget"] == 4096 and job.params["processes"] == 2
    assert job.params["gradient_checkpointing"] is True and job.params["epochs"] == 3.0
    assert job.params["strategy"] == "fsdp"
    html = admin_client.get(url).content.decode()
    assert 'value="4096"' in html and str(base) in html
    assert '<option value="fsdp" selected>' in html


@pytest.mark.django_db
def test_the_retrain_form_refuses_bad_settings_and_starts_nothing(admin_client, tmp_path):
    campaign = CampaignFactory()
    retrain = f"/scoring/campaigns/{campaign.pk}/retrain"
    bad = admin_client.post(retrain, {"mode": "full", "token_budget": "lots"}, **HTMX)
    assert bad.status_code == 422 and "token_budget" in bad.content.decode()
    missing = admin_client.post(
        retrain, {"mode": "full", "base_model": str(tmp_path / "nowhere")}, **HTMX
    )
    assert missing.status_code == 422 and "not a model directory" in missing.content.decode()
    plain = admin_client.post(retrain, {"mode": "head", "processes": "4"})
    assert plain.status_code == 400 and "only in full mode" in plain.content.decode()
    assert not Job.objects.filter(campaign=campaign).exists()


@pytest.mark.django_db
def test_the_api_shows_defaults_and_records_settings(
    admin_user, tmp_path, django_capture_on_commit_callbacks
):
    campaign = CampaignFactory()
    api = api_client_for(admin_user)
    url = f"/api/campaigns/{campaign.pk}/retrain"
    shown = api.get(url).json()["settings"]
    assert shown["token_budget"] == 2048 and shown["mode"] == "head"
    assert shown["gradient_checkpointing"] is False and shown["processes"] == 1
    assert shown["strategy"] == "ddp"
    refused = api.post(url, {"mode": "full", "processes": 0}, format="json")
    assert refused.status_code == 400 and "processes" in refused.json()
    refused = api.post(url, {"mode": "head", "strategy": "fsdp"}, format="json")
    assert refused.status_code == 400 and "fsdp trains only in full mode" in str(refused.json())
    refused = api.post(url, {"mode": "full", "base_model": str(tmp_path)}, format="json")
    assert refused.status_code == 400 and "not a model directory" in refused.json()["detail"]
    assert not Job.objects.filter(campaign=campaign).exists()
    long_window = tmp_path / "long-window"
    long_window.mkdir()
    (long_window / "config.json").write_text('{"max_position_embeddings": 40960}')
    with django_capture_on_commit_callbacks(execute=False):
        started = api.post(
            url,
            {"mode": "full", "max_length": 4096, "gradient_checkpointing": True, "processes": 2,
             "learning_rate": 1e-5, "strategy": "fsdp", "base_model": str(long_window)},
            format="json",
        )
    assert started.status_code == 202
    params = started.json()["params"]
    assert params["max_length"] == 4096 and params["processes"] == 2
    assert params["learning_rate"] == 1e-5 and params["gradient_checkpointing"] is True
    assert params["strategy"] == "fsdp"


@pytest.mark.django_db
def test_a_retrain_through_the_api_keeps_the_campaigns_settings_it_does_not_name(
    admin_user, tmp_path, django_capture_on_commit_callbacks
):
    campaign = CampaignFactory()
    base = tmp_path / "my-base"
    base.mkdir()
    (base / "config.json").write_text('{"max_position_embeddings": 512}')
    chosen = {"mode": "full", "base_model": str(base), "epochs": 3.0, "token_budget": 1024}
    Job.objects.create(
        campaign=campaign, kind=Job.Kind.LOOP, status=Job.Status.SUCCEEDED, params=chosen
    )
    api = api_client_for(admin_user)
    url = f"/api/campaigns/{campaign.pk}/retrain"
    shown = api.get(url).json()["settings"]
    assert {name: shown[name] for name in chosen} == chosen
    # Longer than the base model's window: refused up front, naming both.
    refused = api.post(url, {"max_length": 1000}, format="json")
    assert refused.status_code == 400
    assert "max_length: 1000 exceeds the base model's 512 positions" in refused.json()["detail"]
    with django_capture_on_commit_callbacks(execute=False):
        started = api.post(url, {"learning_rate": 1e-5, "max_length": 256}, format="json")
    assert started.status_code == 202, started.content
    params = started.json()["params"]
    assert {name: params[name] for name in chosen} == chosen  # what GET showed
    assert params["learning_rate"] == 1e-5 and params["max_length"] == 256
    # null or "" asks for the default, for a choice as for any other setting.
    Job.objects.filter(pk=started.json()["id"]).update(status=Job.Status.CANCELLED)
    with django_capture_on_commit_callbacks(execute=False):
        reset = api.post(url, {"mode": None, "strategy": "", "epochs": None}, format="json")
    assert reset.status_code == 202, reset.content
    params = reset.json()["params"]
    # The campaign's full mode and 3 epochs give way to the defaults; "" leaves ddp as is.
    assert params["mode"] == "head" and params.get("epochs") != 3.0
    assert params.get("strategy", "ddp") == "ddp"
    assert params["base_model"] == str(base)  # not named: the campaign's


@pytest.mark.django_db
def test_the_command_line_shows_defaults_and_refuses_bad_settings():
    campaign = CampaignFactory()
    from scoring.management.commands.train_reward_model import Command

    parser = Command().create_parser("manage.py", "train_reward_model")
    help_text = parser.format_help()
    assert "--token-budget" in help_text and "Default: 2048." in help_text
    assert "--gradient-checkpointing" in help_text and "--processes" in help_text
    assert "--strategy {ddp,fsdp}" in help_text and "Default: ddp." in help_text
    with pytest.raises(CommandError, match="token_budget"):
        call_command(
            "train_reward_model", "--campaign", campaign.name, "--mode", "full",
            "--token-budget", "huge", stdout=io.StringIO(),
        )
    with pytest.raises(CommandError, match="only in full mode"):
        call_command(
            "train_reward_model", "--campaign", campaign.name, "--processes", "2",
            stdout=io.StringIO(),
        )
    # The two options outside the settings table are checked as clearly.
    for flag, value, named in (
        ("--max-steps", "-1", "max_steps"),
        ("--train-on-gold-share", "2", "train_on_gold_share"),
    ):
        with pytest.raises(CommandError, match=named):
            call_command(
                "train_reward_model", "--campaign", campaign.name, flag, value,
                stdout=io.StringIO(),
            )
    assert not Job.objects.filter(campaign=campaign).exists()
