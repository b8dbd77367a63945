#!/usr/bin/env bash
# The Codex interoperability suite: real Codex CLI processes beside authstore on one CODEX_HOME,
# against the embedded token authority (crates/authstore-cli/tests/codex_interop).
#
#   bash scripts/codex-interop.sh [extra libtest args, e.g. a test name filter]
#
# 1. Installs @openai/codex@$CODEX_VERSION from the npm registry into target/codex-$CODEX_VERSION
#    (skipped when already there; the native binary ships inside the npm package).
# 2. Builds the test binary (this step may use the network, for crates; scripts/test-binary.sh).
# 3. Runs it inside ONE new network namespace that has nothing but loopback, and a new PID
#    namespace, so that Codex can reach nothing but the token authority the tests start inside
#    it, and nothing outlives the run. The tests refuse to start Codex anywhere else.
#    Inside it, the run happens in a private D-Bus session with gnome-keyring's Secret Service
#    (HOME and XDG_RUNTIME_DIR on a scratch directory, the login collection created and
#    unlocked with a known password), for the tests of Codex's keyring store and its encrypted
#    secrets file (the `keyring::` module, told by CODEX_INTEROP_KEYRING=1 to fail, not skip,
#    when no Secret Service answers). The session is started inside the namespace: a session
#    bus on an abstract socket belongs to its network namespace. Installs Debian's dbus,
#    gnome-keyring and libsecret-tools when missing. CODEX_INTEROP_KEYRING=0 runs without the
#    session (the keyring tests then skip).
#
#   bash scripts/codex-interop.sh --inner CMD…  # (internal) the part inside dbus-run-session
#
# Needs root (unshare), npm, util-linux `unshare`, iproute2 `ip`, coreutils `timeout`
# (scripts/codex-env.sh checks them).
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--inner" ]]; then
  # Inside the namespace and dbus-run-session: gnome-keyring serves this session's bus.
  . scripts/secret-service.sh
  start_secret_service authstore-test
  exec "${@:2}"
fi

SCRIPT_NAME=codex-interop
# Prerequisites, the Codex install and the namespace (shared with scripts/editor-race-demo.sh).
. scripts/codex-env.sh
# Bounds: the npm install (codex-env.sh), the build, and the whole test run inside the namespace.
BUILD_TIMEOUT=${CODEX_INTEROP_BUILD_TIMEOUT:-1800}
RUN_TIMEOUT=${CODEX_INTEROP_RUN_TIMEOUT:-900}

codex_install

keyring=${CODEX_INTEROP_KEYRING:-1}
if [ "$keyring" = 1 ]; then
  missing=()
  command -v dbus-run-session >/dev/null 2>&1 || missing+=(dbus)
  command -v gnome-keyring-daemon >/dev/null 2>&1 || missing+=(gnome-keyring)
  command -v secret-tool >/dev/null 2>&1 || missing+=(libsecret-tools)
  if ((${#missing[@]})); then
    say "installing ${missing[*]} for the keyring tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

say "building the interop tests"
test_bin=$(timeout -k 10 "$BUILD_TIMEOUT" bash -c '. scripts/test-binary.sh && test_binary codex_interop codex-interop')

# cargo runs a test binary in its package's directory.
tests=(env -C crates/authstore-cli "$test_bin" --test-threads=1 --nocapture "$@")
session=()
if [ "$keyring" = 1 ]; then
  # The Secret Service's files and sockets on a scratch directory; Cargo and rustup keep their
  # own homes.
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch/home" "$scratch/runtime"
  chmod 700 "$scratch/runtime"
  session=(env CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
    HOME="$scratch/home" XDG_RUNTIME_DIR="$scratch/runtime" XDG_DATA_HOME="$scratch/home/.local/share"
    CODEX_INTEROP_KEYRING=1 dbus-run-session -- bash "$0" --inner)
  say "running the interop tests in a loopback-only network namespace, with a Secret Service"
else
  say "running the interop tests in a loopback-only network namespace, without a Secret Service"
fi
# CI starts its cross-target checks once this file exists (.ci/run).
[ -z "${AUTHSTORE_INTEROP_BUILT:-}" ] || touch "$AUTHSTORE_INTEROP_BUILT"
started=$SECONDS
rc=0
CODEX_BIN=$codex_bin in_namespace "$RUN_TIMEOUT" "${session[@]}" "${tests[@]}" || rc=$?
case $rc in
  0) say "interop tests passed in $((SECONDS - started)) s" ;;
  124 | 137) die "interop tests did not finish within ${RUN_TIMEOUT} s: killed" ;;
  *) die "interop tests failed (exit $rc) after $((SECONDS - started)) s" ;;
esac
