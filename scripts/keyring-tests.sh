#!/usr/bin/env bash
# The keyring store's tests against a real Secret Service: gnome-keyring in a private D-Bus
# session, with HOME on a scratch directory so that its keyring files stay there, the login
# collection created and unlocked with a known password. Installs Debian's dbus, gnome-keyring
# and libsecret-tools when missing. Runs the command line's `keyring::` tests (real processes of
# the real binary against the embedded token authority), and its `secrets_file::` tests (Codex's
# encrypted secrets file, its passphrase in the keyring), with AUTHSTORE_KEYRING_TESTS=1, so that
# a Secret Service that does not answer fails them instead of skipping them.
#
#   bash scripts/keyring-tests.sh            # build and run (extra arguments go to the test binary)
#   bash scripts/keyring-tests.sh --bench [--quick]  # the agent_idle benchmark, keyring rows included
#   bash scripts/keyring-tests.sh --inner …  # (internal) the part inside dbus-run-session
#
# AUTHSTORE_CI_FEATURES (e.g. failpoints,postgres) builds the tests as the README's test command
# does, so that a CI run right after `cargo test --features failpoints,postgres` reuses that
# build (scripts/test-binary.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

password=authstore-test

if [[ "${1:-}" == "--inner" || "${1:-}" == "--inner-bench" ]]; then
  # Inside dbus-run-session: gnome-keyring serves this session's bus.
  . scripts/secret-service.sh
  start_secret_service "$password"
  if [[ "$1" == "--inner-bench" ]]; then
    export AUTHSTORE_BENCH_KEYRING=1
    exec cargo bench -p authstore-cli --bench agent_idle -- "${@:2}"
  fi
  export AUTHSTORE_KEYRING_TESTS=1
  # The Secret Service tests take turns among themselves; the rest of the module is quick.
  cd crates/authstore-cli
  exec "$AUTHSTORE_KEYRING_TEST_BINARY" "${@:2}"
fi

missing=()
command -v dbus-run-session >/dev/null 2>&1 || missing+=(dbus)
command -v gnome-keyring-daemon >/dev/null 2>&1 || missing+=(gnome-keyring)
command -v secret-tool >/dev/null 2>&1 || missing+=(libsecret-tools)
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Build first, outside the session, so that the session's time is the tests'.
if [[ "${1:-}" == "--bench" ]]; then
  cargo bench -p authstore-cli --bench agent_idle --no-run
else
  . scripts/test-binary.sh
  AUTHSTORE_KEYRING_TEST_BINARY=$(test_binary it)
  export AUTHSTORE_KEYRING_TEST_BINARY
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# One D-Bus session with its own gnome-keyring per run: HOME and the runtime directory on the
# scratch directory, so that the keyring files and the daemon's sockets stay there; Cargo and
# rustup keep their own homes.
session() {
  local name=$1
  shift
  mkdir -p "$scratch/$name/home" "$scratch/$name/runtime"
  chmod 700 "$scratch/$name/runtime"
  local inner=--inner
  if [[ "$name" == bench ]]; then
    inner=--inner-bench
  fi
  env CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" \
    HOME="$scratch/$name/home" XDG_RUNTIME_DIR="$scratch/$name/runtime" \
    XDG_DATA_HOME="$scratch/$name/home/.local/share" \
    dbus-run-session -- bash "$0" "$inner" "$@"
}

if [[ "${1:-}" == "--bench" ]]; then
  session bench "${@:2}"
  exit
fi

# Every keyring and secrets-file test but the one that locks the login collection; then that
# one, alone, in a session of its own (the collection stays locked after it).
session main keyring:: secrets_file:: --skip a_locked_collection "$@"
AUTHSTORE_KEYRING_LOCK_TEST=1 session locked keyring::a_locked_collection "$@"
