#!/usr/bin/env bash
# Builds the static Linux binary (x86_64-unknown-linux-musl, no dynamic dependencies, with the
# PostgreSQL store: the binary scripts/dist.sh ships) and runs
# the multi-process CLI tests against it (32 processes on one stale token against an authority
# that revokes the family on reuse, refresh storms, kills, an in-place rewriter; then the
# hardening suite's broken files and failing filesystems).
#
#   bash scripts/static-binary.sh [--profile dev|release]    (default: release)
#
# Installs what it needs: the rustup target and Debian's musl-tools (musl-gcc, the C compiler
# for ring's C code). The binary ends up in target/x86_64-unknown-linux-musl/<profile>/authstore.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "static-binary: $*" >&2; }

profile=release
if [ "${1:-}" = "--profile" ]; then profile=${2:?--profile takes dev or release}; fi
dir=$profile; [ "$profile" = dev ] && dir=debug
TARGET=x86_64-unknown-linux-musl

rustup target add "$TARGET" >&2
if ! command -v musl-gcc >/dev/null 2>&1; then
    say "installing musl-tools"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y musl-tools >&2
fi

say "building authstore for $TARGET ($profile)"
CC_x86_64_unknown_linux_musl=musl-gcc cargo build -p authstore-cli --profile "$profile" --features postgres --target "$TARGET" --bin authstore
bin="$PWD/target/$TARGET/$dir/authstore"

# No dynamic dependencies: no interpreter, no NEEDED entries.
if readelf -d "$bin" 2>/dev/null | grep -q NEEDED || readelf -l "$bin" | grep -q "INTERP"; then
    say "FAILED: $bin has dynamic dependencies"; readelf -d "$bin" >&2; exit 1
fi
say "static, $(du -h "$bin" | cut -f1): $bin"
"$bin" --version >&2

say "the CLI tests against $bin"
. scripts/test-binary.sh
tests=$(test_binary it simulator)
(cd crates/authstore-cli && AUTHSTORE_TEST_BINARY="$bin" "$tests" cli_processes:: hardening::)
