#!/usr/bin/env bash
# The whole suite (`make test` sets the machine up first with scripts/setup_system.sh): on PostgreSQL + Redis with real Celery workers, then a smoke subset on the
# embedded default (SQLite + file-system broker) so that `make run` keeps working.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p var
export ARBITER_ENV_FILE=/dev/null
export SECRET_KEY="test-only-secret-key-not-for-production-use-0123456789abcdef"
export DEBUG=false SECURE_SSL_REDIRECT=false SESSION_COOKIE_SECURE=false CSRF_COOKIE_SECURE=false
export STATIC_MANIFEST=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export ARBITER_VAR_DIR="$PWD/var/test"
# Redis databases 12 to 15 and a database name of their own keep tests away from `make run`
# data. The main suite runs in TEST_WORKERS pytest-xdist processes (default 2, one per core of
# the CI machine); tests/xdist_isolation.py gives worker K the broker and cache databases below
# plus 2K (12/13 and 14/15), a var directory var/test/gwK and, through pytest-django, the test
# database test_arbiter_gwK.
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/arbiter}"
export CELERY_BROKER_URL="${TEST_BROKER_URL:-redis://127.0.0.1:6379/12}"
export CACHE_URL="${TEST_CACHE_URL:-redis://127.0.0.1:6379/13}"
TEST_WORKERS="${TEST_WORKERS:-2}"
export ARBITER_CHROMIUM="${ARBITER_CHROMIUM:-/usr/bin/chromium}"
# Browser tests fail (rather than skip) when that Chromium is missing.
export ARBITER_CHROMIUM_REQUIRED=1
# Sandbox tests fail (rather than skip) when bubblewrap or user namespaces are missing.
export ARBITER_SANDBOX_REQUIRED=1
"$PY" -m annotation.tools.preflight

echo "== lint (ruff, import-linter)"
.venv/bin/ruff check .
.venv/bin/lint-imports
echo "== types (mypy with django-stubs and djangorestframework-stubs; see [tool.mypy])"
.venv/bin/mypy
echo "== main suite on PostgreSQL ($TEST_WORKERS pytest-xdist workers)"
# In both passes exit status 5 (no test selected: the arguments name files of the other pass)
# is not a failure.
# --dist loadfile: tests/conftest.py's scheduler hands each file (and all of tests/faults/ as
# one) to one worker, the files with a `slow` test first (hence --no-loadscope-reorder, which
# would sort them by test count instead).
"$PY" -m pytest -p tests.xdist_isolation -n "$TEST_WORKERS" --dist loadfile --no-loadscope-reorder -m "not alone" "$@" || [ $? -eq 5 ]
echo "== tests marked alone, one at a time (timed sandbox runs)"
"$PY" -m pytest -m alone "$@" || [ $? -eq 5 ]
echo "== smoke suite on the embedded default (SQLite, file-system broker)"
rm -rf var/test-smoke
env -u DATABASE_URL -u CELERY_BROKER_URL -u CACHE_URL \
  ARBITER_VAR_DIR="$PWD/var/test-smoke" TEST_DATABASE_NAME="$PWD/var/test-smoke/test.sqlite3" \
  "$PY" -m pytest -m smoke -q "$@"
