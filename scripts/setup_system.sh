#!/usr/bin/env bash
# Everything `make test` needs from the machine, in one place (`make test` and `.ci/run` call it):
#   1. the system packages: PostgreSQL, Redis, bubblewrap, Chromium, Node.js, g++, Python venv;
#   2. loopback trust on a PostgreSQL this script installed (the tests connect as postgres over
#      127.0.0.1 without a password);
#   3. PostgreSQL and Redis running on 127.0.0.1:5432 and :6379.
# As root it installs what is missing with apt-get and starts what is stopped. Without root it
# installs nothing and prints the exact commands to run, then exits 1.
#
#   scripts/setup_system.sh           set up (as root) or say what to run (otherwise)
#   scripts/setup_system.sh --check   change nothing: report what is missing and the commands
#                                     that would fix it; exit 0 only when nothing is missing
set -euo pipefail

mode=apply
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3 || true)}

# command that proves a package is there -> Debian package that provides it
missing=()
have() { command -v "$1" >/dev/null 2>&1; }
have pg_ctlcluster || missing+=(postgresql)
have redis-server || missing+=(redis-server)
have bwrap || missing+=(bubblewrap)
have chromium || missing+=(chromium)
have node || missing+=(nodejs)
have g++ || missing+=(g++)
have prlimit || missing+=(util-linux)
if [ -z "$PYTHON" ]; then
  missing+=(python3 python3-venv)
elif ! "$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1 && [ ! -x .venv/bin/python ]; then
  missing+=(python3-venv)
fi

is_root() { [ "$(id -u)" -eq 0 ]; }
install_cmd="apt-get update && apt-get install -y ${missing[*]:-}"
# Servers named by TEST_DATABASE_URL / TEST_BROKER_URL are someone else's to run.
pg_ready() {
  [ -n "${TEST_DATABASE_URL:-}" ] || { have pg_isready && pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
}
redis_ready() {
  [ -n "${TEST_BROKER_URL:-}" ] || { have redis-cli && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }
}
pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n1; }

if [ "$mode" = check ]; then
  status=0
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing packages: ${missing[*]}"
    echo "to install them, as root: $install_cmd"
    status=1
  else
    echo "packages: all present"
  fi
  if pg_ready; then echo "PostgreSQL: running on 127.0.0.1:5432"; else
    echo "PostgreSQL: not running on 127.0.0.1:5432 (as root: pg_ctlcluster <version> main start)"
    status=1
  fi
  if redis_ready; then echo "Redis: running on 127.0.0.1:6379"; else
    echo "Redis: not running on 127.0.0.1:6379 (as root: redis-server --daemonize yes --bind 127.0.0.1 --port 6379)"
    status=1
  fi
  exit $status
fi

installed_postgresql=no
if [ ${#missing[@]} -gt 0 ]; then
  if ! is_root || ! have apt-get; then
    echo "The test suite needs these system packages: ${missing[*]}" >&2
    echo "Run, as root on Debian/Ubuntu:  $install_cmd" >&2
    echo "then run 'make test' again." >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  [[ " ${missing[*]} " == *" postgresql "* ]] && installed_postgresql=yes
fi

# A PostgreSQL freshly installed from apt asks loopback clients for a password; trust loopback
# on such a machine only (a cluster someone configured before is left as it is).
if [ "$installed_postgresql" = yes ]; then
  version=$(pg_version)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
fi

if ! pg_ready; then
  if is_root && have pg_ctlcluster && [ -n "$(pg_version)" ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" main start || true
    for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
  fi
fi
if ! redis_ready; then
  if have redis-server; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp --logfile /tmp/arbiter-redis.log || true
    for _ in $(seq 1 30); do redis_ready && break; sleep 1; done
  fi
fi
pg_ready || {
  echo "PostgreSQL is not reachable on 127.0.0.1:5432." >&2
  echo "Run, as root:  pg_ctlcluster $(pg_version || echo '<version>') main start" >&2
  echo "(or set TEST_DATABASE_URL to a server that is running)" >&2
  exit 1
}
redis_ready || {
  echo "Redis is not reachable on 127.0.0.1:6379." >&2
  echo "Run:  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''" >&2
  exit 1
}
