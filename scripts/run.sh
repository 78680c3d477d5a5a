#!/usr/bin/env bash
# `make run`: the app on the embedded default (SQLite, file-system broker) with a demo
# campaign, a web server and a real Celery worker. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
scripts/write_env.sh "$PY" .env
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PORT="${PORT:-8000}"
"$PY" manage.py migrate --noinput
"$PY" manage.py seed_demo
mkdir -p var
"$PY" -m celery -A config worker -B -s var/celerybeat-schedule -Q default,sandbox,gpu -c 2 -l INFO > var/worker.log 2>&1 &
worker=$!
trap 'kill $worker 2>/dev/null || true; wait $worker 2>/dev/null || true' EXIT INT TERM
echo
echo "Arbiter is running at http://127.0.0.1:${PORT}/  (worker log: var/worker.log; Ctrl-C stops)"
echo
"$PY" manage.py runserver "127.0.0.1:${PORT}" --noreload
