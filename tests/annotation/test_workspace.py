from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from annotation.models import Assignment, Label, Pair, Scale
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_submit
from tests.factories import CampaignFactory, PairFactory

pytestmark = pytest.mark.django_db

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def alice_client(client, annotator_a):
    client.force_login(annotator_a, backend=MODEL_BACKEND)
    return client


def workspace_url(campaign) -> str:
    return reverse("campaign-detail", args=[campaign.pk])


def label_url(assignment) -> str:
    return reverse("assignment-label", args=[assignment.pk])


def skip_url(assignment) -> str:
    return reverse("assignment-skip", args=[assignment.pk])


def current_assignment(campaign, user) -> Assignment:
    return Assignment.objects.get(campaign=campaign, annotator=user, status="active")


def between(html: str, start: str, end: str) -> str:
    return html[html.index(start) : html.index(end, html.index(start))]


@pytest.mark.smoke
def test_it_renders_the_workspace_with_conversation_responses_and_controls(
    alice_client, annotator_a, campaign
):
    PairFactory(
        campaign=campaign,
        conversation=[
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "What is **2+2**?"},
            {"role": "assistant", "content": "Do you mean in base 10?"},
            {"role": "user", "content": "Yes."},
        ],
        response_a="It is 4.",
        response_b="It is 5.",
        annotation_guideline="Check the *arithmetic*.",
    )
    response = alice_client.get(workspace_url(campaign))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" in html
    assert 'id="pair"' in html
    for role in ("System", "User", "Assistant"):
        assert f'<header class="turn-role">{role}</header>' in html
    assert "<strong>2+2</strong>" in html  # Markdown rendered
    assert "It is 4." in html and "It is 5." in html
    assert "<em>arithmetic</em>" in html  # the pair's own guideline
    assert "<strong>correct</strong>" in html  # the campaign guidelines (factory default)
    assert 'aria-label="Tools"' in html
    assert "Keyboard shortcuts" in html
    assert 'name="seconds_spent"' in html
    assert current_assignment(campaign, annotator_a).pair.response_a == "It is 4."


def test_htmx_gets_only_the_pair_fragment(alice_client, campaign):
    PairFactory(campaign=campaign, response_a="Alpha answer")
    response = alice_client.get(workspace_url(campaign), headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and "Keyboard shortcuts" not in html
    assert html.lstrip().startswith('<section id="pair"')
    assert "Alpha answer" in html
    assert "HX-Request" in response["Vary"]


def test_it_shows_the_responses_in_the_shown_orientation(alice_client, annotator_a, campaign):
    PairFactory(campaign=campaign, response_a="CANONICAL-A", response_b="CANONICAL-B")
    alice_client.get(workspace_url(campaign))
    assignment = current_assignment(campaign, annotator_a)
    for swapped in (False, True):
        Assignment.objects.filter(pk=assignment.pk).update(swapped=swapped)
        html = alice_client.get(workspace_url(campaign), headers=HTMX).content.decode()
        left = between(html, 'id="response-a"', 'id="response-b"')
        expected_left = "CANONICAL-B" if swapped else "CANONICAL-A"
        assert expected_left in left


@pytest.mark.parametrize(
    ("scale", "labels"),
    [
        (Scale.BINARY, ["A is better", "B is better"]),
        (Scale.THREE_POINT, ["A is better", "About the same", "B is better"]),
        (
            Scale.FIVE_POINT,
            [
                "A is much better",
                "A is better",
                "About the same",
                "B is better",
                "B is much better",
            ],
        ),
    ],
)
def test_the_buttons_follow_the_campaign_scale_with_their_shortcuts(alice_client, scale, labels):
    campaign = CampaignFactory(scale=scale)
    PairFactory(campaign=campaign)
    html = alice_client.get(workspace_url(campaign), headers=HTMX).content.decode()
    shown = re.findall(r'<span class="choice-text">([^<]+)</span>', html)
    assert shown == labels
    keys = re.findall(r'data-key="(\d)" data-key-alt="(\w)"', html)
    assert keys == [(str(n + 1), "asdfg"[n]) for n in range(len(labels))]


@pytest.mark.parametrize("swapped", [False, True])
def test_a_submitted_label_is_stored_canonically_and_the_next_pair_comes_back(
    alice_client, annotator_a, campaign, swapped
):
    PairFactory.create_batch(2, campaign=campaign)
    alice_client.get(workspace_url(campaign))
    assignment = current_assignment(campaign, annotator_a)
    Assignment.objects.filter(pk=assignment.pk).update(swapped=swapped)
    response = alice_client.post(
        label_url(assignment),
        {
            "preference": "2",
            "rationale": "A is right.",
            "confidence": "4",
            "flags": ["unsafe"],
            "seconds_spent": "0.5",
        },
        headers=HTMX,
    )
    assert response.status_code == 200
    label = Label.objects.get(assignment=assignment)
    assert label.preference == (-2 if swapped else 2)
    assert (label.rationale, label.confidence, label.flags) == ("A is right.", 4, ["unsafe"])
    following = current_assignment(campaign, annotator_a)
    assert following.pair_id != assignment.pair_id
    html = response.content.decode()
    assert "<html" not in html
    assert f'data-assignment="{following.pk}"' in html
    assert "Saved." in html
    assert "<strong>1</strong> judged by you" in html


def test_a_plain_form_post_redirects_to_the_workspace(alice_client, annotator_a, campaign):
    PairFactory(campaign=campaign)
    alice_client.get(workspace_url(campaign))
    assignment = current_assignment(campaign, annotator_a)
    response = alice_client.post(label_url(assignment), {"preference": "-1"})
    assert response.status_code == 302
    assert response["Location"] == workspace_url(campaign)
    assert Label.objects.filter(assignment=assignment).exists()
    page = alice_client.get(response["Location"]).content.decode()
    assert "Saved." in page  # the message survives the redirect


def test_skip_serves_the_next_pair_and_never_shows_the_skipped_one_again(
    alice_client, annotator_a, campaign
):
    PairFactory.create_batch(2, campaign=campaign)
    alice_client.get(workspace_url(campaign))
    skipped = current_assignment(campaign, annotator_a)
    response = alice_client.post(skip_url(skipped), headers=HTMX)
    assert response.status_code == 200
    skipped.refresh_from_db()
    assert skipped.status == Assignment.Status.SKIPPED
    following = current_assignment(campaign, annotator_a)
    assert following.pair_id != skipped.pair_id
    assert f'data-assignment="{following.pk}"' in response.content.decode()
    assert "1 skipped" in response.content.decode()


def test_a_plain_skip_redirects(alice_client, annotator_a, campaign):
    PairFactory(campaign=campaign)
    alice_client.get(workspace_url(campaign))
    response = alice_client.post(skip_url(current_assignment(campaign, annotator_a)))
    assert response.status_code == 302
    assert response["Location"] == workspace_url(campaign)


def test_an_expired_lease_answers_409_and_keeps_the_typed_rationale(
    alice_client, annotator_a, campaign
):
    PairFactory(campaign=campaign)
    alice_client.get(workspace_url(campaign))
    assignment = current_assignment(campaign, annotator_a)
    later = timezone.now() + timedelta(seconds=campaign.lease_seconds + 60)
    with time_machine.travel(later, tick=False):
        response = alice_client.post(
            label_url(assignment),
            {"preference": "1", "rationale": "My <careful> reasoning & notes"},
            headers=HTMX,
        )
    assert response.status_code == 409
    html = response.content.decode()
    assert "expired" in html
    assert "My &lt;careful&gt; reasoning &amp; notes</textarea>" in html
    assert "data-next-pair" in html
    assert 'role="alert"' in html
    assert not Label.objects.filter(assignment=assignment).exists()


def test_a_second_submit_of_the_same_assignment_answers_409(alice_client, annotator_a, campaign):
    PairFactory.create_batch(2, campaign=campaign)
    alice_client.get(workspace_url(campaign))
    assignment = current_assignment(campaign, annotator_a)
    alice_client.post(label_url(assignment), {"preference": "1"}, headers=HTMX)
    again = alice_client.post(
        label_url(assignment), {"preference": "-1", "rationale": "second try"}, headers=HTMX
    )
    assert again.status_code == 409
    assert "already submitted" in again.content.decode()
    assert "second try</textarea>" in again.content.decode()
    assert Label.objects.get(assignment=assignment).preference == (-1 if assignment.swapped else 1)


def test_skipping_a_finished_assignment_answers_409(alice_client, annotator_a, campaign):
    PairFactory(campaign=campaign)
    alice_client.get(workspace_url(campaign))
    assignment = current_assignment(campaign, annotator_a)
    label_submit(assignment=assignment, data=LabelInput(preference=1))
    response = alice_client.post(skip_url(assignment), headers=HTMX)
    assert response.status_code == 409
    assert "no longer active" in response.content.decode()


def test_missing_preference_answers_422_inline_and_keeps_the_input(
    alice_client, annotator_a, campaign
):
    PairFactory(campaign=campaign)
    alice_client.get(workspace_url(campaign))
    assignment = current_assignment(campaign, annotator_a)
    response = alice_client.post(
        label_url(assignment),
        {"rationale": "half-finished thought", "confidence": "3", "flags": ["broken"]},
        headers=HTMX,
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "Choose which response is better." in html
    assert "half-finished thought</textarea>" in html
    assert re.search(r'name="confidence" value="3" checked', html)
    assert re.search(r'name="flags" value="broken" checked', html)
    assert f'data-assignment="{assignment.pk}"' in html  # still the same pair
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.ACTIVE


def test_a_preference_outside_the_scale_is_rejected(alice_client, annotator_a):
    campaign = CampaignFactory(scale=Scale.BINARY)
    PairFactory(campaign=campaign)
    alice_client.get(workspace_url(campaign))
    assignment = current_assignment(campaign, annotator_a)
    response = alice_client.post(label_url(assignment), {"preference": "0"}, headers=HTMX)
    assert response.status_code == 422
    assert not Label.objects.exists()


def test_a_service_rule_violation_is_shown_inline(alice_client, annotator_a, campaign):
    from annotation.models import Evidence

    PairFactory(campaign=campaign)
    alice_client.get(workspace_url(campaign))
    assignment = current_assignment(campaign, annotator_a)
    Evidence.objects.create(assignment=assignment, kind=Evidence.Kind.LLM, payload={})
    response = alice_client.post(label_url(assignment), {"preference": "1"}, headers=HTMX)
    assert response.status_code == 422
    assert "a rationale of your own is required" in response.content.decode()


def test_another_annotators_assignment_is_not_found(client, annotator_a, annotator_b, campaign):
    PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)
    client.force_login(annotator_b, backend=MODEL_BACKEND)
    assert client.post(label_url(assignment), {"preference": "1"}).status_code == 404
    assert client.post(skip_url(assignment)).status_code == 404
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.ACTIVE


def test_a_user_without_the_annotator_role_gets_404(client, outsider, expert, campaign):
    PairFactory(campaign=campaign)
    for user in (outsider, expert):
        client.force_login(user, backend=MODEL_BACKEND)
        assert client.get(workspace_url(campaign)).status_code == 404
    assert not Assignment.objects.exists()


def test_it_requires_login(client, campaign):
    response = client.get(workspace_url(campaign))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_an_htmx_request_after_logout_redirects_the_whole_page(client, campaign):
    response = client.get(
        workspace_url(campaign), headers={**HTMX, "HX-Current-URL": "http://testserver/x/"}
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("login") + "?next=/x/"


def test_posts_need_login_and_gets_are_refused(client, alice_client, annotator_a, campaign):
    PairFactory(campaign=campaign)
    alice_client.get(workspace_url(campaign))
    assignment = current_assignment(campaign, annotator_a)
    assert alice_client.get(label_url(assignment)).status_code == 405
    alice_client.logout()
    response = alice_client.post(label_url(assignment), {"preference": "1"})
    assert response.status_code == 302 and "login" in response["Location"]


def test_the_annotator_sees_no_other_label_before_submitting(
    client, annotator_a, annotator_b, campaign
):
    pair = PairFactory(campaign=campaign, silver_preference=2)
    bob_assignment = assignment_next(campaign=campaign, annotator=annotator_b)
    label_submit(
        assignment=bob_assignment,
        data=LabelInput(preference=1, rationale="BOB-SECRET-RATIONALE", confidence=5),
    )
    Pair.objects.filter(pk=pair.pk).update(
        consensus_preference=1, provenance=Pair.Provenance.UNANIMOUS, disagreement=0.25
    )
    client.force_login(annotator_a, backend=MODEL_BACKEND)
    page = client.get(workspace_url(campaign)).content.decode()
    fragment = client.get(workspace_url(campaign), headers=HTMX).content.decode()
    assignment = current_assignment(campaign, annotator_a)
    assert assignment.pair_id == pair.pk
    invalid = client.post(label_url(assignment), {"rationale": "x"}, headers=HTMX)
    for html in (page, fragment, invalid.content.decode()):
        assert "BOB-SECRET-RATIONALE" not in html
        assert "bob" not in html
        assert "unanimous" not in html.lower() and "consensus" not in html.lower()
        assert "0.25" not in html


def test_the_page_is_served_under_a_strict_content_security_policy(alice_client, campaign):
    PairFactory(campaign=campaign)
    response = alice_client.get(workspace_url(campaign))
    policy = response["Content-Security-Policy"]
    directives = dict(
        (part.strip().split(" ", 1) + [""])[:2] for part in policy.split(";") if part.strip()
    )
    assert "script-src" in directives
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-eval'" not in directives["script-src"]
    assert "'unsafe-inline'" not in directives.get("style-src", "")
    assert response["X-Content-Type-Options"] == "nosniff"
    html = response.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script in the page"
    assert " style=" not in html and "onclick=" not in html


def test_hostile_pair_text_is_escaped_in_the_page(alice_client, campaign):
    PairFactory(
        campaign=campaign,
        conversation=[{"role": "user", "content": "<script>alert('prompt')</script>"}],
        response_a='<img src=x onerror="alert(1)">',
        response_b="[click](javascript:alert(2))",
    )
    html = alice_client.get(workspace_url(campaign), headers=HTMX).content.decode()
    shown = between(html, '<section class="conversation"', '<div class="judge-area">')
    assert "&lt;script&gt;alert('prompt')&lt;/script&gt;" in shown
    assert '&lt;img src=x onerror="alert(1)"&gt;' in shown
    assert "[click](javascript:alert(2))" in shown  # not a link: shown as typed
    assert "<img" not in shown and "<script" not in shown and "href=" not in shown


def test_with_no_work_left_it_says_so_and_polls(alice_client, campaign):
    response = alice_client.get(workspace_url(campaign), headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Nothing left to judge" in html
    poll = re.search(r"<a [^>]*data-check-work[^>]*>", html).group(0)
    assert 'hx-trigger="click, every 30s"' in poll
    assert f'href="{workspace_url(campaign)}"' in poll
    assert f'hx-get="{workspace_url(campaign)}"' in poll


def test_polling_picks_up_new_work(alice_client, campaign):
    alice_client.get(workspace_url(campaign), headers=HTMX)
    PairFactory(campaign=campaign, response_a="Fresh work")
    html = alice_client.get(workspace_url(campaign), headers=HTMX).content.decode()
    assert "Fresh work" in html and "Nothing left to judge" not in html


def test_the_progress_counter_counts_my_labels_and_the_campaign(
    alice_client, annotator_a, campaign
):
    PairFactory.create_batch(3, campaign=campaign)
    Pair.objects.filter(pk=PairFactory(campaign=campaign).pk).update(status=Pair.Status.COMPLETE)
    html = alice_client.get(workspace_url(campaign), headers=HTMX).content.decode()
    assert "<strong>0</strong> judged by you" in html
    assert "<strong>1</strong> of 4 pairs complete" in html
    assignment = current_assignment(campaign, annotator_a)
    html = alice_client.post(label_url(assignment), {"preference": "1"}, headers=HTMX)
    assert "<strong>1</strong> judged by you" in html.content.decode()


def test_the_server_bounds_the_reported_time_spent(alice_client, annotator_a, campaign):
    PairFactory.create_batch(2, campaign=campaign)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        alice_client.get(workspace_url(campaign))
    first = current_assignment(campaign, annotator_a)
    with time_machine.travel(start + timedelta(seconds=40), tick=False):
        alice_client.post(label_url(first), {"preference": "1", "seconds_spent": "31.5"})
        second = assignment_next(campaign=campaign, annotator=annotator_a)
    with time_machine.travel(start + timedelta(seconds=100), tick=False):
        alice_client.post(label_url(second), {"preference": "1", "seconds_spent": "86400"})
    assert Label.objects.get(assignment=first).seconds_spent == 31.5
    assert Label.objects.get(assignment=second).seconds_spent == pytest.approx(60, abs=0.01)


def test_a_lease_held_for_days_reports_at_most_a_day_spent(alice_client, annotator_a, campaign):
    campaign.lease_seconds = 3 * 86_400
    campaign.save()
    PairFactory(campaign=campaign)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        alice_client.get(workspace_url(campaign))
    assignment = current_assignment(campaign, annotator_a)
    with time_machine.travel(start + timedelta(days=2), tick=False):
        response = alice_client.post(label_url(assignment), {"preference": "1"})
    assert response.status_code == 302
    assert Label.objects.get(assignment=assignment).seconds_spent == 86_400


def test_the_fragment_takes_a_bounded_number_of_queries(
    alice_client, campaign, django_assert_max_num_queries
):
    PairFactory(
        campaign=campaign,
        conversation=[{"role": "user", "content": f"turn {n}"} for n in range(30)],
    )
    alice_client.get(workspace_url(campaign))
    with django_assert_max_num_queries(12):
        alice_client.get(workspace_url(campaign), headers=HTMX)


def test_showing_a_pair_does_not_count_the_campaigns_labels(alice_client, annotator_a, campaign):
    # The counter shows pairs and the annotator's own labels; a count of every label in the
    # campaign on each pair shown would cost more the larger the campaign grows.
    PairFactory.create_batch(2, campaign=campaign)
    alice_client.get(workspace_url(campaign))
    assignment = current_assignment(campaign, annotator_a)
    with CaptureQueriesContext(connection) as queries:
        response = alice_client.post(label_url(assignment), {"preference": "1"}, headers=HTMX)
    assert "<strong>1</strong> judged by you" in response.content.decode()
    label_counts = [
        query["sql"]
        for query in queries.captured_queries
        if "COUNT(" in query["sql"].upper()
        and '"annotation_label"' in query["sql"]
        and '"annotation_label"."annotator_id" =' not in query["sql"]  # the annotator's own
    ]
    assert label_counts == []


def test_gold_pairs_are_not_progress_and_the_counter_follows_the_labels(
    alice_client, annotator_a, annotator_b, campaign, django_capture_on_commit_callbacks
):
    from reviewers.services.gold import pair_mark_gold

    campaign.annotators_per_pair = 2
    campaign.save()
    pair = PairFactory(campaign=campaign)
    for gold in PairFactory.create_batch(2, campaign=campaign):
        pair_mark_gold(pair=gold, preference=1)
    html = alice_client.get(workspace_url(campaign), headers=HTMX).content.decode()
    assert "<strong>0</strong> of 1 pairs complete" in html  # gold checks are not the work
    # Bob's label completes the pair (Alice holds the other slot), well within the cache's life.
    bob = assignment_next(campaign=campaign, annotator=annotator_b)
    assert bob.pair_id == pair.pk
    alice = current_assignment(campaign, annotator_a)
    label_submit(assignment=bob, data=LabelInput(preference=1))
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(
            label_url(alice),
            {"preference": "1" if alice.swapped == bob.swapped else "-1"},
            headers=HTMX,
        )
    pair.refresh_from_db()
    assert pair.status == Pair.Status.COMPLETE
    html = alice_client.get(workspace_url(campaign), headers=HTMX).content.decode()
    assert "<strong>1</strong> of 1 pairs complete" in html
    api = alice_client.get(f"/api/campaigns/{campaign.pk}/progress").json()
    assert (api["pairs"]["complete"], api["pairs"]["total"], api["pairs"]["gold"]) == (1, 1, 2)


def test_each_new_pair_gets_a_history_entry_and_polling_adds_none(
    alice_client, annotator_a, campaign
):
    PairFactory(campaign=campaign)
    response = alice_client.get(workspace_url(campaign), headers=HTMX)
    assignment = current_assignment(campaign, annotator_a)
    assert response["HX-Push-Url"] == reverse("assignment-page", args=[assignment.pk])
    # The same pair asked for again from its own address: no second entry.
    again = alice_client.get(
        workspace_url(campaign),
        headers={**HTMX, "HX-Current-URL": f"http://testserver{response['HX-Push-Url']}"},
    )
    assert "HX-Push-Url" not in again
    alice_client.post(label_url(assignment), {"preference": "1"}, headers=HTMX)
    # Nothing left: the poll replaces the address with the campaign's, pushing nothing.
    poll = alice_client.get(
        workspace_url(campaign),
        headers={**HTMX, "HX-Current-URL": f"http://testserver{workspace_url(campaign)}"},
    )
    assert "Nothing left to judge" in poll.content.decode()
    assert "HX-Push-Url" not in poll and "HX-Replace-Url" not in poll


@pytest.mark.parametrize(
    ("scale", "outcomes"),
    [
        (Scale.BINARY, [("both_bad", "b", "Both are bad")]),
        (
            Scale.FIVE_POINT,
            [("both_bad", "b", "Both are bad"), ("both_good", "o", "Both are good")],
        ),
    ],
)
def test_both_bad_and_both_good_are_offered_beside_the_scale(alice_client, scale, outcomes):
    campaign = CampaignFactory(scale=scale)
    PairFactory(campaign=campaign)
    html = alice_client.get(workspace_url(campaign), headers=HTMX).content.decode()
    offered = re.findall(
        r'name="preference" value="(both_\w+)" data-key="(\w)".*?outcome-text">([^<]+)<',
        html,
        re.DOTALL,
    )
    assert offered == outcomes
