"""The scoring endpoint's service: who may score with a version, sending a batch to a worker
and waiting for its answer.

The web process never loads a model. It sends ``scoring.score_request`` to ``SCORE_QUEUE``
(default ``gpu``, where the model's device is; a queue of its own lets a dedicated worker serve
while the ``gpu`` worker trains) with the validated batch and a request id, and polls the cache
for the answer under that id until ``SCORE_TIMEOUT_S``; the task expires at the same moment,
so a request the web stopped waiting for is dropped by the worker rather than scored late.
Answers go through the cache, not Celery's result backend (which this project does not use):
a short-lived value keyed by a random id, read once.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, User
from django.core.cache import cache
from django.db import transaction
from django.http import Http404

from annotation.roles import Role, user_has_role
from annotation.selectors import is_campaign_admin
from annotation.services.api_tokens import api_token_ensure, api_token_issue
from core.errors import ApplicationError, BadRequest, Conflict, Unavailable
from scoring.models import ModelVersion

logger = logging.getLogger(__name__)

# Members of this group may score with any ready version through the API (and do nothing else
# an admin can): the account an RLHF pipeline's token belongs to.
SERVICE_GROUP = "scoring-service"
TASK_NAME = "scoring.score_request"
# How long an answer waits in the cache for a web process that has not read it yet.
ANSWER_TTL_S = 120


class ScoringError(ApplicationError):
    code = "scoring_failed"
    status = 503


class ScoringRefused(Conflict, ScoringError):
    """The version cannot serve (archived)."""

    code = "scoring_refused"


class ScoringUnavailable(Unavailable, ScoringError):
    """No worker could take or finish the request (broker down, worker error)."""

    code = "scoring_unavailable"


class ScoringBadInput(BadRequest, ScoringError):
    """The model refuses a conversation of the batch (its chat template's own rule, such as
    roles that must alternate): a request to change, found only where the model is."""

    code = "scoring_bad_input"


class ScoringTimeout(ScoringError):
    """No worker answered in time."""

    code = "scoring_timeout"
    status = 504


def score_limits() -> dict[str, Any]:
    return {
        "queue": str(settings.ARBITER.get("SCORE_QUEUE", "gpu")),
        "max_items": int(settings.ARBITER.get("SCORE_MAX_ITEMS", 64)),
        "max_chars": int(settings.ARBITER.get("SCORE_MAX_CHARS", 2_000_000)),
        "timeout_s": float(settings.ARBITER.get("SCORE_TIMEOUT_S", 30.0)),
    }


@dataclass(frozen=True)
class ScoringServiceAccount:
    username: str
    token: str | None  # the raw key when one was issued now; None: the existing one is kept
    created: bool


@transaction.atomic
def scoring_service_account(*, username: str, new_token: bool = False) -> ScoringServiceAccount:
    """A user in the scoring-service group (created with it where missing) and its API token.

    The token is returned once, when it is issued (only its digest is stored): for an account
    without one, or with ``new_token``, which revokes the account's previous token. An
    account that has one keeps it, and ``token`` is None: it cannot be shown again.

    A new account gets no usable password (it signs in with its token alone) and no role. An
    existing user joins the group only if they hold no role and are neither staff nor
    superuser: an operator's typo must not turn a person's account into a service one, nor
    keep a person's rights on the pipeline's token (PermissionError)."""
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    created = user is None
    if user is None:
        user = user_model(username=username)
        user.set_unusable_password()
        user.full_clean(exclude=["password"])
        user.save()
    else:
        role_names = [role.value for role in Role]
        if (
            user.is_staff
            or user.is_superuser
            or user.groups.filter(name__in=role_names).exists()
        ):
            raise PermissionError(
                f"{username!r} is a person's account (a role, staff or superuser): a "
                "scoring-service account must be one of its own"
            )
    group, _ = Group.objects.get_or_create(name=SERVICE_GROUP)
    user.groups.add(group)
    token = api_token_issue(user=user) if new_token else api_token_ensure(user=user)
    return ScoringServiceAccount(username=username, token=token, created=created)


def user_may_score(user: AbstractBaseUser | AnonymousUser) -> bool:
    if not user.is_authenticated:
        return False
    if user_has_role(user, Role.ADMIN):
        return True
    return user.groups.filter(name=SERVICE_GROUP).exists()  # type: ignore[attr-defined]


def model_version_for_scoring(
    *, version_id: int, user: AbstractBaseUser | AnonymousUser
) -> ModelVersion:
    """The version, for a site admin, a scoring-service account or an admin member of its
    campaign (who may activate and roll it back, so may try it); 404 for everyone else."""
    if not user.is_authenticated:
        raise Http404("No such model version.")
    version = ModelVersion.objects.select_related("campaign").filter(pk=version_id).first()
    if version is None:
        raise Http404("No such model version.")
    if user_may_score(user):
        return version
    assert isinstance(user, User)  # noqa: S101 - authenticated above
    if not is_campaign_admin(campaign_id=version.campaign_id, user=user):
        raise Http404("No such model version.")
    return version


def _answer_key(request_id: str) -> str:
    return f"arbiter:score-answer:{request_id}"


def model_version_score(
    *, version: ModelVersion, items: list[dict[str, Any]], timeout_s: float | None = None
) -> list[dict[str, float]]:
    """Score validated items with ``version`` on a worker; one result per item, in order."""
    if version.status != ModelVersion.Status.READY:
        raise ScoringRefused(f"model version {version.number} is {version.status}, not ready")
    limits = score_limits()
    timeout_s = limits["timeout_s"] if timeout_s is None else timeout_s
    request_id = uuid.uuid4().hex
    deadline = time.time() + timeout_s
    try:
        current_app.send_task(
            TASK_NAME,
            kwargs={
                "version_id": version.pk,
                "request_id": request_id,
                "items": items,
                "deadline": deadline,
            },
            queue=limits["queue"],
            expires=timeout_s,
        )
    except Exception as error:  # kombu raises many types when the broker is unreachable
        logger.warning("scoring request not sent: %s", error)
        raise ScoringUnavailable("the scoring queue is unavailable; try again later") from error
    answer = _wait_for_answer(_answer_key(request_id), deadline)
    if answer is None:
        raise ScoringTimeout(
            f"no scoring worker answered within {timeout_s:g} s (is a worker consuming the "
            f"`{limits['queue']}` queue running?)"
        )
    if "bad_input" in answer:
        raise ScoringBadInput(answer["bad_input"])
    if "error" in answer:
        raise ScoringUnavailable(f"the scoring worker failed: {answer['error']}")
    return answer["results"]


def _template_errors() -> tuple[type[BaseException], ...]:
    """What a chat template raises to refuse a conversation (transformers renders templates
    with jinja2, which torch installs; without it no template renders at all)."""
    try:
        from jinja2.exceptions import TemplateError
    except ImportError:
        return ()
    return (TemplateError,)


def _wait_for_answer(key: str, deadline: float) -> dict[str, Any] | None:
    poll_s = 0.02
    while True:
        answer = cache.get(key)
        if answer is not None:
            cache.delete(key)
            return answer
        remaining = deadline - time.time()
        if remaining <= 0:
            return None
        time.sleep(min(poll_s, remaining))
        poll_s = min(poll_s * 1.5, 0.25)


def score_request_run(
    *, version_id: int, request_id: str, items: list[dict[str, Any]], deadline: float
) -> None:
    """Worker side: score the batch and leave the answer for the waiting web process."""
    if time.time() > deadline:
        return  # the web process gave up already; nobody would read the answer
    from scoring.deploy.scorer import score_items

    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        answer: dict[str, Any] = {"error": f"model version {version_id} no longer exists"}
    else:
        try:
            answer = {"results": score_items(checkpoint=version.checkpoint, items=items)}
        except _template_errors() as error:  # raise_exception() in the model's chat template
            answer = {"bad_input": f"the model's chat template refuses a conversation: {error}"}
        except Exception as error:  # reported to the caller as a 503, and logged here
            logger.exception("scoring request %s failed", request_id)
            answer = {"error": f"{type(error).__name__}: {error}"}
    cache.set(_answer_key(request_id), answer, timeout=ANSWER_TTL_S)
