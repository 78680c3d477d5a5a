"""What the assignment engine serves over many `next` calls: gold checks and re-tests at the
campaign's shares and silently, nobody twice on a pair, exactly N labels a pair, balanced
orientation (review 16)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest

from annotation.models import Assignment, Label, Pair
from annotation.services.assignments import assignment_next, assignment_skip
from annotation.services.labels import LabelInput, label_submit
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory, UserFactory


def _gold_pairs(campaign, n):
    return PairFactory.create_batch(
        n, campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE
    )


@pytest.mark.django_db
def test_no_gold_check_is_served_once_the_annotators_regular_work_is_gone(annotator_a):
    # Before: past the last regular pair `next` answered 204 or, when the coin said gold, a
    # pair; any pair after a 204 was a gold check, and retrying served gold checks only.
    campaign = CampaignFactory(gold_share=0.0)
    _gold_pairs(campaign, 10)
    done = PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)
    assert assignment.pair_id == done.pk
    label_submit(assignment=assignment, data=LabelInput(preference=1))
    campaign.gold_share = 0.3
    campaign.save(update_fields=["gold_share"])
    served = [
        assignment_next(campaign=campaign, annotator=annotator_a, rng=random.Random(seed))
        for seed in range(40)
    ]
    assert served == [None] * 40
    # A campaign of gold checks only still serves them: there is nothing to hide.
    campaign.gold_share = 1.0
    campaign.save(update_fields=["gold_share"])
    check = assignment_next(campaign=campaign, annotator=annotator_a, rng=random.Random(2))
    assert check is not None and check.kind == Assignment.Kind.GOLD


@pytest.mark.django_db
def test_the_served_mix_over_hundreds_of_calls_keeps_every_promise():
    rng = random.Random(11)
    campaign = CampaignFactory(gold_share=0.2, retest_share=0.5)
    regular = PairFactory.create_batch(60, campaign=campaign)
    _gold_pairs(campaign, 40)
    users = UserFactory.create_batch(8)
    served: dict[int, list[int]] = defaultdict(list)
    skipped: dict[int, set[int]] = defaultdict(set)
    kinds: Counter[str] = Counter()
    finished: set[int] = set()
    calls = 0
    while len(finished) < len(users):
        for user in users:
            if user.pk in finished:
                continue
            calls += 1
            assignment = assignment_next(campaign=campaign, annotator=user, rng=rng)
            if assignment is None:
                finished.add(user.pk)
                continue
            assert assignment.pair_id not in skipped[user.pk]
            served[user.pk].append(assignment.pair_id)
            kinds[str(assignment.kind)] += 1
            if assignment.kind != Assignment.Kind.GOLD and rng.random() < 0.1:
                assignment_skip(assignment=assignment)
                skipped[user.pk].add(assignment.pair_id)
            else:
                # Agree with the pair's canonical A side, so that no pair escalates.
                preference = -1 if assignment.swapped else 1
                label_submit(assignment=assignment, data=LabelInput(preference=preference))
    assert calls > 250
    # Nobody had a pair twice.
    assert all(len(pairs) == len(set(pairs)) for pairs in served.values())
    # Gold checks at the campaign's share of what was served (0.2; 4 sigma is about 0.1).
    share = kinds["gold"] / sum(kinds.values())
    assert 0.1 < share < 0.3, kinds
    # Exactly three regular labels a pair, each pair settled, at most one re-test a pair, by
    # someone else, and about half of the pairs re-tested.
    regular_ids = [pair.pk for pair in regular]
    labels = Label.objects.filter(pair_id__in=regular_ids, is_gold_check=False)
    per_pair = Counter(labels.filter(is_retest=False).values_list("pair_id", flat=True))
    assert set(per_pair.values()) == {3} and len(per_pair) == 60
    retests = Counter(labels.filter(is_retest=True).values_list("pair_id", flat=True))
    assert set(retests.values()) <= {1}
    assert 15 <= len(retests) <= 45, len(retests)
    assert set(Pair.objects.filter(pk__in=regular_ids).values_list("status", flat=True)) == {
        Pair.Status.COMPLETE
    }
    # Orientation: the three regular labels of a pair are shown two ways one way, once the other.
    sides: dict[int, Counter[bool]] = defaultdict(Counter)
    for pair_id, swapped in Assignment.objects.filter(
        pair_id__in=regular_ids, kind=Assignment.Kind.REGULAR, status=Assignment.Status.SUBMITTED
    ).values_list("pair_id", "swapped"):
        sides[pair_id][swapped] += 1
    assert {tuple(sorted(count.values())) for count in sides.values()} == {(1, 2)}


@pytest.mark.django_db
def test_next_says_nothing_about_gold_or_re_tests(annotator_a, annotator_b):
    campaign = CampaignFactory(gold_share=0.0)
    pair = PairFactory(campaign=campaign)
    _gold_pairs(campaign, 1)
    # A re-test slot: the pair settled and was reopened with one more slot.
    Pair.objects.filter(pk=pair.pk).update(
        slots_taken=3,
        slot_cap=4,
        labels_count=3,
        status=Pair.Status.IN_ANNOTATION,
        provenance=Pair.Provenance.UNANIMOUS,
        consensus_preference=1,
    )
    client = api_client_for(annotator_a)
    retest = client.post(f"/api/campaigns/{campaign.pk}/next").json()
    assert Assignment.objects.get(pk=retest["assignment"]["id"]).kind == Assignment.Kind.RETEST
    campaign.gold_share = 1.0
    campaign.save(update_fields=["gold_share"])
    gold = api_client_for(annotator_b).post(f"/api/campaigns/{campaign.pk}/next").json()
    assert Assignment.objects.get(pk=gold["assignment"]["id"]).kind == Assignment.Kind.GOLD
    for body in (retest, gold):
        assert set(body) == {"assignment", "pair", "judgment", "lease_expires_at"}
        assert set(body["assignment"]) == {"id", "campaign", "status"}
        assert set(body["pair"]) == {
            "conversation",
            "response_a",
            "response_b",
            "annotation_guideline",
            "task_category",
        }
        text = str(body).lower()
        assert "gold" not in text and "retest" not in text and "re-test" not in text
