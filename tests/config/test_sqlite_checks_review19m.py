"""`make run` on the embedded default (SQLite) starts without a warning: its `migrate` printed
"WARNINGS: annotation.Label: (models.W040) SQLite does not support indexes with non-key
columns" on every start, for a covering index that only PostgreSQL's hot path uses."""

from __future__ import annotations

import secrets

from tests.config.test_settings import run_manage


def test_the_embedded_database_passes_the_database_checks_without_a_warning(tmp_path):
    result = run_manage(
        "check",
        "--database",
        "default",
        env={
            # What `make run` writes to .env (scripts/write_env.sh).
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DEBUG": "true",
            "DATABASE_URL": "",
            "ARBITER_VAR_DIR": str(tmp_path),
            "ARBITER_SQLITE_PATH": str(tmp_path / "arbiter.sqlite3"),
        },
    )
    assert result.returncode == 0, result.stderr
    assert "W040" not in result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
