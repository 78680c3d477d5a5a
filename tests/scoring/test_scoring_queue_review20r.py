"""POST /api/model-versions/{id}/score with a queue of its own (ARBITER_SCORE_QUEUE): when no
worker answers, the 504 names that queue, not `gpu`, so the operator starts the right worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.services.api_tokens import api_token_issue
from scoring.deploy.serving import SERVICE_GROUP
from scoring.models import ModelVersion
from scoring.reward_model import build_tiny_reward_model


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("serving-queue") / "v1")


def test_the_timeout_names_the_scoring_queue_nobody_consumes(
    transactional_db, campaign, tiny_checkpoint, settings
) -> None:
    # A dedicated serving queue (the README's advice, so the gpu worker may train meanwhile)
    # with no worker on it yet.
    settings.ARBITER = {**settings.ARBITER, "SCORE_TIMEOUT_S": 0.5, "SCORE_QUEUE": "rlhf-serve"}
    version = ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint=str(tiny_checkpoint)
    )
    user = get_user_model().objects.create_user(username="rlhf-pipeline")
    user.groups.add(Group.objects.get_or_create(name=SERVICE_GROUP)[0])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=user)}")

    response = client.post(
        reverse("api-model-score", kwargs={"version_id": version.pk}),
        {"items": [{"prompt": "How do I boil an egg?", "response": "Nine minutes."}]},
        format="json",
    )

    assert response.status_code == 504
    detail = response.json()["detail"]
    assert "0.5 s" in detail
    assert "`rlhf-serve` queue" in detail
    assert "`gpu`" not in detail
