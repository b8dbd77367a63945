#!/usr/bin/env bash
# The editor race, and the cure, with the real Codex CLI: three `codex app-server` processes (one
# per editor window) on one Codex home ask for the token (`getAuthStatus`) together, round after
# round, over three token lifetimes; once without authstore, once beside `authstore agent`, once
# with `authstore broker` as Codex's token endpoint (CODEX_REFRESH_TOKEN_URL_OVERRIDE). The token
# authority is the one embedded in authstore, which revokes the login when a spent refresh
# token comes back. Prints a table.
#
#   sudo bash scripts/editor-race-demo.sh
#
# It runs the three editor tests of crates/authstore-cli/tests/codex_interop two at a time (about 50 s), after
# installing @openai/codex@0.171.0 from npm into target/ and building them, inside a network
# namespace that has nothing but loopback: Codex reaches nothing but that local authority.
# Needs what scripts/codex-interop.sh needs (root, npm, unshare, ip, timeout, cargo).
# Exits non-zero when a scenario did not show what it should.
set -euo pipefail
cd "$(dirname "$0")/.."

SCRIPT_NAME=editor-race-demo
. scripts/codex-env.sh
BUILD_TIMEOUT=${CODEX_INTEROP_BUILD_TIMEOUT:-1800}
RUN_TIMEOUT=${CODEX_INTEROP_RUN_TIMEOUT:-300}

codex_install
say "building"
timeout -k 10 "$BUILD_TIMEOUT" cargo test -p authstore-cli --features codex-interop --test codex_interop --no-run \
  2>/dev/null || die "the build failed: run 'cargo test -p authstore-cli --features codex-interop --test codex_interop --no-run'"

say "running 3 app-servers without authstore, 3 beside the agent and 3 through the broker (about 50 s)"
output=$(mktemp)
trap 'rm -f "$output"' EXIT
rc=0
CODEX_BIN=$codex_bin in_namespace "$RUN_TIMEOUT" \
  cargo test --offline -p authstore-cli --features codex-interop --test codex_interop -- \
  --test-threads=2 --nocapture editors:: >"$output" 2>&1 || rc=$?

# Rows: editor-race-row <label> <codex calls> <reused> <answered> <failed> <relogin> <authority calls>
rows=$(grep -a '^editor-race-row' "$output" || true)
column() { printf '%s\n' "$rows" | awk -F'\t' -v label="$1" -v field="$2" '$2 == label { print $field }'; }
if [ -n "$rows" ]; then
  echo
  printf '%-40s %-15s %-15s %-15s\n' "3 editor app-servers, 3 token lifetimes" "without agent" "with agent" \
    "Codex with the broker"
  row() {
    printf '%-40s %-15s %-15s %-15s\n' "$1" "$(column 'without agent' "$2")" "$(column 'with agent' "$2")" \
      "$(column 'with broker' "$2")"
  }
  row "authority calls by Codex itself" 3
  row "authority calls (all)" 8
  row "refresh_token_reused" 4
  row "editor requests answered with a token" 5
  row "editor requests failed" 6
  row "re-login needed" 7
  echo
fi
case $rc in
  0) say "all three scenarios showed what they should" ;;
  124 | 137) cat "$output" >&2; die "the demo did not finish within ${RUN_TIMEOUT} s: killed" ;;
  *) cat "$output" >&2; die "a scenario did not show what it should (exit $rc); its output is above" ;;
esac
