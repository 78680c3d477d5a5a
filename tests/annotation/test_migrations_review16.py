"""Review 16: migrations on a populated installation.

* 0018 builds its indexes without stopping writes on PostgreSQL (CONCURRENTLY): before, it
  held a lock that stopped every pair insert from the first index to its commit, and while
  a read transaction was open (an export), the last step held everyone behind it.
* 0018 runs again after a kill: an index already built is kept.
* 0017 goes back after a member was removed (their history cannot live in the old schema).
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor

from annotation.models import Campaign, MemberTransition
from annotation.services.members import member_add, member_remove
from tests.conftest import wait_for_a_lock_waiter
from tests.factories import CampaignFactory, PairFactory, UserFactory

BEFORE_0018 = [("annotation", "0017_member_transition_outlives_member")]
AT_0018 = [("annotation", "0018_scale_partial_indexes")]
BEFORE_0017 = [("annotation", "0016_round_chosen_by_version")]

postgresql_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="locks and CONCURRENTLY"
)


def _migrate(target, using=connection) -> None:
    executor = MigrationExecutor(using)
    executor.loader.build_graph()
    executor.migrate(target)


@pytest.fixture
def back_to_leaf():
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def _index_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        return name in {
            index
            for table in ("annotation_pair", "annotation_label")
            for index in connection.introspection.get_constraints(cursor, table)
        }


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_0018_lets_pairs_be_written_while_it_waits_for_an_open_read(back_to_leaf):
    _errors.clear()
    campaign = CampaignFactory()
    PairFactory.create_batch(5, campaign=campaign)
    _migrate(BEFORE_0018)
    reader = connections.create_connection("default")
    migrating = threading.Thread(target=lambda: _migrate_in_thread(AT_0018))
    try:
        # An export's read, open when the upgrade starts.
        reader.set_autocommit(False)
        with reader.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM annotation_pair")
        migrating.start()
        wait_for_a_lock_waiter()  # the migration waits for the open read
        writer = connections.create_connection("default")
        try:
            with writer.cursor() as cursor:
                cursor.execute("SET lock_timeout = '3s'")
                # A label's counter, a slot taken: any write to a pair.
                cursor.execute("UPDATE annotation_pair SET priority = priority + 1")
                assert cursor.rowcount == 5
        finally:
            writer.close()
    finally:
        reader.rollback()
        reader.close()
        migrating.join(timeout=60)
    assert not migrating.is_alive()
    assert _errors == []
    assert _index_exists("pair_gold") and not _index_exists("pair_campaign_status")


_errors: list[BaseException] = []


def _migrate_in_thread(target) -> None:
    try:
        _migrate(target, using=connections["default"])
    except BaseException as error:  # reported by the test
        _errors.append(error)
    finally:
        connections.close_all()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_0018_runs_again_after_a_kill_keeping_what_it_built(back_to_leaf):
    _migrate(BEFORE_0018)
    # A run killed after its first index: the index is there, the migration not recorded.
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX pair_gold ON annotation_pair (campaign_id, id) WHERE is_gold")
    _migrate(AT_0018)
    assert _index_exists("pair_gold") and _index_exists("label_set_aside")
    assert not _index_exists("pair_campaign_status")


@pytest.mark.smoke  # on SQLite too: 0018's indexes go back the plain way there
@pytest.mark.django_db(transaction=True)
def test_0017_goes_back_after_a_member_was_removed(back_to_leaf):
    campaign = Campaign.objects.create(name="upgrade")
    kept, gone = UserFactory(), UserFactory()
    member_add(campaign=campaign, user=kept)
    member_add(campaign=campaign, user=gone)
    member_remove(campaign=campaign, user_id=gone.pk)
    assert MemberTransition.objects.filter(member__isnull=True).exists()
    kept_rows = MemberTransition.objects.filter(member__isnull=False).count()
    _migrate(BEFORE_0017)  # before: IntegrityError, member_id contains null values
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM annotation_membertransition")
        assert cursor.fetchone()[0] == kept_rows


@pytest.mark.django_db
def test_the_previous_release_can_still_create_import_jobs():
    """Code of the state before 0019 (still serving while `migrate` runs) names neither gold
    counter; before, its insert failed on the NOT NULL column."""
    state = MigrationExecutor(connection).loader.project_state(
        ("annotation", "0018_scale_partial_indexes")
    )
    OldImportJob = state.apps.get_model("annotation", "ImportJob")
    old_campaign = state.apps.get_model("annotation", "Campaign").objects.get(
        pk=CampaignFactory().pk
    )
    job = OldImportJob.objects.create(
        campaign=old_campaign, file="imports/pairs.jsonl", original_name="pairs.jsonl"
    )
    from annotation.models import ImportJob

    current = ImportJob.objects.get(pk=job.pk)
    assert (current.made_gold_count, current.busy_gold_count) == (0, 0)
