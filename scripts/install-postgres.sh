#!/usr/bin/env bash
# Installs the PostgreSQL server package (Debian's `postgresql`) when no server programs are
# found, for the PostgreSQL tests. .ci/run runs it before the tests; the tests' cluster helper
# (crates/authstore-testkit/src/postgres.rs) runs it only when a newcomer's first `cargo test`
# finds no server. Concurrent runs take turns through flock(1).
set -euo pipefail
exec 9>/tmp/authstore-postgresql-install.lock
flock 9
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
