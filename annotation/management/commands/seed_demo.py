from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.demo_data import DEMO_CORPUS_NAME, demo_corpus_documents, generate_demo_pairs
from annotation.models import CampaignMember, Scale
from annotation.roles import Role
from annotation.services.corpus import DocumentInput, corpus_load
from annotation.services.imports import campaign_get_or_create, pairs_import
from annotation.services.members import member_add
from annotation.services.users import user_create

DEMO_CAMPAIGN = "Demo: checkable answers"
DEMO_GUIDELINES = """\
Compare the two responses to the conversation and choose the better one.

* **Correctness first.** Every pair here has one response that is right and one that is
  subtly wrong: check the arithmetic, the fact, or run the code with the tools panel.
* Use *much better* only when the difference matters to a user.
* Flag a pair as **cannot judge** rather than guessing.
"""
DEMO_USERS = (
    ("annotator1", Role.ANNOTATOR),
    ("annotator2", Role.ANNOTATOR),
    ("annotator3", Role.ANNOTATOR),
    ("expert1", Role.EXPERT),
    ("admin", Role.ADMIN),
)


# The demo builds its pairs in memory before writing them out (about 650 bytes and 0.13 ms
# each): 10,000 of a kind, twenty rounds of the default 500, is far more than a demo needs and
# still takes a second or two; a real data set goes in with import_pairs, which streams.
MAX_DEMO_PAIRS = 10_000


def _demo_count(value: object) -> int:
    """A count of demo pairs: a whole number from 0 to MAX_DEMO_PAIRS (argparse's type, and
    the check of a count passed to call_command as a keyword, which argparse never sees)."""
    try:
        count = int(str(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"{count} is negative: give 0 or more")
    if count > MAX_DEMO_PAIRS:
        raise argparse.ArgumentTypeError(
            f"{count:,} is too many: at most {MAX_DEMO_PAIRS:,} (use import_pairs for more)"
        )
    return count


def _write_jsonl(rows: list[dict], folder: Path, name: str) -> Path:
    path = folder / name
    with path.open("w") as handle:
        for row in rows:
            row = {key: value for key, value in row.items() if key != "expected_preference"}
            handle.write(json.dumps(row) + "\n")
    return path


class Command(BaseCommand):
    help = (
        "Create the demo campaign (checkable pairs, gold pairs), its fact corpus and demo "
        "users; print logins."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--pairs", type=_demo_count, default=60, help="Pairs to annotate (0 to 10,000)."
        )
        parser.add_argument(
            "--gold", type=_demo_count, default=12, help="Gold pairs (0 to 10,000)."
        )

    def handle(self, *args: object, **options: object) -> None:
        # Checked before anything is created; call_command(pairs=-1) bypasses argparse.
        counts = {}
        for option in ("pairs", "gold"):
            try:
                counts[option] = _demo_count(options[option])
            except argparse.ArgumentTypeError as exc:
                raise CommandError(f"--{option}: {exc}") from None
        n_pairs, n_gold = counts["pairs"], counts["gold"]
        campaign = campaign_get_or_create(
            name=DEMO_CAMPAIGN,
            guidelines=DEMO_GUIDELINES,
            scale=Scale.FIVE_POINT,
            gold_share=0.1,
            # The demo's one expert covers every category: its disputes reach them at once
            # (by default another category's wait an hour for its own experts).
            escalation_domain_wait_minutes=0,
        )
        rows = generate_demo_pairs(n_pairs + n_gold, seed=0)
        with tempfile.TemporaryDirectory() as folder:
            queued = _write_jsonl(rows[:n_pairs], Path(folder), "demo-pairs.jsonl")
            gold = _write_jsonl(rows[n_pairs:], Path(folder), "demo-gold.jsonl")
            pairs = pairs_import(campaign=campaign, path=queued)
            golds = pairs_import(campaign=campaign, path=gold, as_gold=True)
        self.stdout.write(
            f"campaign {campaign.name!r} (id {campaign.pk}): {pairs.created} new pairs, "
            f"{golds.created} new gold pairs ({pairs.duplicates + golds.duplicates} already there)"
        )
        corpus = corpus_load(
            name=DEMO_CORPUS_NAME,
            description="Capitals, chemical symbols and planets: the demo's fact questions.",
            documents=(DocumentInput(**document) for document in demo_corpus_documents()),
            replace=True,
        )
        self.stdout.write(
            f"corpus {corpus.corpus.name!r}: {corpus.created} documents for the search tool"
        )
        self.stdout.write("demo logins (passwords and tokens are new on every run):")
        for username, role in DEMO_USERS:
            user, password, token = user_create(
                username=username, role=role, reset_password=True, new_token=True
            )
            # The demo campaign is members-only, as new campaigns are: its users are members.
            member_add(campaign=campaign, user=user, role=CampaignMember.Role(role.value))
            self.stdout.write(
                f"  {role.value:<9} {username:<11} password: {password}  token: {token}"
            )
