"""factory_boy factories for the models tests use most."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from factory.django import DjangoModelFactory

from annotation.importers import content_hash
from annotation.models import Campaign, Pair


class UserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")


class CampaignFactory(DjangoModelFactory[Campaign]):
    class Meta:
        model = Campaign

    name = factory.Sequence(lambda n: f"campaign {n}")
    guidelines = "Prefer the response that is **correct** and helpful."
    retest_share = 0.0  # re-tests are random; tests that want them ask for them
    # Open, as campaigns made before membership were migrated: the tests of other features
    # need no members; membership tests close it (open_to_all=False, the model default).
    open_to_all = True


class PairFactory(DjangoModelFactory[Pair]):
    class Meta:
        model = Pair

    campaign = factory.SubFactory(CampaignFactory)
    conversation = factory.Sequence(lambda n: [{"role": "user", "content": f"Question {n}?"}])
    response_a = factory.Sequence(lambda n: f"Answer A{n}")
    response_b = factory.Sequence(lambda n: f"Answer B{n}")
    content_hash = factory.LazyAttribute(
        lambda pair: content_hash(pair.conversation, pair.response_a, pair.response_b)
    )
    status = Pair.Status.QUEUED
    slot_cap = factory.LazyAttribute(lambda pair: pair.campaign.annotators_per_pair)


def ranking_item(
    campaign: Campaign,
    *,
    n: int | str = 0,
    size: int = 4,
    texts: list[str] | None = None,
    conversation: list[dict[str, str]] | None = None,
    **fields,
) -> Pair:
    """A K-wise ranking item (``size`` responses, or ``texts``), its first two responses
    mirrored in response A and B as the importer stores them; ``n`` makes it unique."""
    conversation = conversation or [{"role": "user", "content": f"Rank these {n}."}]
    texts = texts if texts is not None else [f"answer {n}.{k}" for k in range(size)]
    return PairFactory(
        campaign=campaign,
        conversation=conversation,
        response_a=texts[0],
        response_b=texts[1],
        responses=[{"content": text, "model": ""} for text in texts],
        content_hash=content_hash(conversation, "ranked", str(n)),
        **fields,
    )
