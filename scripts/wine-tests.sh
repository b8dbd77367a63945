#!/usr/bin/env bash
# Runs the platform-neutral tests as Windows programs under Wine: the library's unit tests
# (document, policy, store, error), the document properties, the file store's platform tests
# (locking, the durable write under an open reader, the holder note, the watch), the embedded
# authority, the manager's scenarios against a local HTTP server, and the completions.
#
#   bash scripts/wine-tests.sh
#
# Installs what it needs from Debian (wine, the mingw-w64 linker) and the rustup target. The
# binaries are linked with Debian's x86_64-w64-mingw32-gcc. Rust's standard library asks
# bcryptprimitives.dll for random bytes (ProcessPrng), which Wine 8.0 lacks: a four-line stand-in
# that calls RtlGenRandom is built here and put in the Wine prefix (test environment only; real
# Windows has the DLL). Prints each binary's libtest summary; exits non-zero if any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "wine-tests: $*" >&2; }

TARGET=x86_64-pc-windows-gnu
if ! command -v wine >/dev/null 2>&1 || ! command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1; then
    say "installing wine and the mingw-w64 linker"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y wine64 gcc-mingw-w64-x86-64 >&2
fi
rustup target add "$TARGET" >&2

export WINEPREFIX="$PWD/target/wine-prefix" WINEDEBUG=-all RUST_BACKTRACE=0
mkdir -p "$WINEPREFIX"
shim_dir="$PWD/target/wine-shim"
mkdir -p "$shim_dir"
cat >"$shim_dir/bcryptprimitives.c" <<'C'
#include <windows.h>
/* RtlGenRandom, exported by advapi32 as SystemFunction036. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x7fffffff ? 0x7fffffff : (ULONG)len;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
C
x86_64-w64-mingw32-gcc -shared -O2 -o "$shim_dir/bcryptprimitives.dll" \
    "$shim_dir/bcryptprimitives.c" -ladvapi32
timeout 120 wineboot --init >/dev/null 2>&1 || true
cp "$shim_dir/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"

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
