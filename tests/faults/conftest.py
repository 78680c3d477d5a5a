"""One throwaway PostgreSQL cluster and Redis for all the fault tests of a run, migrated
once: each test gets a database copied from the migrated template (a second or two, where a
migration takes half a minute on a busy machine) and an emptied Redis."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.faults.servers import Postgres, Redis, app_against, throwaway_postgres, throwaway_redis

TEMPLATE = "arbiter_template"
_numbers = itertools.count(1)


@dataclass
class FaultServers:
    postgres: Postgres
    redis: Redis

    def fresh_database(self) -> str:
        """A migrated database of the test's own; Redis emptied (and running)."""
        if not self.redis.ready():
            self.redis.start()
        self.redis.flush()
        if not self.postgres.ready():
            self.postgres.start()
        return self.postgres.createdb(f"fault_{next(_numbers)}", template=TEMPLATE)


@pytest.fixture(scope="session")
def fault_servers() -> Iterator[FaultServers]:
    with throwaway_postgres() as postgres, throwaway_redis() as redis:
        template_url = postgres.createdb(TEMPLATE)
        with app_against(template_url, redis) as app:
            app.manage("migrate", "--noinput", timeout=600)
        yield FaultServers(postgres, redis)
