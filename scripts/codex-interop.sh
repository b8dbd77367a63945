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
#
# Needs root (unshare), npm, util-linux `unshare`, iproute2 `ip`, coreutils `timeout`
# (scripts/codex-env.sh checks them).
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

SCRIPT_NAME=codex-interop
# Prerequisites, the Codex install and the namespace (shared with scripts/editor-race-demo.sh).
. scripts/codex-env.sh
# Bounds: the npm install (codex-env.sh), the build, and the whole test run inside the namespace.
BUILD_TIMEOUT=${CODEX_INTEROP_BUILD_TIMEOUT:-1800}
RUN_TIMEOUT=${CODEX_INTEROP_RUN_TIMEOUT:-900}

codex_install

say "building the interop tests"
tests=$(timeout -k 10 "$BUILD_TIMEOUT" bash -c '. scripts/test-binary.sh && test_binary codex_interop codex-interop')

# CI starts its cross-target checks once this file exists (.ci/run).
[ -z "${AUTHSTORE_INTEROP_BUILT:-}" ] || touch "$AUTHSTORE_INTEROP_BUILT"
say "running the interop tests in a loopback-only network namespace"
started=$SECONDS
rc=0
CODEX_BIN=$codex_bin in_namespace "$RUN_TIMEOUT" \
  env -C crates/authstore-cli "$tests" --test-threads=1 --nocapture "$@" ||
  rc=$?
case $rc in
  0) say "interop tests passed in $((SECONDS - started)) s" ;;
  124 | 137) die "interop tests did not finish within ${RUN_TIMEOUT} s: killed" ;;
  *) die "interop tests failed (exit $rc) after $((SECONDS - started)) s" ;;
esac
