"""POST /api/model-versions/{id}/score: access rules, limits, and answers from a real worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.services.api_tokens import api_token_issue
from scoring.deploy.serving import SERVICE_GROUP
from scoring.models import ModelVersion
from scoring.reward_model import RewardModel, build_tiny_reward_model
from tests.conftest import api_client_for

CONVERSATION = [{"role": "user", "content": "How do I boil an egg?"}]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("serving") / "v1")


@pytest.fixture
def version(campaign, tiny_checkpoint: Path) -> ModelVersion:
    return ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint=str(tiny_checkpoint)
    )


@pytest.fixture
def service_client(db) -> APIClient:
    """A pipeline's account: a token, in the scoring-service group, with no role."""
    user = get_user_model().objects.create_user(username="rlhf-pipeline")
    user.groups.add(Group.objects.get_or_create(name=SERVICE_GROUP)[0])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=user)}")
    return client


def _url(version_id: int) -> str:
    return reverse("api-model-score", kwargs={"version_id": version_id})


def _pair_body() -> dict:
    return {
        "items": [
            {"conversation": CONVERSATION, "response": "Nine minutes in boiling water."},
            {
                "prompt": "How do I boil an egg?",
                "response_a": "Eggs are oval.",
                "response_b": "Nine minutes in boiling water.",
            },
        ]
    }


def test_a_service_token_scores_rewards_and_pairs_on_a_worker(
    worker, version, service_client, tiny_checkpoint
) -> None:
    response = service_client.post(_url(version.pk), _pair_body(), format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model_version"] == version.pk and body["number"] == 1
    single, pair = body["results"]
    model = RewardModel.load(tiny_checkpoint, device="cpu")
    expected = model.score_batch(
        [(CONVERSATION, "Nine minutes in boiling water."), (CONVERSATION, "Eggs are oval.")]
    )
    assert single["reward"] == pytest.approx(expected[0], abs=1e-4)
    assert pair["reward_b"] == pytest.approx(expected[0], abs=1e-4)
    assert pair["reward_a"] == pytest.approx(expected[1], abs=1e-4)
    assert pair["p_a_better"] == pytest.approx(
        1 / (1 + np.exp(-(expected[1] - expected[0]))), abs=1e-4
    )


def test_an_admin_may_score_too(worker, version, admin_user) -> None:
    response = api_client_for(admin_user).post(_url(version.pk), _pair_body(), format="json")
    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) == 2


def test_an_admin_member_of_the_campaign_may_score_its_versions_only(
    worker, version, annotator_b
) -> None:
    """They may activate and roll back the campaign's versions, so they may try them; another
    campaign's admin member may not (404, as for anyone not allowed)."""
    from annotation.models import CampaignMember
    from annotation.services.members import member_add
    from tests.factories import CampaignFactory

    member_add(campaign=version.campaign, user=annotator_b, role=CampaignMember.Role.ADMIN)
    response = api_client_for(annotator_b).post(_url(version.pk), _pair_body(), format="json")
    assert response.status_code == 200, response.content
    other = get_user_model().objects.create_user(username="other-admin")
    member_add(campaign=CampaignFactory(), user=other, role=CampaignMember.Role.ADMIN)
    response = api_client_for(other).post(_url(version.pk), _pair_body(), format="json")
    assert response.status_code == 404


def test_others_may_not_score(db, version, annotator_a, expert) -> None:
    assert APIClient().post(_url(version.pk), _pair_body(), format="json").status_code in (
        401,
        403,
    )
    for user in (annotator_a, expert):
        response = api_client_for(user).post(_url(version.pk), _pair_body(), format="json")
        assert response.status_code == 404
    assert api_client_for(annotator_a).get(_url(version.pk)).status_code in (404, 405)


def test_an_unknown_or_archived_version_is_refused(db, version, service_client) -> None:
    assert (
        service_client.post(_url(version.pk + 1000), _pair_body(), format="json").status_code == 404
    )
    version.status = ModelVersion.Status.ARCHIVED
    version.save()
    response = service_client.post(_url(version.pk), _pair_body(), format="json")
    assert response.status_code == 409
    assert "archived" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "items"),
        ({"items": []}, "items"),
        ({"items": [{"prompt": "hi"}]}, "response"),
        (
            {"items": [{"prompt": "hi", "response": "a", "response_a": "b", "response_b": "c"}]},
            "response",
        ),
        ({"items": [{"prompt": "hi", "response_a": "b"}]}, "response_b"),
        ({"items": [{"response": "a"}]}, "conversation"),
        (
            {"items": [{"prompt": "hi", "conversation": CONVERSATION, "response": "a"}]},
            "conversation",
        ),
        (
            {"items": [{"conversation": [{"role": "robot", "content": "x"}], "response": "a"}]},
            "robot",
        ),
        ({"items": [{"conversation": [], "response": "a"}]}, "conversation"),
        # The responses answer the last turn: a conversation ending on an assistant turn has
        # nothing for them to answer (and strict chat templates would fail in the worker).
        (
            {
                "items": [
                    {
                        "conversation": [*CONVERSATION, {"role": "assistant", "content": "x"}],
                        "response": "a",
                    }
                ]
            },
            "end with a user turn",
        ),
        ({"items": "not a list"}, "items"),
    ],
)
def test_bad_input_is_a_clear_400(db, version, service_client, body, message) -> None:
    response = service_client.post(_url(version.pk), body, format="json")
    assert response.status_code == 400
    assert message in str(response.json())


def test_the_batch_limits_are_settings(db, version, service_client, settings) -> None:
    settings.ARBITER = {**settings.ARBITER, "SCORE_MAX_ITEMS": 3, "SCORE_MAX_CHARS": 100}
    items = [{"prompt": "hi", "response": "a"}] * 4
    response = service_client.post(_url(version.pk), {"items": items}, format="json")
    assert response.status_code == 400
    assert "at most 3 items" in str(response.json())
    items = [{"prompt": "hi", "response": "a" * 120}]
    response = service_client.post(_url(version.pk), {"items": items}, format="json")
    assert response.status_code == 400
    assert "at most 100 characters" in str(response.json())


def test_no_worker_answering_is_a_504_within_the_timeout(
    transactional_db, version, service_client, settings
) -> None:
    """No worker consumes this queue: the request gives up after SCORE_TIMEOUT_S and the task
    it sent expires with it."""
    settings.ARBITER = {**settings.ARBITER, "SCORE_TIMEOUT_S": 0.5, "SCORE_QUEUE": "no-worker"}
    response = service_client.post(_url(version.pk), _pair_body(), format="json")
    assert response.status_code == 504
    assert "0.5 s" in response.json()["detail"]


def test_a_worker_failure_is_a_503_with_its_reason(worker, version, service_client) -> None:
    version.checkpoint = "/nonexistent/checkpoint"
    version.save()
    response = service_client.post(_url(version.pk), _pair_body(), format="json")
    assert response.status_code == 503
    assert "the scoring worker failed" in response.json()["detail"]


def test_a_conversation_the_chat_template_refuses_is_a_400(
    worker, campaign, service_client, tiny_checkpoint, tmp_path
) -> None:
    """Mistral- or Gemma-style templates refuse roles that do not alternate; that is the
    caller's input to change (a 400 naming the template's message), not a failed worker."""
    import shutil

    from transformers import AutoTokenizer

    checkpoint = tmp_path / "alternating"
    shutil.copytree(tiny_checkpoint, checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    tokenizer.chat_template = (
        "{% for m in messages %}"
        "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant') }}"
        "{% endif %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    )
    tokenizer.save_pretrained(checkpoint)
    version = ModelVersion.objects.create(
        campaign=campaign, number=2, base="tiny", checkpoint=str(checkpoint)
    )
    fine = {"items": [{"conversation": CONVERSATION, "response": "Nine minutes."}]}
    response = service_client.post(_url(version.pk), fine, format="json")
    assert response.status_code == 200, response.content
    two_user_turns = [*CONVERSATION, {"role": "user", "content": "And a soft one?"}]
    refused = {"items": [{"conversation": two_user_turns, "response": "Six minutes."}]}
    response = service_client.post(_url(version.pk), refused, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "scoring_bad_input"
    assert "roles must alternate" in body["detail"]


# Review 19: form bodies, odd tokens and a diverged model.


@pytest.mark.parametrize("format", ["multipart", None])
def test_a_form_body_over_the_item_limit_is_a_400(
    db, version, service_client, settings, format
) -> None:
    """Form bodies (the API's parsers take them) name items ``items[0]prompt``: they are a list
    only once validated, so the limit must be counted then too (it used to send them on)."""
    settings.ARBITER = {
        **settings.ARBITER,
        "SCORE_MAX_ITEMS": 2,
        "SCORE_TIMEOUT_S": 0.2,
        "SCORE_QUEUE": "no-worker",
    }
    body = {}
    for index in range(5):
        body[f"items[{index}]prompt"] = "How do I boil an egg?"
        body[f"items[{index}]response"] = "Nine minutes."
    response = service_client.post(_url(version.pk), body, format=format)
    assert response.status_code == 400, response.content
    assert "at most 2 items per request, got 5" in str(response.json())


def test_a_token_with_a_nul_character_is_a_401(db, version) -> None:
    response = APIClient().post(
        _url(version.pk),
        {"items": [{"prompt": "hi", "response": "a"}]},
        format="json",
        HTTP_AUTHORIZATION="Token abc\x00def",
    )
    assert response.status_code == 401


def test_a_model_scoring_nan_is_a_503_not_a_500(worker, campaign, service_client, tmp_path) -> None:
    """A diverged model (NaN weights: nothing stops training registering one) scores NaN,
    which no JSON number holds: the response was a 500 from the renderer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from scoring.reward_model.checkpoint import save_checkpoint

    checkpoint = build_tiny_reward_model(tmp_path / "good")
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint)
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    save_checkpoint(model, AutoTokenizer.from_pretrained(checkpoint), tmp_path / "diverged")
    version = ModelVersion.objects.create(
        campaign=campaign, number=3, base="tiny", checkpoint=str(tmp_path / "diverged")
    )
    body = {"items": [{"prompt": "hi", "response_a": "a", "response_b": "b"}]}
    response = service_client.post(_url(version.pk), body, format="json")
    assert response.status_code == 503, response.content
    assert "non-finite rewards" in response.json()["detail"]


def test_empty_turns_count_against_the_character_limit(db, version, service_client, settings):
    """Each turn costs its role's name: thousands of empty turns are not free."""
    settings.ARBITER = {**settings.ARBITER, "SCORE_MAX_CHARS": 100}
    turns = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}] * 20
    turns.append({"role": "user", "content": ""})
    body = {"items": [{"conversation": turns, "response": "a"}]}
    response = service_client.post(_url(version.pk), body, format="json")
    assert response.status_code == 400
    assert "at most 100 characters" in str(response.json())
