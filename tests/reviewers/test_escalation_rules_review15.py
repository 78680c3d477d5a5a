"""Review 15: campaign settings saved in the Django admin. ``Campaign.clean`` refuses escalation
rules and numbers the product cannot use (the admin and ``campaign_create`` both run it), and
rules stored before it did (written here with a queryset update, as an old row) keep the
meaning the readers gave them then (a numeric string its number, a threshold above 1 never
fires, a deadline over a year holds); what those readers could not use at all reads as its
default, so a label never fails for them."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.forms import modelform_factory
from django.test import Client

from annotation.models import Campaign, Label, Pair, default_escalation_rules
from annotation.services.campaigns import CampaignInvalid, campaign_create
from reviewers.consensus import escalation_rules_of
from reviewers.models import Escalation
from reviewers.services.escalations import (
    escalation_deadline_hours,
    escalation_model_contradiction,
    model_contradiction_threshold,
)
from reviewers.services.weighted_consensus import posterior_threshold
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import judged_pair, user_with_role

pytestmark = pytest.mark.django_db

RULE_KEYS = (
    "no_majority, opposite_directions, flags, retest_contradiction, model_contradiction, "
    "disagreement_threshold, model_confidence, deadline_hours, posterior_threshold"
)
DEFAULTS = {**default_escalation_rules(), "disagreement_threshold": 0.5, "model_confidence": 0.9}


def _admin_post(campaign: Campaign, admin_user, **changes: str):
    """Post the campaign's admin change form as a browser would, with ``changes``."""
    form = modelform_factory(Campaign, fields="__all__")(instance=campaign)
    data: dict[str, str] = {}
    for name, field in form.fields.items():
        value = form[name].value()
        kind = type(field).__name__
        if kind == "JSONField":
            data[name] = value if isinstance(value, str) else json.dumps(value)
        elif kind == "BooleanField":
            if value:
                data[name] = "on"
        else:
            data[name] = "" if value is None else str(value)
    data.update(changes)
    browser = Client()
    browser.force_login(admin_user)
    return browser.post(f"/admin/annotation/campaign/{campaign.pk}/change/", data)


REFUSED = [
    ("lease_seconds", "0", "A lease of under 60 seconds ends before the pair is judged."),
    ("lease_seconds", "59", "A lease of under 60 seconds ends before the pair is judged."),
    ("lease_seconds", "-1", "Ensure this value is greater than or equal to 0."),
    ("label_change_minutes", "-1", "Ensure this value is greater than or equal to 0."),
    ("retrieval_k", "-1", "Ensure this value is greater than or equal to 0."),
    ("round_size", "0", "A round needs at least one pair."),
    ("gold_share", "1.5", "A share lies between 0 and 1."),
    ("retest_share", "-0.1", "A share lies between 0 and 1."),
    ("random_slice_share", "2", "A share lies between 0 and 1."),
    ("quality_threshold", "1.5", "A gold accuracy lies between 0 and 1."),
    ("quality_threshold", "-1e308", "A gold accuracy lies between 0 and 1."),
    ("activation_tolerance", "-5", "A difference of accuracies lies between -1 and 1."),
    ("activation_tolerance", "1e308", "A difference of accuracies lies between -1 and 1."),
    (
        "quarantine_window",
        "0",
        "A window of no labels measures nothing; set the quarantine minimums to 0 instead.",
    ),
    (
        "escalation_rules",
        '{"disagreement_threshold": "high"}',
        "disagreement_threshold must be a number from 0 to 1.",
    ),
    (
        "escalation_rules",
        '{"disagreement_threshold": null}',
        "disagreement_threshold must be a number from 0 to 1.",
    ),
    (
        "escalation_rules",
        '{"disagreement_threshold": 1.01}',
        "disagreement_threshold must be a number from 0 to 1.",
    ),
    (
        "escalation_rules",
        '{"disagreement_threshold": NaN}',
        "disagreement_threshold must be a number from 0 to 1.",
    ),
    (
        "escalation_rules",
        '["flags"]',
        'Escalation rules are an object of settings, e.g. {"deadline_hours": 48}.',
    ),
    (
        "escalation_rules",
        "null",
        'Escalation rules are an object of settings, e.g. {"deadline_hours": 48}.',
    ),
    (
        "escalation_rules",
        '{"deadline_hours": 1e308}',
        "deadline_hours must be a number above 0, at most 8760.",
    ),
    (
        "escalation_rules",
        '{"deadline_hours": 0}',
        "deadline_hours must be a number above 0, at most 8760.",
    ),
    (
        "escalation_rules",
        '{"deadline_hours": true}',
        "deadline_hours must be a number above 0, at most 8760.",
    ),
    (
        "escalation_rules",
        '{"model_confidence": 1}',
        "model_confidence must be a number from 0.5 to below 1.",
    ),
    # What an old row may hold and still be read as it was: refused for a new save all the same.
    (
        "escalation_rules",
        '{"disagreement_threshold": "0.8"}',
        "disagreement_threshold must be a number from 0 to 1.",
    ),
    (
        "escalation_rules",
        '{"deadline_hours": 9600}',
        "deadline_hours must be a number above 0, at most 8760.",
    ),
    (
        "escalation_rules",
        '{"model_confidence": 0.3}',
        "model_confidence must be a number from 0.5 to below 1.",
    ),
    (
        "escalation_rules",
        '{"model_confidence": "x"}',
        "model_confidence must be a number from 0.5 to below 1.",
    ),
    (
        "escalation_rules",
        '{"posterior_threshold": 2}',
        "posterior_threshold must be a number from 0 to 1.",
    ),
    ("escalation_rules", '{"no_majority": "no"}', "no_majority must be true or false."),
    ("escalation_rules", '{"flags": 0}', "flags must be true or false."),
    (
        "escalation_rules",
        '{"disagreement_treshold": 0.4}',
        f"disagreement_treshold is not an escalation rule (they are: {RULE_KEYS}).",
    ),
]


@pytest.mark.parametrize(("field", "value", "message"), REFUSED)
def test_the_admin_refuses_a_setting_the_campaign_cannot_use(admin_user, field, value, message):
    campaign = CampaignFactory(annotators_per_pair=2)
    before = Campaign.objects.values().get(pk=campaign.pk)

    response = _admin_post(campaign, admin_user, **{field: value})

    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors == {field: [message]}
    assert Campaign.objects.values().get(pk=campaign.pk) == before


def test_the_admin_refuses_no_annotators_per_pair(admin_user):
    campaign = CampaignFactory(annotators_per_pair=2)

    response = _admin_post(campaign, admin_user, annotators_per_pair="0")

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "annotators_per_pair": ["Ensure this value is greater than or equal to 1."]
    }
    assert Campaign.objects.get(pk=campaign.pk).annotators_per_pair == 2


def test_the_admin_names_each_wrong_rule(admin_user):
    campaign = CampaignFactory()

    response = _admin_post(
        campaign,
        admin_user,
        escalation_rules='{"flags": "yes", "deadline_hours": -1, "model_confidence": 0.95}',
    )

    assert response.context["adminform"].form.errors == {
        "escalation_rules": [
            "flags must be true or false.",
            "deadline_hours must be a number above 0, at most 8760.",
        ]
    }


@pytest.mark.parametrize(
    ("field", "value", "stored"),
    [
        ("lease_seconds", "60", 60),
        ("retrieval_k", "0", 0),  # 0: no similar pool pairs pulled in
        ("label_change_minutes", "0", 0),  # 0: no changes
        ("activation_tolerance", "-0.01", -0.01),
        ("quality_threshold", "1", 1.0),
        ("escalation_rules", "{}", {}),
        (
            "escalation_rules",
            '{"disagreement_threshold": 0, "model_confidence": 0.5, "deadline_hours": 8760,'
            ' "posterior_threshold": 1, "flags": false, "retest_contradiction": true}',
            {
                "disagreement_threshold": 0,
                "model_confidence": 0.5,
                "deadline_hours": 8760,
                "posterior_threshold": 1,
                "flags": False,
                "retest_contradiction": True,
            },
        ),
        ("escalation_rules", json.dumps(default_escalation_rules()), default_escalation_rules()),
    ],
)
def test_the_admin_saves_settings_at_their_bounds(admin_user, field, value, stored):
    campaign = CampaignFactory()

    response = _admin_post(campaign, admin_user, **{field: value})

    assert response.status_code == 302
    assert getattr(Campaign.objects.get(pk=campaign.pk), field) == stored


def test_campaign_create_runs_the_same_checks_and_keeps_the_default_rules(admin_user):
    campaign = campaign_create(created_by=admin_user, name="checked")
    assert campaign.escalation_rules == default_escalation_rules()
    campaign.full_clean()  # the defaults pass clean, so the admin saves an untouched campaign

    with pytest.raises(CampaignInvalid, match=r"^round_size: A round needs at least one pair\.$"):
        campaign_create(created_by=admin_user, name="no rounds", round_size=0)


# What the admin saved before the check and its readers could not use (jsonb holds no infinity,
# and the column no null): float() refused it, overflowed, or gave NaN; an infinite deadline
# overflowed the date, a confidence below 0.5 failed the escalation's check, and a deadline of
# 0 hours or fewer read as the default.
STORED_BEFORE_THE_CHECK = [
    {"disagreement_threshold": "high"},
    {"disagreement_threshold": None},
    ["flags"],
    "strict",
    {"deadline_hours": "inf"},
    {"deadline_hours": 10**400},
    {"deadline_hours": -3},
    {"model_confidence": "x", "disagreement_threshold": "nan"},
    {"model_confidence": 0.3, "disagreement_threshold": [0.8]},
]


@pytest.mark.parametrize("rules", STORED_BEFORE_THE_CHECK, ids=lambda rules: repr(rules)[:40])
def test_rules_stored_before_the_check_that_were_unusable_read_as_the_defaults(rules, caplog):
    with caplog.at_level(logging.WARNING, logger="reviewers.consensus"):
        read = escalation_rules_of(rules)
        assert escalation_rules_of(None) == DEFAULTS

    assert read == DEFAULTS
    assert len(caplog.records) == 2  # one warning per read


def test_each_valid_stored_rule_is_kept_beside_the_defaults_of_the_wrong_ones(caplog):
    stored = {"disagreement_threshold": "high", "deadline_hours": 5, "flags": None, "x": 1}
    with caplog.at_level(logging.WARNING, logger="reviewers.consensus"):
        read = escalation_rules_of(stored)

    # A switch reads by its truth value, as before the check: null still turns flags off.
    assert read == {**DEFAULTS, "deadline_hours": 5.0, "flags": False}
    assert [record.getMessage() for record in caplog.records] == [
        "escalation rules the campaign cannot take: disagreement_threshold='high' ignored, the "
        "default applies; flags=None read as False"
    ]


@pytest.mark.parametrize("rules", STORED_BEFORE_THE_CHECK, ids=lambda rules: repr(rules)[:40])
def test_a_label_completing_a_pair_is_taken_whatever_rules_were_stored(rules):
    campaign = CampaignFactory(annotators_per_pair=2)
    Campaign.objects.filter(pk=campaign.pk).update(escalation_rules=rules)  # an old row
    pair = PairFactory(campaign=campaign)

    statuses = []
    for name, preference in (("ann1", 2), ("ann2", -2)):
        client = api_client_for(user_with_role(name))
        shown = client.post(f"/api/campaigns/{campaign.pk}/next").json()
        if shown["pair"]["response_a"] != pair.response_a:  # shown B on the left
            preference = -preference
        response = client.post(
            f"/api/assignments/{shown['assignment']['id']}/label",
            {"preference": preference},
            format="json",
        )
        statuses.append(response.status_code)

    assert statuses == [201, 201]
    assert Label.objects.filter(pair=pair).count() == 2
    pair.refresh_from_db()
    # A and B at opposite ends: no majority, and above the default threshold 0.5; the
    # default 72 hours to decide.
    assert pair.status == Pair.Status.ESCALATED
    escalation = Escalation.objects.get(pair=pair)
    assert (escalation.reason, escalation.detail) == (
        Escalation.Reason.NO_MAJORITY,
        "labels split with no majority direction\nalso: opposite_directions "
        "A and B both chosen; disagreement 1.00 > 0.5",
    )
    assert escalation.deadline - escalation.created_at == pytest.approx(
        timedelta(hours=72), abs=timedelta(seconds=2)
    )


@pytest.mark.parametrize(
    ("rules", "threshold"),
    [
        ({"model_confidence": 0.3}, 0.9),
        ({"model_confidence": -1}, 0.9),
        ({"model_confidence": "x"}, 0.9),
        (["model_confidence"], 0.9),
        ({"model_confidence": 0.95}, 0.95),
        ({"model_contradiction": False, "model_confidence": "x"}, None),
    ],
)
def test_the_model_confidence_falls_back_to_its_default(rules, threshold):
    assert model_contradiction_threshold(rules) == threshold


def test_a_stored_confidence_out_of_range_escalates_with_the_default():
    campaign = CampaignFactory()
    Campaign.objects.filter(pk=campaign.pk).update(escalation_rules={"model_confidence": 0.3})
    campaign.refresh_from_db()
    pair = judged_pair(campaign, [2, 2, 2])

    # 0.3 failed the threshold check (InvalidDecision); the default 0.9 now applies.
    assert escalation_model_contradiction(pair=pair, p_agree=0.2) is None
    assert escalation_model_contradiction(pair=pair, p_agree=0.05) is not None


@pytest.mark.parametrize(
    ("rules", "hours"),
    [
        ({"deadline_hours": "inf"}, 72.0),
        ({"deadline_hours": -3}, 72.0),
        ({"deadline_hours": 0}, 72.0),
        ({"deadline_hours": "soon"}, 72.0),
        ({"deadline_hours": 8760}, 8760.0),
        ({"deadline_hours": 0.5}, 0.5),
    ],
)
def test_the_deadline_falls_back_to_three_days(rules, hours):
    assert escalation_deadline_hours(CampaignFactory.build(escalation_rules=rules)) == hours


@pytest.mark.parametrize("rules", [{"disagreement_threshold": "high"}, ["flags"]])
def test_a_ranking_item_completes_whatever_rules_were_stored(rules):
    from annotation.importers import content_hash
    from annotation.models import Assignment, ItemKind
    from annotation.rankings import ranking_to_shown

    campaign = CampaignFactory(item_kind=ItemKind.RANKING, annotators_per_pair=3)
    Campaign.objects.filter(pk=campaign.pk).update(escalation_rules=rules)  # an old row
    conversation = [{"role": "user", "content": "Rank these."}]
    item = PairFactory(
        campaign=campaign,
        conversation=conversation,
        response_a="first",
        response_b="second",
        responses=[{"content": text} for text in ("first", "second", "third")],
        content_hash=content_hash(conversation, "k", "wise"),
    )
    statuses = []
    for name in ("r1", "r2", "r3"):
        client = api_client_for(user_with_role(name))
        body = client.post(f"/api/campaigns/{campaign.pk}/next").json()
        assignment = Assignment.objects.get(pk=body["assignment"]["id"])
        shown = ranking_to_shown([[0], [1], [2]], display_order=assignment.display_order or [])
        statuses.append(
            client.post(
                f"/api/assignments/{assignment.pk}/label", {"ranking": shown}, format="json"
            ).status_code
        )
    assert statuses == [201, 201, 201]
    item.refresh_from_db()
    assert (item.status, item.consensus_ranking) == (Pair.Status.COMPLETE, [[0], [1], [2]])


# Review 6 of a6921ed: what the readers before the check used (each read float(stored value))
# keeps its meaning on an old row, though clean refuses it for a new save.
OLD_ROWS_READ_AS_BEFORE = [
    ({"disagreement_threshold": "0.8"}, {"disagreement_threshold": 0.8}, "'0.8' read as 0.8"),
    ({"disagreement_threshold": 2}, {"disagreement_threshold": 2.0}, "2 read as 2"),
    ({"disagreement_threshold": -1}, {"disagreement_threshold": -1.0}, "-1 read as -1"),
    ({"disagreement_threshold": True}, {"disagreement_threshold": 1.0}, "True read as 1"),
    ({"model_confidence": 1}, {"model_confidence": 1.0}, "1 read as 1"),
    ({"model_confidence": "0.95"}, {"model_confidence": 0.95}, "'0.95' read as 0.95"),
    ({"deadline_hours": "48"}, {"deadline_hours": 48.0}, "'48' read as 48"),
    ({"deadline_hours": 9600}, {"deadline_hours": 9600.0}, "9600 read as 9600"),
    # Longer than 1,000 years: it never came (and past some 8,000 years the date overflowed).
    ({"deadline_hours": 1e308}, {"deadline_hours": 8760000.0}, "1e+308 read as 8.76e+06"),
    ({"posterior_threshold": 1.5}, {"posterior_threshold": 1.5}, "1.5 read as 1.5"),
    ({"posterior_threshold": " 0.8 "}, {"posterior_threshold": 0.8}, "' 0.8 ' read as 0.8"),
]


@pytest.mark.parametrize(
    ("stored", "read", "warning"), OLD_ROWS_READ_AS_BEFORE, ids=lambda value: repr(value)[:40]
)
def test_a_stored_number_the_old_readers_used_keeps_its_meaning(stored, read, warning, caplog):
    with caplog.at_level(logging.WARNING, logger="reviewers.consensus"):
        assert escalation_rules_of(stored) == {**DEFAULTS, **read}

    (key,) = stored
    assert [record.getMessage() for record in caplog.records] == [
        f"escalation rules the campaign cannot take: {key}={warning}"
    ]


def _old_row(**rules: object) -> Campaign:
    campaign = CampaignFactory(annotators_per_pair=3)
    Campaign.objects.filter(pk=campaign.pk).update(escalation_rules=rules)  # an old row
    campaign.refresh_from_db()
    return campaign


@pytest.mark.parametrize("threshold", ["0.8", 2])
def test_a_stored_threshold_above_the_disagreement_lets_a_majority_settle(threshold):
    # Two "A much better", one "B much better": a majority with disagreement 2/3, which the
    # default 0.5 would send to an expert.
    pair = judged_pair(_old_row(disagreement_threshold=threshold), [2, 2, -2])

    assert (pair.status, pair.provenance, pair.consensus_preference) == (
        Pair.Status.COMPLETE,
        Pair.Provenance.MAJORITY,
        2,
    )
    assert not Escalation.objects.filter(pair=pair).exists()


def test_a_stored_negative_threshold_escalates_any_opposite_directions():
    # Disagreement 0.29, below the default 0.5: only the stored -1 sends it on.
    pair = judged_pair(_old_row(disagreement_threshold=-1), [2, 1, -1])

    assert pair.status == Pair.Status.ESCALATED
    escalation = Escalation.objects.get(pair=pair)
    assert (escalation.reason, escalation.detail) == (
        Escalation.Reason.OPPOSITE_DIRECTIONS,
        "A and B both chosen; disagreement 0.29 > -1",
    )


@pytest.mark.parametrize(("hours", "expected"), [("48", 48.0), (24 * 400, 9600.0)])
def test_a_stored_deadline_the_old_reader_used_is_the_experts_deadline(hours, expected):
    campaign = _old_row(deadline_hours=hours)
    Campaign.objects.filter(pk=campaign.pk).update(annotators_per_pair=2)
    campaign.refresh_from_db()

    pair = judged_pair(campaign, [2, -2])

    escalation = Escalation.objects.get(pair=pair)
    assert escalation.deadline - escalation.created_at == pytest.approx(
        timedelta(hours=expected), abs=timedelta(seconds=2)
    )


def test_a_stored_model_confidence_string_is_its_number():
    campaign = _old_row(model_confidence="0.95")
    pair = judged_pair(campaign, [2, 2, 2])

    assert model_contradiction_threshold(campaign.escalation_rules) == 0.95
    # Below 1 - 0.9 but not below 1 - 0.95: the default would escalate, 0.95 does not.
    assert escalation_model_contradiction(pair=pair, p_agree=0.07) is None
    assert escalation_model_contradiction(pair=pair, p_agree=0.03) is not None


@pytest.mark.parametrize("confidence", [1, 1.5])
def test_a_stored_model_confidence_of_one_or_more_never_finds_a_contradiction(confidence):
    # No model is that sure: the rule is off (None), for the prioritisation pass and for the
    # escalation alike, which would otherwise refuse the threshold (InvalidDecision).
    assert model_contradiction_threshold({"model_confidence": confidence}) is None
    campaign = CampaignFactory()
    Campaign.objects.filter(pk=campaign.pk).update(
        escalation_rules={"model_confidence": confidence}
    )
    pair = judged_pair(Campaign.objects.get(pk=campaign.pk), [1, 1, 1])
    assert escalation_model_contradiction(pair=pair, p_agree=0.0) is None


def test_a_stored_posterior_threshold_above_one_is_kept():
    assert posterior_threshold(_old_row(posterior_threshold=1.5)) == 1.5
    assert posterior_threshold(_old_row(posterior_threshold="0.8")) == 0.8
    assert posterior_threshold(_old_row(posterior_threshold="off")) is None


def test_the_consensus_maths_imports_without_django_settings():
    # reviewers.consensus is pure (no ORM): the rules' names, bounds and defaults it reads come
    # from annotation.escalation_rules, which imports nothing of Django.
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed program
        [
            sys.executable,
            "-c",
            "import sys, reviewers.consensus\n"
            "print(sorted(name for name in sys.modules if name.split('.')[0] == 'django'))",
        ],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert (done.returncode, done.stdout, done.stderr) == (0, "[]\n", "")
