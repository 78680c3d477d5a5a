"""Agreement over a large campaign in bounded memory: the aspect and ranking figures streamed
label by label (the A/B figures already come from one grouped query), and each annotator's
figure computed from their grouped rows without a matrix of them squared; checked against the
`krippendorff` package, or the coders x units maths, on the same labels."""

from __future__ import annotations

import json
import tracemalloc

import krippendorff
import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import NOT_PROVIDED
from django.utils import timezone

from annotation.models import Assignment, Label, Pair, Round
from reviewers.agreement.aspects import aspect_agreement
from reviewers.agreement.maths import alpha_components, annotator_agreements
from reviewers.agreement.rankings import fractional_ranks
from reviewers.agreement.selectors import (
    annotator_agreements_from_db,
    histogram_components,
    pattern_histogram,
    ranking_agreement,
)
from tests.factories import CampaignFactory

PAIRS = 15_000
CODERS = 3
# Holding every label's ratings or ranking as Python objects took 73-94 MiB at 40,000 pairs
# (and grows with them); streamed, the figures need a chunk of rows and the histograms (2-3 MiB).
PEAK_LIMIT = 12 * 1024**2


def _copy(raw_cursor, model, columns: dict[str, list], constants: dict[str, object]) -> None:
    """COPY rows into the model's table; other columns take their model default (or NULL)."""
    fixed = dict(constants)
    for field in model._meta.concrete_fields:
        if field.column in columns or field.column in fixed:
            continue
        if field.default is not NOT_PROVIDED:
            default = field.get_default()
            is_json = field.get_internal_type() == "JSONField"
            fixed[field.column] = json.dumps(default) if is_json else default
        elif field.null:
            fixed[field.column] = None
        else:
            fixed[field.column] = ""
    names = [*columns, *fixed]
    with raw_cursor.copy(
        f"COPY {model._meta.db_table} ({', '.join(names)}) FROM STDIN"  # noqa: S608 - test
    ) as copy:
        for row in zip(*columns.values(), strict=True):
            copy.write_row((*row, *fixed.values()))


def _load(
    campaign, label_columns: dict[str, list], *, pairs: int = PAIRS, coders: int = CODERS
) -> list[int]:
    """``pairs`` pairs in two rounds, ``coders`` labels each (pair-major order, coder ``i`` of
    each pair the i-th user), with the given per-label columns; returns the users' ids."""
    users = [get_user_model().objects.create_user(username=f"coder-{i}") for i in range(coders)]
    rounds = [
        Round.objects.create(campaign=campaign, number=n, status=Round.Status.CLOSED)
        for n in (1, 2)
    ]
    now = timezone.now()
    first_pair = (Pair.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    pair_ids = list(range(first_pair, first_pair + pairs))
    first_label = (Label.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    first_label = max(
        first_label,
        (Assignment.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1,
    )
    label_ids = list(range(first_label, first_label + pairs * coders))
    label_pairs = [pair_id for pair_id in pair_ids for _ in range(coders)]
    annotators = [users[i % coders].pk for i in range(pairs * coders)]
    with connection.cursor() as cursor:
        raw = cursor.cursor
        _copy(
            raw,
            Pair,
            {
                "id": pair_ids,
                "round_id": [rounds[i % 2].pk for i in range(pairs)],
                "content_hash": [f"{pair_id:064x}" for pair_id in pair_ids],
            },
            {
                "campaign_id": campaign.pk,
                "conversation": "[]",
                "response_a": "A",
                "response_b": "B",
                "status": Pair.Status.COMPLETE,
                "slots_taken": coders,
                "slot_cap": coders,
                "labels_count": coders,
                "created_at": now,
            },
        )
        _copy(
            raw,
            Assignment,
            {"id": label_ids, "pair_id": label_pairs, "annotator_id": annotators},
            {
                "campaign_id": campaign.pk,
                "status": Assignment.Status.SUBMITTED,
                "kind": Assignment.Kind.REGULAR,
                "swapped": False,
                "leased_at": now,
                "lease_expires_at": now,
                "finished_at": now,
            },
        )
        _copy(
            raw,
            Label,
            {
                "id": label_ids,
                "assignment_id": label_ids,
                "pair_id": label_pairs,
                "annotator_id": annotators,
                **label_columns,
            },
            {"campaign_id": campaign.pk, "created_at": now, "shown_first": "a"},
        )
        for model in (Pair, Assignment, Label):
            table = model._meta.db_table
            raw.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                f"(SELECT MAX(id) FROM {table}))"
            )
    return [user.pk for user in users]


def _peak(function):
    tracemalloc.start()
    try:
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.django_db
def test_aspect_alpha_of_a_large_campaign_streams_its_labels():
    campaign = CampaignFactory(
        aspects=[{"name": "helpfulness", "label": "Helpfulness", "scale_min": 1, "scale_max": 5}]
    )
    rng = np.random.default_rng(20)
    truth = rng.integers(1, 6, size=(PAIRS, 2))
    noise = rng.choice([-1, 0, 0, 0, 1], size=(PAIRS, CODERS, 2))
    ratings = np.clip(truth[:, np.newaxis, :] + noise, 1, 5)  # pair x coder x side
    rated = [
        json.dumps({"helpfulness": {"a": int(a), "b": int(b)}})
        for a, b in ratings.reshape(-1, 2).tolist()
    ]
    _load(
        campaign,
        {"preference": [1] * len(rated), "aspect_ratings": rated},
    )

    report, peak = _peak(lambda: aspect_agreement(campaign=campaign))

    # coders x units, a unit being one side of one pair
    data = ratings.transpose(1, 0, 2).reshape(CODERS, -1).astype(np.float64)
    (entry,) = report
    for level in ("interval", "ordinal"):
        expected = krippendorff.alpha(
            reliability_data=data, level_of_measurement=level, value_domain=[1, 2, 3, 4, 5]
        )
        assert entry[f"alpha_{level}"] == pytest.approx(expected, abs=1e-9)
    assert entry["pairable_units"] == PAIRS * 2
    assert entry["ratings"] == PAIRS * CODERS * 2
    assert peak < PEAK_LIMIT, f"peak {peak / 1024**2:.0f} MiB"


@pytest.mark.django_db
def test_ranking_alpha_of_a_large_campaign_streams_its_labels():
    campaign = CampaignFactory(item_kind="ranking")
    rng = np.random.default_rng(21)
    rankings = []
    for _ in range(PAIRS):
        base = rng.permutation(3).tolist()
        for _coder in range(CODERS):
            order = base if rng.random() < 0.7 else rng.permutation(3).tolist()
            if rng.random() < 0.2:  # the last two tied
                rankings.append([[order[0]], sorted(order[1:])])
            else:
                rankings.append([[response] for response in order])
    _load(
        campaign,
        {
            "preference": [0] * len(rankings),
            "ranking": [json.dumps(ranking) for ranking in rankings],
        },
    )

    report, peak = _peak(lambda: ranking_agreement(campaign=campaign))

    ranks = np.asarray([fractional_ranks(ranking, 3) for ranking in rankings])
    data = ranks.reshape(PAIRS, CODERS, 3).transpose(1, 0, 2).reshape(CODERS, -1)
    expected = krippendorff.alpha(
        reliability_data=data,
        level_of_measurement="ordinal",
        value_domain=np.unique(data),
    )
    assert report["alpha"] == pytest.approx(expected, abs=1e-9)
    assert report["items"] == PAIRS
    assert [(r["number"], r["items"]) for r in report["rounds"]] == [
        (1, PAIRS // 2),
        (2, PAIRS // 2),
    ]
    first_round = data.reshape(CODERS, PAIRS, 3)[:, 0::2, :].reshape(CODERS, -1)
    assert report["rounds"][0]["alpha"] == pytest.approx(
        krippendorff.alpha(
            reliability_data=first_round,
            level_of_measurement="ordinal",
            value_domain=np.unique(data),
        ),
        abs=1e-9,
    )
    assert peak < PEAK_LIMIT, f"peak {peak / 1024**2:.0f} MiB"


@pytest.mark.django_db
def test_annotator_agreement_with_many_labels_a_pair_needs_no_matrix_of_combinations():
    # Twenty labels a pair: nearly every pair is its own (own value, counts) combination, and
    # the figure built a combinations x combinations matrix per annotator (about 50 MiB at
    # 2,000 pairs; gigabytes at campaign scale).
    pairs, coders, values = 2_000, 20, (-2, -1, 0, 1, 2)
    campaign = CampaignFactory(scale="five_point", annotators_per_pair=coders)
    rng = np.random.default_rng(22)
    truth = rng.integers(-2, 3, size=pairs)
    noise = rng.choice([-2, -1, 0, 0, 0, 1, 2], size=(pairs, coders))
    preferences = np.clip(truth[:, np.newaxis] + noise, -2, 2)  # pair x coder
    users = _load(
        campaign,
        {"preference": preferences.reshape(-1).tolist()},
        pairs=pairs,
        coders=coders,
    )
    totals = histogram_components(pattern_histogram(campaign=campaign), "ordinal").value_totals

    rows, peak = _peak(
        lambda: annotator_agreements_from_db(
            campaign=campaign, reference_value_totals=totals, level="ordinal"
        )
    )

    data = preferences.T.astype(np.float64)  # coders x pairs
    expected = annotator_agreements(data, "ordinal", values, totals)
    by_user = {row["annotator_id"]: row for row in rows}
    for coder, user_id in enumerate(users):
        assert by_user[user_id]["alpha"] == pytest.approx(expected[coder], abs=1e-9)
        assert by_user[user_id]["n_pairs"] == pairs
    # The label-weighted mean of the annotators' figures is the campaign's alpha.
    counts = np.stack([(preferences == v).sum(axis=1) for v in values], axis=1)
    alpha = alpha_components(counts, None, values, "ordinal").alpha
    assert np.mean([row["alpha"] for row in rows]) == pytest.approx(alpha, abs=1e-9)
    assert peak < PEAK_LIMIT, f"peak {peak / 1024**2:.0f} MiB"
