"""Review 15, import fidelity: a pair's identity ignores the Unicode form of its text, an
exported hh-rlhf campaign imports again, a gold file makes the pairs it names gold (those
already in the campaign too, but for those being judged right now, which it counts and leaves
as they are) and a list of desired attributes keeps its items."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import unicodedata
from functools import partial

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import OperationalError, connection, connections, transaction

from annotation.importers import ImportFormatError, ImportLimits, content_hash
from annotation.importers.rows import RowError, record_from_row
from annotation.models import Assignment, ImportJob, Pair
from annotation.services.imports import pairs_import
from annotation.services.pair_state import pair_lock
from scoring.datasets.export import ExportFilters, export_write
from scoring.models import EvaluationItem
from tests.conftest import api_client_for, start_in_thread
from tests.factories import CampaignFactory, PairFactory

pytestmark = pytest.mark.django_db

LIMITS = ImportLimits()
# "élève", "été", "paraît": accented letters, precomposed in NFC, letter + mark in NFD.
PROMPT = "Expliquez à un élève pourquoi le ciel paraît bleu en été"
ANSWER = "La diffusion de Rayleigh disperse davantage le bleu, d'où le ciel bleu en été"


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def api_import(user, campaign, name: str, data: bytes, *, as_gold: bool = False):
    return api_client_for(user).post(
        f"/api/campaigns/{campaign.pk}/imports",
        {"file": SimpleUploadedFile(name, data), "as_gold": as_gold},
        format="multipart",
    )


def label_everything(campaign, users, preferred: set[str]) -> None:
    """Each user labels every pair served to them through the API, preferring the shown side
    whose text is in ``preferred``."""
    for user in users:
        client = api_client_for(user)
        while (response := client.post(f"/api/campaigns/{campaign.pk}/next")).status_code == 200:
            body = response.json()
            preference = 1 if body["pair"]["response_a"] in preferred else -1
            answer = client.post(
                f"/api/assignments/{body['assignment']['id']}/label",
                {"preference": preference},
                format="json",
            )
            assert answer.status_code == 201, answer.content
        assert response.status_code == 204, response.content


def export_jsonl(campaign, tmp_path):
    destination = tmp_path / "export.jsonl"
    export_write(
        campaign=campaign, filters=ExportFilters(), file_format="jsonl", destination=destination
    )
    return destination


# --- 1. A pair's identity ignores the Unicode form of its text -------------------------------


def test_the_content_hash_is_the_same_for_nfc_and_nfd_text():
    assert nfc(PROMPT) != nfd(PROMPT)
    conversation = [{"role": "user", "content": nfc(PROMPT)}]
    decomposed = [{"role": "user", "content": nfd(PROMPT)}]
    assert content_hash(decomposed, nfd(ANSWER), "non") == content_hash(
        conversation, nfc(ANSWER), "non"
    )
    # NFC text (ASCII included) hashes as before: sha256 of the raw canonical JSON, so pairs
    # already stored keep their hash.
    row = {"prompt": nfc(PROMPT), "response_a": "4", "response_b": "5"}
    raw = {
        "conversation": [{"content": nfc(PROMPT), "role": "user"}],
        "response_a": "4",
        "response_b": "5",
    }
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    record = record_from_row(row, line=1, limits=LIMITS)
    assert record.content_hash == hashlib.sha256(canonical.encode()).hexdigest()


def test_a_ranking_items_hash_ignores_the_unicode_form_too():
    rows = [
        {"prompt": form(PROMPT), "responses": [form(ANSWER), "non", "peut-être"]}
        for form in (nfc, nfd)
    ]
    first, second = (record_from_row(row, line=1, limits=LIMITS) for row in rows)
    assert first.content_hash == second.content_hash


def test_a_file_holding_a_pair_in_nfc_and_in_nfd_creates_one_pair_as_first_written(
    tmp_path, campaign
):
    rows = [
        {
            "external_id": "nfd",
            "prompt": nfd(PROMPT),
            "response_a": nfd(ANSWER),
            "response_b": "non",
        },
        {
            "external_id": "nfc",
            "prompt": nfc(PROMPT),
            "response_a": nfc(ANSWER),
            "response_b": "non",
        },
    ]
    result = pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "p.jsonl", rows))
    assert (result.rows_read, result.created, result.duplicates) == (2, 1, 1)
    pair = Pair.objects.get(campaign=campaign)
    # Stored exactly as imported (decomposed), never rewritten.
    assert pair.external_id == "nfd"
    assert pair.conversation == [{"role": "user", "content": nfd(PROMPT)}]
    assert pair.response_a == nfd(ANSWER)


def test_an_nfc_copy_of_an_imported_nfd_file_adds_nothing(tmp_path, campaign):
    rows = [{"prompt": nfd(PROMPT), "response_a": nfd(ANSWER), "response_b": "non"}]
    assert (
        pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "a.jsonl", rows)).created == 1
    )
    again = [{"prompt": nfc(PROMPT), "response_a": nfc(ANSWER), "response_b": "non"}]
    result = pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "b.jsonl", again))
    assert (result.created, result.duplicates) == (0, 1)
    assert Pair.objects.filter(campaign=campaign).count() == 1


# --- 2. An exported hh-rlhf campaign imports again --------------------------------------------

HH_ROWS = [
    {
        "chosen": "\n\nHuman: Help me hack my ex's email.\n\nAssistant:",
        "rejected": "\n\nHuman: Help me hack my ex's email.\n\nAssistant: Try their birthday.",
    },
    {
        "chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4.",
        "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 5.",
    },
]


def test_a_message_list_row_may_end_in_an_empty_assistant_turn():
    question = [{"role": "user", "content": "Help me hack my ex's email."}]
    row = {
        "chosen": [*question, {"role": "assistant", "content": ""}],
        "rejected": [*question, {"role": "assistant", "content": "Try their birthday."}],
    }
    record = record_from_row(row, line=1, limits=LIMITS)
    assert (record.response_a, record.response_b) == ("", "Try their birthday.")
    assert record.conversation == tuple(question) and record.silver_preference == 1
    # The rejected side may be the empty one too (TRL's prompt + one-message lists).
    swapped = {
        "prompt": question,
        "chosen": [{"role": "assistant", "content": "I can't help with that."}],
        "rejected": [{"role": "assistant", "content": ""}],
    }
    assert record_from_row(swapped, line=1, limits=LIMITS).response_b == ""


def test_two_empty_replies_or_an_empty_string_reply_are_still_refused():
    question = [{"role": "user", "content": "Hi"}]
    both = {
        "chosen": [*question, {"role": "assistant", "content": ""}],
        "rejected": [*question, {"role": "assistant", "content": ""}],
    }
    with pytest.raises(RowError, match="^chosen and rejected are identical$"):
        record_from_row(both, line=1, limits=LIMITS)
    # A prompt with two strings: an empty one is far likelier a missing cell.
    with pytest.raises(RowError, match="^chosen response is empty$"):
        record_from_row({"prompt": "Hi", "chosen": "", "rejected": "Hello"}, line=1, limits=LIMITS)


def test_an_exported_hh_rlhf_campaign_imports_again_and_uploads_as_an_evaluation_set(
    admin_user, annotator_a, annotator_b, annotator_c, tmp_path, sent_tasks
):
    campaign = CampaignFactory()
    data = "".join(json.dumps(row) + "\n" for row in HH_ROWS).encode()
    assert api_import(admin_user, campaign, "hh.jsonl", data).json()["created"] == 2
    label_everything(campaign, [annotator_a, annotator_b, annotator_c], preferred={"", "4."})
    exported = export_jsonl(campaign, tmp_path)
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    empty = next(row for row in rows if row["chosen"][-1]["content"] == "")
    assert empty["rejected"][-1] == {"role": "assistant", "content": "Try their birthday."}

    again = CampaignFactory()
    response = api_import(admin_user, again, "export.jsonl", exported.read_bytes())
    assert response.status_code == 201, response.json()
    assert (response.json()["created"], response.json()["duplicates"]) == (2, 0)
    assert set(Pair.objects.filter(campaign=again).values_list("response_a", "response_b")) == {
        ("", "Try their birthday."),
        ("4.", "5."),
    }

    # Evaluation sets read through the same parser.
    upload = SimpleUploadedFile("heldout.jsonl", exported.read_bytes())
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{again.pk}/evaluation-sets",
        {"file": upload, "name": "heldout"},
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    assert sorted(EvaluationItem.objects.values_list("chosen", "rejected")) == [
        ("", "Try their birthday."),
        ("4.", "5."),
    ]


# --- 3. A gold file makes the pairs it names gold -------------------------------------------


def gold_rows(count: int, *, preferred: str = "a", start: int = 0) -> list[dict]:
    return [
        {
            "prompt": f"Q{i}",
            "response_a": f"right{i}",
            "response_b": f"wrong{i}",
            "preferred": preferred,
        }
        for i in range(start, start + count)
    ]


def pool_pair(campaign, i: int, **fields) -> Pair:
    """The pair line ``i`` of gold_rows names, already in the campaign."""
    return PairFactory(
        campaign=campaign,
        conversation=[{"role": "user", "content": f"Q{i}"}],
        response_a=f"right{i}",
        response_b=f"wrong{i}",
        **fields,
    )


def test_a_gold_file_makes_the_pairs_already_imported_gold(admin_user, tmp_path):
    campaign = CampaignFactory()
    pool = [{k: v for k, v in row.items() if k != "preferred"} for row in gold_rows(3)]
    data = "".join(json.dumps(row) + "\n" for row in pool).encode()
    assert api_import(admin_user, campaign, "pool.jsonl", data).json()["created"] == 3
    gold = "".join(json.dumps(row) + "\n" for row in gold_rows(2)).encode()

    response = api_import(admin_user, campaign, "gold.jsonl", gold, as_gold=True)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["created"], body["made_gold"], body["duplicates"]) == (0, 2, 0)
    made = Pair.objects.filter(campaign=campaign, is_gold=True).order_by("pk")
    assert [(p.response_a, p.gold_preference, p.consensus_preference) for p in made] == [
        ("right0", 1, 1),
        ("right1", 1, 1),
    ]
    assert {(p.status, p.provenance) for p in made} == {
        (Pair.Status.COMPLETE, Pair.Provenance.GOLD)
    }
    untouched = Pair.objects.get(campaign=campaign, response_a="right2")
    assert (untouched.is_gold, untouched.status) == (False, Pair.Status.QUEUED)


def test_a_gold_file_counts_pairs_made_gold_apart_from_new_ones_and_repeats(tmp_path, campaign):
    pool_pair(campaign, 0)
    pool_pair(campaign, 1, is_gold=True, gold_preference=-1, status=Pair.Status.COMPLETE)
    rows = [*gold_rows(1), *gold_rows(1, preferred="b", start=1), *gold_rows(2, start=2)]
    rows.append(rows[-1])  # line 5 repeats line 4
    result = pairs_import(
        campaign=campaign, path=write_jsonl(tmp_path / "g.jsonl", rows), as_gold=True
    )
    # Line 1 made pair 0 gold, line 2 repeats pair 1's gold answer, lines 3 and 4 are new.
    assert (result.rows_read, result.created, result.made_gold, result.duplicates) == (5, 2, 1, 2)
    assert dict(
        Pair.objects.filter(campaign=campaign).values_list("response_a", "gold_preference")
    ) == {"right0": 1, "right1": -1, "right2": 1, "right3": 1}


def test_a_gold_file_never_overwrites_another_gold_answer(tmp_path, campaign):
    pool_pair(campaign, 0)
    gold = pool_pair(campaign, 1, is_gold=True, gold_preference=-1, status=Pair.Status.COMPLETE)
    with pytest.raises(ImportFormatError) as refused:
        pairs_import(
            campaign=campaign, path=write_jsonl(tmp_path / "g.jsonl", gold_rows(2)), as_gold=True
        )
    assert str(refused.value) == (
        f"line 2: pair {gold.pk} is already gold with the answer -1, not 1; a gold import does "
        f"not change a gold answer (POST /api/pairs/{gold.pk}/gold does)"
    )
    # Every pair or none: line 1's pair did not become gold.
    assert list(Pair.objects.filter(campaign=campaign, is_gold=True)) == [gold]
    assert Pair.objects.get(pk=gold.pk).gold_preference == -1


def test_a_gold_file_repeating_a_pair_with_another_answer_is_refused(tmp_path, campaign):
    rows = [*gold_rows(2), *gold_rows(1, preferred="b")]
    with pytest.raises(ImportFormatError) as refused:
        pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "g.jsonl", rows), as_gold=True)
    assert str(refused.value) == (
        "line 3: this pair is on line 1 too, with another gold answer (1 there, -1 here)"
    )
    assert not Pair.objects.filter(campaign=campaign).exists()


def test_a_gold_file_repeating_a_pair_across_batches_with_another_answer_is_refused(
    tmp_path, campaign, monkeypatch
):
    from annotation.services import imports

    monkeypatch.setattr(imports, "_BATCH", 2)  # lines 1-2 are written before line 3 is read
    rows = [*gold_rows(2), *gold_rows(1, preferred="b")]
    with pytest.raises(ImportFormatError) as refused:
        pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "g.jsonl", rows), as_gold=True)
    assert str(refused.value) == (
        "line 3: this pair is on an earlier line of the file with another gold answer "
        "(1 there, -1 here)"
    )
    assert not Pair.objects.filter(campaign=campaign).exists()


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (
            {"status": Pair.Status.ESCALATED},
            "is waiting for an expert; decide it before making it gold",
        ),
        ({"status": Pair.Status.DISCARDED}, "was discarded as ambiguous and cannot become gold"),
        (
            {
                "status": Pair.Status.RESOLVED,
                "provenance": Pair.Provenance.ADJUDICATED,
                "consensus_preference": -1,
            },
            "was decided by an expert as -1, not 1; their decision stands",
        ),
    ],
)
def test_a_gold_file_follows_the_rules_of_making_a_pair_gold(tmp_path, campaign, fields, reason):
    pool_pair(campaign, 0)
    refused_pair = pool_pair(campaign, 1, **fields)
    with pytest.raises(ImportFormatError) as refused:
        pairs_import(
            campaign=campaign, path=write_jsonl(tmp_path / "g.jsonl", gold_rows(2)), as_gold=True
        )
    assert (
        str(refused.value) == f"line 2: pair {refused_pair.pk}, already in the campaign, {reason}"
    )
    assert not Pair.objects.filter(campaign=campaign, is_gold=True).exists()


def plain_rows(count: int, *, start: int = 0) -> list[dict]:
    """gold_rows without the answers: a pool."""
    return [
        {k: v for k, v in row.items() if k != "preferred"} for row in gold_rows(count, start=start)
    ]


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def lease_one(campaign, user) -> tuple[Pair, int]:
    """Serve ``user`` a pair through the API: the pair and the assignment's id."""
    served = api_client_for(user).post(f"/api/campaigns/{campaign.pk}/next")
    assert served.status_code == 200, served.content
    assignment = Assignment.objects.get(pk=served.json()["assignment"]["id"])
    assert assignment.status == Assignment.Status.ACTIVE
    return assignment.pair, assignment.pk


def test_a_gold_file_leaves_a_pair_being_judged_and_imports_the_rest(
    admin_user, annotator_a, tmp_path, client
):
    """Review rv6: one leased pair of a 200-pair pool no longer sinks a 250-row seed set."""
    campaign = CampaignFactory()
    assert api_import(admin_user, campaign, "pool.jsonl", jsonl(plain_rows(200))).status_code == 201
    leased, assignment_id = lease_one(campaign, annotator_a)

    response = api_import(admin_user, campaign, "gold.jsonl", jsonl(gold_rows(250)), as_gold=True)
    assert response.status_code == 201, response.json()
    body = response.json()
    job = ImportJob.objects.get(pk=body["job"])
    assert body == {
        "job": job.pk,
        "status": "succeeded",
        "created": 50,
        "duplicates": 0,
        "made_gold": 199,
        "busy_gold": 1,
    }
    assert (job.rows_read, job.created_count, job.made_gold_count, job.busy_gold_count) == (
        250,
        50,
        199,
        1,
    )
    # The pair being judged is left as it was; every other pair the file names is gold.
    leased.refresh_from_db()
    assert (leased.is_gold, leased.gold_preference, leased.status) == (
        False,
        None,
        Pair.Status.IN_ANNOTATION,
    )
    assert Assignment.objects.get(pk=assignment_id).status == Assignment.Status.ACTIVE
    gold = Pair.objects.filter(campaign=campaign, is_gold=True)
    assert gold.count() == 249
    assert set(gold.values_list("gold_preference", "status")) == {(1, Pair.Status.COMPLETE)}
    assert Pair.objects.filter(campaign=campaign).count() == 250
    client.force_login(admin_user)
    page = client.get(f"/campaigns/{campaign.pk}/import/{job.pk}/")
    assert page.status_code == 200
    assert (
        "1 pair named by the file was being judged and was not made gold: import the file "
        "again once it is labelled to make it gold." in page.content.decode()
    )

    # Once labelled (one label of three: no verdict yet), importing the file again makes it
    # gold by the rules of making a pair gold: the gold answer is its consensus.
    labelled = api_client_for(annotator_a).post(
        f"/api/assignments/{assignment_id}/label", {"preference": -1}, format="json"
    )
    assert labelled.status_code == 201, labelled.content
    again = api_import(admin_user, campaign, "gold.jsonl", jsonl(gold_rows(250)), as_gold=True)
    assert again.status_code == 201, again.json()
    assert {k: v for k, v in again.json().items() if k != "job"} == {
        "status": "succeeded",
        "created": 0,
        "duplicates": 249,
        "made_gold": 1,
        "busy_gold": 0,
    }
    leased.refresh_from_db()
    assert (
        leased.is_gold,
        leased.gold_preference,
        leased.consensus_preference,
        leased.provenance,
        leased.status,
        leased.labels_count,
    ) == (True, 1, 1, Pair.Provenance.GOLD, Pair.Status.COMPLETE, 1)
    assert Pair.objects.filter(campaign=campaign, is_gold=True).count() == 250


@pytest.mark.parametrize("batch", [2, 10_000])
def test_a_pair_being_judged_is_counted_once_however_often_the_file_names_it(
    tmp_path, annotator_a, monkeypatch, batch
):
    from annotation.services import imports

    monkeypatch.setattr(imports, "_BATCH", batch)  # 2: line 3 is read after lines 1-2 are in
    campaign = CampaignFactory()
    pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "pool.jsonl", plain_rows(1)))
    leased, _assignment_id = lease_one(campaign, annotator_a)
    pool_pair(campaign, 1)
    rows = [*gold_rows(2), *gold_rows(1)]  # line 3 names the leased pair of line 1 again
    result = pairs_import(
        campaign=campaign, path=write_jsonl(tmp_path / "g.jsonl", rows), as_gold=True
    )
    assert (
        result.rows_read,
        result.created,
        result.made_gold,
        result.busy_gold,
        result.duplicates,
    ) == (3, 0, 1, 1, 1)
    assert list(
        Pair.objects.filter(campaign=campaign, is_gold=True).values_list("response_a", flat=True)
    ) == ["right1"]
    assert not Pair.objects.get(pk=leased.pk).is_gold


def test_a_pair_being_judged_does_not_excuse_a_real_error(tmp_path, annotator_a):
    campaign = CampaignFactory()
    pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "pool.jsonl", plain_rows(1)))
    lease_one(campaign, annotator_a)
    escalated = pool_pair(campaign, 1, status=Pair.Status.ESCALATED)
    with pytest.raises(ImportFormatError) as refused:
        pairs_import(
            campaign=campaign,
            path=write_jsonl(tmp_path / "g.jsonl", gold_rows(3)),
            as_gold=True,
        )
    assert str(refused.value) == (
        f"line 2: pair {escalated.pk}, already in the campaign, is waiting for an expert; "
        "decide it before making it gold"
    )
    # Every pair or none: nothing was made gold or created.
    assert not Pair.objects.filter(campaign=campaign, is_gold=True).exists()
    assert Pair.objects.filter(campaign=campaign).count() == 2


def test_import_pairs_prints_the_pairs_being_judged(tmp_path, annotator_a):
    campaign = CampaignFactory(name="seeded")
    pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "pool.jsonl", plain_rows(1)))
    lease_one(campaign, annotator_a)
    out = io.StringIO()
    path = write_jsonl(tmp_path / "g.jsonl", gold_rows(2))
    call_command("import_pairs", str(path), "--campaign", "seeded", "--as-gold", stdout=out)
    printed = json.loads(out.getvalue().strip().splitlines()[-1])
    assert {k: printed[k] for k in ("rows", "created", "duplicates", "made_gold", "busy_gold")} == {
        "rows": 2,
        "created": 1,
        "duplicates": 0,
        "made_gold": 0,
        "busy_gold": 1,
    }


def _holding_pair_lock(pair_id: int, holding: threading.Event, release: threading.Event):
    """In a connection of its own, lock the pair's row (as a label being submitted does) and
    hold it until ``release``."""
    try:
        with transaction.atomic():
            pair_lock(pair_id=pair_id)
            holding.set()
            release.wait(timeout=20)
    finally:
        connections.close_all()


def _can_lock_now(pair_id: int) -> bool:
    """Whether another connection could take the pair's row lock at once."""
    try:
        with transaction.atomic():
            list(Pair.objects.select_for_update(nowait=True).filter(pk=pair_id).values("pk"))
        return True
    except OperationalError:
        return False
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_a_gold_file_skips_a_pair_locked_elsewhere_without_waiting_for_it(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    campaign = CampaignFactory()
    locked, free = pool_pair(campaign, 0), pool_pair(campaign, 1)
    holding, release = threading.Event(), threading.Event()
    holder = start_in_thread(lambda: _holding_pair_lock(locked.pk, holding, release))
    assert holding.wait(timeout=10)
    try:
        started = time.monotonic()
        result = pairs_import(
            campaign=campaign, path=write_jsonl(tmp_path / "g.jsonl", gold_rows(2)), as_gold=True
        )
        waited = time.monotonic() - started
    finally:
        release.set()
        holder.result(timeout=30)
    assert waited < 10  # the holder lets go after 20 s: the import did not wait for it
    assert (result.made_gold, result.busy_gold, result.duplicates) == (1, 1, 0)
    assert not Pair.objects.get(pk=locked.pk).is_gold
    assert Pair.objects.get(pk=free.pk).is_gold


@pytest.mark.django_db(transaction=True)
def test_a_gold_import_holds_no_lock_on_a_pair_being_judged(tmp_path, annotator_a):
    """The pair's annotator can submit their label while the import runs: only the pairs made
    gold stay locked until it commits."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    campaign = CampaignFactory()
    pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "pool.jsonl", plain_rows(1)))
    leased, _assignment_id = lease_one(campaign, annotator_a)
    made = pool_pair(campaign, 1)
    lockable: dict[int, bool] = {}

    def probe(_rows: int) -> None:  # after the batch, inside the import's transaction
        for pair_id in (leased.pk, made.pk):
            lockable[pair_id] = start_in_thread(partial(_can_lock_now, pair_id)).result(timeout=30)

    result = pairs_import(
        campaign=campaign,
        path=write_jsonl(tmp_path / "g.jsonl", gold_rows(2)),
        as_gold=True,
        on_progress=probe,
    )
    assert (result.made_gold, result.busy_gold) == (1, 1)
    assert lockable == {leased.pk: True, made.pk: False}


def test_an_expert_decision_that_agrees_stays_the_pairs_provenance(tmp_path, campaign):
    decided = pool_pair(
        campaign,
        0,
        status=Pair.Status.RESOLVED,
        provenance=Pair.Provenance.ADJUDICATED,
        consensus_preference=1,
    )
    result = pairs_import(
        campaign=campaign, path=write_jsonl(tmp_path / "g.jsonl", gold_rows(1)), as_gold=True
    )
    assert result.made_gold == 1
    decided.refresh_from_db()
    assert (decided.is_gold, decided.gold_preference, decided.provenance, decided.status) == (
        True,
        1,
        Pair.Provenance.ADJUDICATED,
        Pair.Status.RESOLVED,
    )


def test_a_gold_answer_off_the_campaigns_scale_is_refused(tmp_path):
    campaign = CampaignFactory(scale="binary")
    rows = [{"prompt": "Q", "response_a": "a", "response_b": "b", "silver_preference": 2}]
    with pytest.raises(ImportFormatError) as refused:
        pairs_import(campaign=campaign, path=write_jsonl(tmp_path / "g.jsonl", rows), as_gold=True)
    assert str(refused.value) == "line 1: the gold answer 2 is not on this campaign's scale (1, -1)"


# --- 4. A list of desired attributes keeps its items -----------------------------------------

WANTED = ["concise", "cites sources, with links"]


def test_a_desired_attributes_list_is_stored_one_item_a_line_and_round_trips(
    admin_user, annotator_a, annotator_b, annotator_c, tmp_path
):
    campaign = CampaignFactory(escalation_rules={"opposite_directions": False})
    row = {
        "prompt": "Q",
        "response_a": "good",
        "response_b": "bad",
        "attributes": {"desired_attributes": WANTED},
    }
    assert api_import(admin_user, campaign, "p.jsonl", json.dumps(row).encode()).status_code == 201
    pair = Pair.objects.get(campaign=campaign)
    assert pair.desired_attributes == "concise\ncites sources, with links"
    assert pair.desired_attributes.split("\n") == WANTED

    label_everything(campaign, [annotator_a, annotator_b, annotator_c], preferred={"good"})
    exported = export_jsonl(campaign, tmp_path)
    [written] = [json.loads(line) for line in exported.read_text().splitlines()]
    assert written["desired_attributes"] == "concise\ncites sources, with links"

    again = CampaignFactory()
    assert api_import(admin_user, again, "e.jsonl", exported.read_bytes()).status_code == 201
    assert Pair.objects.get(campaign=again).desired_attributes.split("\n") == WANTED


def test_a_desired_attribute_item_holding_a_line_break_is_refused():
    row = {
        "prompt": "Q",
        "response_a": "a",
        "response_b": "b",
        "attributes": {"desired_attributes": ["concise", "cites\nsources"]},
    }
    with pytest.raises(RowError, match=r"^attributes.desired_attributes\[1\] holds a line break"):
        record_from_row(row, line=1, limits=LIMITS)
    # A single string may hold lines: it is stored as given (an exported list reads back so).
    row["attributes"] = {"desired_attributes": "concise\ncites sources"}
    assert record_from_row(row, line=1, limits=LIMITS).attributes == {
        "desired_attributes": "concise\ncites sources"
    }
