#!/usr/bin/env bash
# The Codex interoperability suite: real Codex CLI processes beside authstore on one CODEX_HOME,
# against the embedded token authority (tests/codex_interop.rs).
#
#   bash scripts/codex-interop.sh [extra libtest args, e.g. a test name filter]
#
# 1. Installs @openai/codex@$CODEX_VERSION from the npm registry into target/codex-$CODEX_VERSION
#    (skipped when already there; the native binary ships inside the npm package).
# 2. Builds the test binary (this step may use the network, for crates).
# 3. Runs it inside ONE new network namespace that has nothing but loopback, and a new PID
#    namespace, so that Codex can reach nothing but the token authority the tests start inside
#    it, and nothing outlives the run. The tests refuse to start Codex anywhere else.
#
# Needs root (unshare), npm, util-linux `unshare`, iproute2 `ip`, coreutils `timeout`.
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

CODEX_VERSION=0.171.0
# Bounds: the npm install, the build, and the whole test run inside the namespace.
INSTALL_TIMEOUT=${CODEX_INTEROP_INSTALL_TIMEOUT:-600}
BUILD_TIMEOUT=${CODEX_INTEROP_BUILD_TIMEOUT:-1800}
RUN_TIMEOUT=${CODEX_INTEROP_RUN_TIMEOUT:-900}

say() { echo "codex-interop: $*" >&2; }
die() { say "$*"; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "missing '$1': $2"; }

need npm "install Node.js (18 or newer) with npm"
need cargo "install Rust (rustup)"
need unshare "install util-linux (apt-get install util-linux)"
need ip "install iproute2 (apt-get install iproute2)"
need timeout "install coreutils"
[ "$(id -u)" = 0 ] || die "must run as root: creating a network namespace needs CAP_SYS_ADMIN"

case "$(uname -m)" in
  x86_64) platform=linux-x64 triple=x86_64-unknown-linux-musl ;;
  aarch64 | arm64) platform=linux-arm64 triple=aarch64-unknown-linux-musl ;;
  *) die "no Codex binary for $(uname -m)" ;;
esac

target_dir=$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir=${target_dir:-$PWD/target}
prefix=$target_dir/codex-$CODEX_VERSION
codex_bin=$prefix/node_modules/@openai/codex-$platform/vendor/$triple/bin/codex

if [ -x "$codex_bin" ]; then
  say "using the installed @openai/codex@$CODEX_VERSION in $prefix"
else
  say "installing @openai/codex@$CODEX_VERSION from the npm registry into $prefix"
  rm -rf "$prefix"
  mkdir -p "$prefix"
  # No --omit=optional: the native binary is an optional dependency of the package.
  timeout -k 10 "$INSTALL_TIMEOUT" npm install --prefix "$prefix" --save-exact --no-audit --no-fund \
    "@openai/codex@$CODEX_VERSION" >&2 || die "npm install @openai/codex@$CODEX_VERSION failed"
  [ -x "$codex_bin" ] || die "npm installed no Codex binary at $codex_bin"
fi

# Only inside a loopback-only namespace, like every other Codex run.
in_namespace() {
  timeout -k 5 "$1" unshare --net --pid --fork --kill-child --mount-proc \
    bash -c 'ip link set lo up || { echo "codex-interop: cannot bring up lo" >&2; exit 97; }; exec "$@"' \
    codex-interop "${@:2}"
}
# A scratch home, so that nothing is written into the real ~/.codex.
scratch=$prefix/scratch-home
mkdir -p "$scratch"
version=$(HOME=$scratch CODEX_HOME=$scratch in_namespace 30 "$codex_bin" --version) ||
  die "$codex_bin --version failed (remove $prefix to reinstall)"
[ "$version" = "codex-cli $CODEX_VERSION" ] ||
  die "expected codex-cli $CODEX_VERSION, found '$version' (remove $prefix to reinstall)"
say "$version at $codex_bin"

say "building the interop tests"
timeout -k 10 "$BUILD_TIMEOUT" cargo test --features codex-interop --test codex_interop --no-run

say "running the interop tests in a loopback-only network namespace"
started=$SECONDS
rc=0
CODEX_BIN=$codex_bin in_namespace "$RUN_TIMEOUT" \
  cargo test --offline --features codex-interop --test codex_interop -- --test-threads=1 --nocapture "$@" ||
  rc=$?
case $rc in
  0) say "interop tests passed in $((SECONDS - started)) s" ;;
  124 | 137) die "interop tests did not finish within ${RUN_TIMEOUT} s: killed" ;;
  *) die "interop tests failed (exit $rc) after $((SECONDS - started)) s" ;;
esac
