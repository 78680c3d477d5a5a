"""Regressions in the management commands: bad input is a one-line CommandError (manage.py
prints it without a traceback) and leaves nothing behind."""

from __future__ import annotations

import errno
import io
import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from annotation.demo_data import DEMO_CORPUS_NAME
from annotation.management.commands.seed_demo import DEMO_CAMPAIGN
from annotation.models import Campaign, CampaignMember, Corpus, Document, Pair
from annotation.services.corpus import CorpusError, documents_from_jsonl
from tests.factories import CampaignFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

_real_open = Path.open
MAX_DEMO_PAIRS = 10_000  # seed_demo's cap on --pairs and --gold


def _pair_rows(n: int) -> list[dict]:
    return [
        {
            "conversation": [{"role": "user", "content": f"What is {i} + {i}?"}],
            "response_a": f"{2 * i}",
            "response_b": f"{2 * i + 1}",
            "preferred": "a",
        }
        for i in range(n)
    ]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _fail_open(monkeypatch, target: Path, error: BaseException) -> None:
    """Opening `target` (and only it) raises `error`: an unreadable file, or Ctrl-C."""

    def open_(self, *args, **kwargs):
        if Path(self) == target:
            raise error
        return _real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)


def _import(path: Path, campaign: str) -> None:
    call_command("import_pairs", str(path), "--campaign", campaign, stdout=io.StringIO())


# --- 1. import_pairs: the campaign is validated first and created with the import ------------


@pytest.mark.parametrize(
    ("name", "why"),
    [("", "needs a name"), ("   ", "needs a name"), ("x" * 400, "at most 200 characters")],
)
def test_import_pairs_refuses_an_invalid_campaign_name_and_creates_nothing(tmp_path, name, why):
    path = _jsonl(tmp_path / "p.jsonl", _pair_rows(2))
    with pytest.raises(CommandError, match=f"invalid campaign: .*{why}"):
        _import(path, name)
    assert not Campaign.objects.exists()
    assert not Pair.objects.exists()


def test_a_bad_file_leaves_no_new_campaign_behind(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_pair_rows(1)[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(CommandError, match="nothing was imported"):
        _import(path, "fresh")
    assert not Campaign.objects.filter(name="fresh").exists()


def test_a_bad_file_keeps_an_existing_campaign_and_its_pairs(tmp_path):
    _import(_jsonl(tmp_path / "good.jsonl", _pair_rows(3)), "kept")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(CommandError, match="nothing was imported"):
        _import(bad, "kept")
    assert Pair.objects.filter(campaign__name="kept").count() == 3


def test_an_interrupted_import_leaves_no_new_campaign_behind(tmp_path, monkeypatch):
    path = _jsonl(tmp_path / "p.jsonl", _pair_rows(2))
    _fail_open(monkeypatch, path, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        _import(path, "interrupted")
    assert not Campaign.objects.filter(name="interrupted").exists()


def test_import_pairs_creates_the_campaign_with_the_pairs(tmp_path):
    out = io.StringIO()
    call_command(
        "import_pairs",
        str(_jsonl(tmp_path / "p.jsonl", _pair_rows(4))),
        "--campaign",
        "new one",
        stdout=out,
    )
    counts = json.loads(out.getvalue().splitlines()[-1])
    assert (counts["campaign"], counts["created"]) == ("new one", 4)
    assert Pair.objects.filter(campaign__name="new one").count() == 4


def test_import_pairs_says_a_directory_is_a_directory(tmp_path):
    with pytest.raises(CommandError, match="is a directory"):
        _import(tmp_path, "dir")
    assert not Campaign.objects.exists()


# --- 2. unreadable input --------------------------------------------------------------------


def test_import_pairs_names_an_unreadable_file_and_leaves_nothing(tmp_path, monkeypatch):
    path = _jsonl(tmp_path / "locked.jsonl", _pair_rows(2))
    _fail_open(monkeypatch, path, PermissionError(errno.EACCES, "Permission denied"))
    with pytest.raises(CommandError, match=f"cannot read {path}: Permission denied"):
        _import(path, "locked")
    assert not Campaign.objects.exists()


@pytest.mark.parametrize("name", ["locked.jsonl", "locked.zip"])
def test_load_corpus_names_an_unreadable_file_and_loads_nothing(tmp_path, monkeypatch, name):
    path = tmp_path / name
    path.write_bytes(b"")
    _fail_open(monkeypatch, path, PermissionError(errno.EACCES, "Permission denied"))
    with pytest.raises(CommandError, match=f"cannot read {path}: Permission denied"):
        call_command("load_corpus", str(path), "--name", "locked", stdout=io.StringIO())
    assert not Corpus.objects.exists()


def test_load_corpus_names_an_unreadable_file_in_a_folder_and_loads_nothing(tmp_path, monkeypatch):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("# Alpha\n\nFirst.\n")
    (folder / "b.md").write_text("# Beta\n\nSecond.\n")
    _fail_open(monkeypatch, folder / "b.md", PermissionError(errno.EACCES, "Permission denied"))
    with pytest.raises(CommandError, match="cannot read b.md: Permission denied"):
        call_command("load_corpus", str(folder), "--name", "notes", stdout=io.StringIO())
    assert not Corpus.objects.exists()
    assert not Document.objects.exists()


class _FailingStream(io.RawIOBase):
    """A file that opens but whose first read fails (a disk error)."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise OSError(errno.EIO, "Input/output error")


def test_a_read_error_at_the_first_bytes_of_a_jsonl_is_a_corpus_error():
    with pytest.raises(CorpusError, match="Input/output error"):
        list(documents_from_jsonl(_FailingStream(), name="x.jsonl"))


# --- 3. seed_demo's counts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--pairs", "-1"], "is negative"),
        (["--gold", "-5"], "is negative"),
        (["--pairs", "lots"], "a whole number"),
        (["--gold", str(MAX_DEMO_PAIRS + 1)], f"at most {MAX_DEMO_PAIRS:,}"),
    ],
)
def test_seed_demo_refuses_bad_counts_before_creating_anything(args, why):
    with pytest.raises(CommandError, match=why):
        call_command("seed_demo", *args, stdout=io.StringIO())
    assert not Campaign.objects.filter(name=DEMO_CAMPAIGN).exists()
    assert not Corpus.objects.filter(name=DEMO_CORPUS_NAME).exists()
    assert not get_user_model().objects.exists()


def test_seed_demo_checks_counts_given_as_keywords_too():
    with pytest.raises(CommandError, match="is negative"):
        call_command("seed_demo", pairs=-1, gold=2, stdout=io.StringIO())
    assert not Campaign.objects.exists()


# --- 4. campaign_member and all-digit campaign names --------------------------------------------


def test_campaign_member_refuses_a_key_that_is_an_id_and_another_campaigns_name():
    first = CampaignFactory()
    digits = CampaignFactory(name=str(first.pk))
    UserFactory(username="cli")
    with pytest.raises(CommandError, match=rf"ambiguous.*id {first.pk}.*id {digits.pk}"):
        call_command("campaign_member", "add", str(first.pk), "cli", stdout=io.StringIO())
    assert not CampaignMember.objects.exists()
    call_command("campaign_member", "add", str(digits.pk), "cli", stdout=io.StringIO())
    assert CampaignMember.objects.get().campaign == digits


def test_campaign_member_reaches_an_all_digit_name_that_is_no_id():
    named = CampaignFactory(name="987654")
    UserFactory(username="cli")
    call_command("campaign_member", "add", "987654", "cli", stdout=io.StringIO())
    assert CampaignMember.objects.get().campaign == named


def test_campaign_member_takes_a_campaign_whose_name_is_its_own_id():
    campaign = CampaignFactory()
    campaign.name = str(campaign.pk)
    campaign.save()
    UserFactory(username="cli")
    call_command("campaign_member", "add", str(campaign.pk), "cli", stdout=io.StringIO())
    assert CampaignMember.objects.get().campaign == campaign


# --- 5. create_user's password ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password", "why"),
    [
        ("gina", "", "cannot be empty"),
        ("gina", "short", "too short"),
        ("gina", "password123", "too common"),
        ("gina", "83749201736", "entirely numeric"),
        ("margaret.smithson", "margaret.smithson", "too similar to the username"),
    ],
)
def test_create_user_refuses_a_weak_password_and_stores_nothing(username, password, why):
    with pytest.raises(CommandError, match=f"invalid user .*password: .*{why}"):
        call_command(
            "create_user",
            username,
            "--role",
            "annotator",
            "--password",
            password,
            stdout=io.StringIO(),
        )
    assert not get_user_model().objects.exists()


def test_create_user_checks_the_password_against_the_email_too():
    with pytest.raises(CommandError, match="too similar to the email address"):
        call_command(
            "create_user",
            "hal",
            "--role",
            "annotator",
            "--email",
            "quintessential@example.org",
            "--password",
            "quintessential",
            stdout=io.StringIO(),
        )
    assert not get_user_model().objects.exists()


def test_create_user_refuses_a_name_that_differs_only_in_case():
    """As an invitation does (review 21): "Ada" beside "ada" reads as the same person."""
    call_command("create_user", "ada", "--role", "annotator", stdout=io.StringIO())
    with pytest.raises(CommandError, match="'ada' exists: names that differ only in case"):
        call_command("create_user", "Ada", "--role", "admin", stdout=io.StringIO())
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["ada"]
    # The same name again is that user (a role change), as before.
    call_command("create_user", "ada", "--role", "expert", stdout=io.StringIO())


def test_create_user_keeps_an_existing_user_as_is_on_a_weak_password():
    call_command(
        "create_user",
        "ivy",
        "--role",
        "annotator",
        "--password",
        "first-Pass-1",
        stdout=io.StringIO(),
    )
    with pytest.raises(CommandError, match="too short"):
        call_command(
            "create_user", "ivy", "--role", "expert", "--password", "short", stdout=io.StringIO()
        )
    ivy = get_user_model().objects.get(username="ivy")
    assert ivy.check_password("first-Pass-1")
    assert ivy.groups.filter(name="annotator").exists()
    assert not ivy.groups.filter(name="expert").exists()


# --- 6. load_corpus run twice ---------------------------------------------------------------


def test_loading_the_same_file_twice_skips_the_documents_already_there(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text(
        json.dumps({"title": "Rhine", "body": "A river.", "source": "r"})
        + "\n"
        + json.dumps({"title": "Rhine", "body": "A river.", "source": "r"})  # the same again
        + "\n",
        encoding="utf-8",
    )
    first = io.StringIO()
    call_command("load_corpus", str(path), "--name", "rivers", stdout=first)
    assert "Loaded 1 documents" in first.getvalue()
    assert "1 already in the corpus" in first.getvalue()
    second = io.StringIO()
    call_command("load_corpus", str(path), "--name", "rivers", stdout=second)
    assert "Loaded 0 documents" in second.getvalue()
    assert "2 already in the corpus" in second.getvalue()
    assert Document.objects.filter(corpus__name="rivers").count() == 1


def test_a_document_that_differs_in_text_or_source_is_loaded(tmp_path):
    base = {"title": "Rhine", "body": "A river.", "source": "r"}
    call_command(
        "load_corpus",
        str(_jsonl(tmp_path / "a.jsonl", [base])),
        "--name",
        "rivers",
        stdout=io.StringIO(),
    )
    changed = [base | {"body": "A long river."}, base | {"source": "s"}, base]
    call_command(
        "load_corpus",
        str(_jsonl(tmp_path / "b.jsonl", changed)),
        "--name",
        "rivers",
        stdout=io.StringIO(),
    )
    documents = Document.objects.filter(corpus__name="rivers")
    assert sorted(documents.values_list("body", "source")) == [
        ("A long river.", "r"),
        ("A river.", "r"),
        ("A river.", "s"),
    ]


def test_an_identical_document_in_another_corpus_is_loaded(tmp_path):
    path = _jsonl(tmp_path / "a.jsonl", [{"title": "Rhine", "body": "A river."}])
    call_command("load_corpus", str(path), "--name", "one", stdout=io.StringIO())
    call_command("load_corpus", str(path), "--name", "two", stdout=io.StringIO())
    assert Document.objects.count() == 2
