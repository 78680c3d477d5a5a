"""Helpers for the reward-model-in-the-loop tests: a tiny base model, a campaign in rounds,
and annotators who label through the real services."""

from __future__ import annotations

import atexit
import functools
import random
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User

from annotation.models import Campaign, Pair, Round
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_submit
from scoring.loop.model_jobs import job_run_inline
from scoring.loop.requests import training_request
from scoring.models import Job, ModelVersion
from tests.factories import CampaignFactory, PairFactory


@functools.cache
def tiny_base_dir() -> Path:
    """A ~4M-parameter random BERT reward model, built once per test process."""
    from scoring.reward_model import build_tiny_reward_model

    root = Path(tempfile.mkdtemp(prefix="arbiter-tiny-rm-"))
    atexit.register(shutil.rmtree, root, True)
    return build_tiny_reward_model(root / "tiny")


def use_tiny_base(settings_fixture, model_dir: Path | None = None) -> Path:  # noqa: ANN001
    """Point ARBITER["BASE_MODEL"] (and optionally MODEL_DIR) at test-local paths."""
    base = tiny_base_dir()
    # Jobs run inline inside a test's transaction: the heartbeat thread's own connection
    # cannot see the job row and would take it for lost on a slow (loaded) machine. Worker
    # processes read their environment, not this.
    arbiter = {**settings_fixture.ARBITER, "BASE_MODEL": str(base),
               "JOB_HEARTBEAT_SECONDS": 3600.0}
    if model_dir is not None:
        arbiter["MODEL_DIR"] = model_dir
    settings_fixture.ARBITER = arbiter
    return base


def campaign_models_dir(campaign: Campaign) -> Path:
    return Path(settings.ARBITER["MODEL_DIR"]) / f"campaign-{campaign.pk}"


def preference_for(pair: Pair) -> int:
    """The simulated humans' canonical verdict: a fixed, pair-dependent direction."""
    return 1 if pair.pk % 2 == 0 else -1


def make_loop_campaign(
    *,
    labelled: int = 12,
    pooled: int = 24,
    gold: int = 6,
    round_size: int = 5,
    **fields: object,
) -> Campaign:
    """A campaign with round 1 open (``labelled`` queued pairs), a pool and gold pairs."""
    from tests.factories import CampaignFactory

    campaign = CampaignFactory(round_size=round_size, **fields)
    first = Round.objects.create(campaign=campaign, number=1)
    PairFactory.create_batch(labelled, campaign=campaign, round=first, status=Pair.Status.QUEUED)
    PairFactory.create_batch(pooled, campaign=campaign, status=Pair.Status.POOLED)
    for index in range(gold):
        preference = 1 if index % 2 == 0 else -1
        PairFactory(
            campaign=campaign,
            status=Pair.Status.COMPLETE,
            is_gold=True,
            gold_preference=preference,
            consensus_preference=preference,
            provenance=Pair.Provenance.GOLD,
        )
    return campaign


def label_queue(
    campaign: Campaign,
    annotators: Iterable[User],
    preference_of: Callable[[Pair], int] = preference_for,
) -> int:
    """Each annotator labels every pair the engine serves them; returns labels submitted."""
    submitted = 0
    for annotator in annotators:
        while (assignment := assignment_next(campaign=campaign, annotator=annotator)) is not None:
            canonical = preference_of(assignment.pair)
            shown = -canonical if assignment.swapped else canonical
            label_submit(assignment=assignment, data=LabelInput(preference=shown))
            submitted += 1
    return submitted


LEARNABLE_TOPICS = ["weather", "cooking", "travel", "music", "sports", "books"]


def learnable_campaign(*, train: int, gold: int) -> Campaign:
    """Helpful answers beat dismissive ones; which side is helpful varies by pair. The last
    ``gold`` pairs are gold (held out), the others carry a unanimous consensus."""
    rng = random.Random(7)
    campaign = CampaignFactory()
    for index in range(train + gold):
        topic = rng.choice(LEARNABLE_TOPICS)
        helpful = f"happy to help, here is a careful answer about {topic} {index}"
        dismissive = f"whatever, figure out {topic} yourself {index}"
        a_helpful = rng.random() < 0.5
        preference = 1 if a_helpful else -1
        is_gold = index >= train
        PairFactory(
            campaign=campaign,
            conversation=[{"role": "user", "content": f"tell me about {topic}"}],
            response_a=helpful if a_helpful else dismissive,
            response_b=dismissive if a_helpful else helpful,
            status=Pair.Status.COMPLETE,
            consensus_preference=preference,
            provenance=Pair.Provenance.GOLD if is_gold else Pair.Provenance.UNANIMOUS,
            is_gold=is_gold,
            gold_preference=preference if is_gold else None,
        )
    return campaign


def train_in_this_process(*, campaign: Campaign, params: dict) -> ModelVersion:
    """A training job run inline (one process, no torchrun); the version it registered."""
    job = job_run_inline(job=training_request(campaign=campaign, params=params, enqueue=False))
    assert job.status == Job.Status.SUCCEEDED, job.error
    return ModelVersion.objects.filter(campaign=campaign).latest("number")
