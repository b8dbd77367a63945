#!/usr/bin/env bash
# Runs the platform-neutral tests as Windows programs under Wine: the library's unit tests
# (document, policy, store, error), the document properties, the file store's platform tests
# (locking, the durable write under an open reader, the holder note, the watch), the embedded
# authority, the manager's scenarios against a local HTTP server, and the completions.
#
#   bash scripts/wine-tests.sh
#
# Installs what it needs from Debian (wine, the mingw-w64 linker) and the rustup target, and
# makes the Wine prefix (scripts/wine-prefix.sh, which says why it needs a stand-in DLL). The
# binaries are linked with Debian's x86_64-w64-mingw32-gcc. Prints each binary's libtest
# summary; exits non-zero if any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "wine-tests: $*" >&2; }

TARGET=x86_64-pc-windows-gnu
# Wine, the mingw-w64 linker, the rustup target and a Wine prefix that runs Rust programs.
source scripts/wine-prefix.sh
export RUST_BACKTRACE=0

# The library's unit tests and its test target (document properties, store platform, manager
# scenarios; the Unix-only modules compile out), the embedded authority's unit tests and test
# target, and of the command line's test target only the completions (the rest runs processes
# with Unix signals and modes).
list_executables() {
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])'
}
say "building the Windows test binaries"
cargo test --no-run --target "$TARGET" -p authstore -p authstore-simulator --lib --test it \
    --message-format=json | list_executables | sed 's/$/|/' >target/wine-tests.list
cargo test --no-run --target "$TARGET" -p authstore-cli --features simulator --test it \
    --message-format=json | list_executables | sed 's/$/|completions::/' >>target/wine-tests.list

# Not run under Wine: replacing a file that a reader keeps open. Windows 10 and later do it with
# POSIX rename semantics (std::fs::rename asks for them); Wine 8.0 answers "Access denied" to
# every rename over an open file, so there the test can only fail. The write's retry while a
# reader holds the file for a moment is tested (the_durable_write_outlasts_a_reader_...).
SKIP=(--skip the_durable_write_replaces_a_file_a_reader_holds_open)

status=0
while IFS='|' read -r exe filter; do
    name=$(basename "$exe" .exe)
    say "running $name under $(wine --version)"
    filters=()
    [[ -n $filter ]] && filters=("$filter")
    if ! (cd target && timeout 600 wine "$exe" "${SKIP[@]}" "${filters[@]}") >"target/$name.wine.log" 2>&1; then
        status=1
        say "FAILED: $name (target/$name.wine.log)"
        grep -E "^test .*FAILED|panicked" "target/$name.wine.log" | head -20 >&2 || true
    fi
    grep -E "^test result" "target/$name.wine.log" | sed "s/^/$name: /" || true
done <target/wine-tests.list
exit "$status"
