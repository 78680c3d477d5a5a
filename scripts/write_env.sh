#!/usr/bin/env bash
# `make run`'s local .env: a random SECRET_KEY and DEBUG=true, readable by its owner only.
# Usage: scripts/write_env.sh PYTHON [PATH]   (PATH defaults to .env; an existing file is kept)
set -euo pipefail
py=$1
target=${2:-.env}
if [ -f "$target" ]; then
  exit 0
fi
key=$("$py" -c "import secrets; print(secrets.token_urlsafe(50))")
# umask before the file exists: it is never readable by others, not even for a moment.
(umask 077 && printf 'SECRET_KEY=%s\nDEBUG=true\n' "$key" > "$target")
echo "wrote $target with a random SECRET_KEY and DEBUG=true (local use only, mode 600)"
