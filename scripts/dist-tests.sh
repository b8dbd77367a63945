#!/usr/bin/env bash
# Tests scripts/dist.sh's artifacts the way their users install them, with no cargo or rustc on
# PATH (except for the sdist, which compiles by design):
#
#   - SHA256SUMS verifies every file; the Homebrew formula names the source tarball's checksum;
#   - every wheel: abi3 (cp39), with the extension and the `authstore` command; the manylinux
#     x86_64 one: `auditwheel show` confirms manylinux_2_17_x86_64, then into a fresh venv, where
#     `authstore --version` names the release and the Python API refreshes a stale login once
#     against the embedded token authority (scripts/dist-tests/python_api.py); the musllinux ones
#     (which auditwheel reads only on a musl system): their extension needs musl's libc alone;
#   - the sdist into a fresh venv, then the Python tests (scripts/python-tests.sh SDIST);
#   - the npm tarballs with `npm install --offline` into a fresh prefix: `npx authstore --version`,
#     then 8 Node processes calling token() on one stale token against the authority, which
#     revokes the family on reuse: one refresh, one token, nothing reused
#     (scripts/dist-tests/npm_token_race.js); then the package's own tests against the installed
#     copy when scripts/npm-tests.sh exists;
#   - the tarball through install.sh from a loopback HTTP server: the good one installs and its
#     binary runs a short `authstore demo`; a tampered one is refused and installs nothing;
#   - the Windows zip's binary prints its version under Wine.
#
#   bash scripts/dist-tests.sh [DIST_DIR]     (default: dist)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dist=$(realpath "${1:-dist}")
say() { echo "dist-tests: $*" >&2; }
failed() { say "FAILED: $*"; exit 1; }

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
work=$(mktemp -d "${TMPDIR:-/tmp}/authstore-dist-tests.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# PATH without the Rust toolchain: every directory that holds cargo, rustc or rustup is dropped.
norust=
IFS=: read -ra entries <<<"$PATH"
for entry in "${entries[@]}"; do
    [ -n "$entry" ] || continue
    if [ -e "$entry/cargo" ] || [ -e "$entry/rustc" ] || [ -e "$entry/rustup" ]; then continue; fi
    norust=${norust:+$norust:}$entry
done
no_rust() { env PATH="$norust" CARGO_HOME=/nonexistent RUSTUP_HOME=/nonexistent "$@"; }
if no_rust sh -c 'command -v cargo || command -v rustc' >/dev/null; then
    failed "cannot hide the Rust toolchain from PATH"
fi

# start_authority BIN HOME: the embedded token authority (family revocation on reuse) with a login
# in HOME whose access token is stale at once (60 s left, the refresh window is 300 s; the tokens
# of its refreshes live an hour); sets $authority to its base URL.
start_authority() {
    local bin=$1 home=$2 log=$work/authority.$RANDOM.log
    mkdir -p "$home"
    no_rust "$bin" --codex-home "$home" authority --port 0 --login --login-access-ttl 60 >"$log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do
        authority=$(sed -n 's/^listening on \(http:[^ ]*\)$/\1/p' "$log")
        if [ -n "$authority" ] && grep -q '^logged in' "$log"; then return; fi
        sleep 0.05
    done
    cat "$log" >&2
    failed "the embedded authority did not start"
}

expect_version() { # expect_version OUTPUT
    [[ $1 == "authstore $version"* ]] || failed "expected 'authstore $version ...', got '$1'"
}

step() { say "$*"; }

# --- checksums ------------------------------------------------------------------------------
step "SHA256SUMS"
(cd "$dist" && sha256sum --quiet -c SHA256SUMS) || failed "a file does not match SHA256SUMS"
listed=$(wc -l <"$dist/SHA256SUMS")
present=$(find "$dist" -type f ! -name SHA256SUMS | wc -l)
[ "$listed" -eq "$present" ] || failed "SHA256SUMS lists $listed files, dist holds $present"
source_tarball=$dist/authstore-$version-source.tar.gz
grep -q "sha256 \"$(sha256sum "$source_tarball" | cut -d' ' -f1)\"" "$dist/authstore.rb" \
    || failed "authstore.rb does not carry the source tarball's checksum"
grep -q "url \".*/authstore-$version-source.tar.gz\"" "$dist/authstore.rb" \
    || failed "authstore.rb does not name the source tarball"

# --- wheels ---------------------------------------------------------------------------------
tools=$work/tools
python3 -m venv "$tools"
"$tools/bin/python" -m pip install --quiet --disable-pip-version-check "auditwheel>=6,<7"
shopt -s nullglob
wheels=("$dist"/python/*.whl)
[ ${#wheels[@]} -gt 0 ] || failed "no wheel in $dist/python"
for wheel in "${wheels[@]}"; do
    name=${wheel##*/}
    [[ $name == authstore-$version-cp39-abi3-* ]] || failed "$name is not an abi3 wheel (cp39) of $version"
    # Listed first: grep -q would end the pipe early, which pipefail takes for a failure.
    listing=$(unzip -l "$wheel")
    grep -qE 'authstore/_native\.(abi3\.so|pyd)$' <<<"$listing" || failed "$name holds no extension"
    grep -q 'entry_points.txt$' <<<"$listing" || failed "$name declares no authstore command"
    tag=${name#authstore-"$version"-cp39-abi3-}
    tag=${tag%.whl}
    case $tag in
        manylinux*x86_64)
            shown=$("$tools/bin/auditwheel" show "$wheel" 2>&1) || failed "auditwheel show $name: $shown"
            grep -q '"manylinux_2_17_x86_64"' <<<"$shown" \
                || { echo "$shown" >&2; failed "auditwheel: $name is not manylinux_2_17_x86_64"; }
            say "$name: auditwheel confirms manylinux_2_17_x86_64"
            ;;
        musllinux*)
            # auditwheel reads a musllinux wheel only on a musl system; here the extension's ELF
            # is read instead: it needs musl's libc alone and no glibc symbol version.
            unzip -q -o "$wheel" 'authstore/_native.abi3.so' -d "$work/musl"
            so=$work/musl/authstore/_native.abi3.so
            needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
            [[ $needed =~ ^(libc\.so|libc\.musl-[a-z0-9_]+\.so\.1)\ ?$ ]] || failed "$name needs $needed"
            if readelf -V "$so" | grep -q GLIBC_; then failed "$name asks for glibc symbol versions"; fi
            say "$name: needs only $needed, no glibc symbol version"
            rm -rf "$work/musl"
            ;;
    esac
    if [[ $tag == manylinux*x86_64 ]]; then
        venv=$work/venv-wheel
        python3 -m venv "$venv"
        no_rust "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index "$wheel"
        expect_version "$(no_rust "$venv/bin/authstore" --version)"
        start_authority "$venv/bin/authstore" "$work/home-wheel"
        (cd "$work" && no_rust "$venv/bin/python" "$root/scripts/dist-tests/python_api.py" "$work/home-wheel" "$authority") \
            || failed "the Python API of $name"
    fi
done

# --- sdist ----------------------------------------------------------------------------------
step "the sdist into a fresh venv, then the Python tests"
sdist=$dist/python/authstore-$version.tar.gz
[ -f "$sdist" ] || failed "no sdist authstore-$version.tar.gz in $dist/python"
bash scripts/python-tests.sh "$sdist"

# --- npm ------------------------------------------------------------------------------------
step "the npm tarballs, installed offline into a fresh prefix"
prefix=$work/npm-prefix
mkdir -p "$prefix"
# The per-platform package for this machine beside the package itself, as a registry would
# serve them; the others are optional and skipped (offline, and another os or cpu).
no_rust npm install --offline --no-audit --no-fund --loglevel=error --prefix "$prefix" \
    "$dist/authstore-linux-x64-$version.tgz" "$dist/authstore-$version.tgz" >&2
package=$prefix/node_modules/authstore
[ -x "$prefix/node_modules/@authstore/linux-x64/bin/authstore" ] || failed "@authstore/linux-x64 carries no binary"
expect_version "$(cd "$prefix" && no_rust npx --offline --no-install authstore --version)"
start_authority "$prefix/node_modules/@authstore/linux-x64/bin/authstore" "$work/home-npm"
CODEX_REFRESH_TOKEN_URL_OVERRIDE=$authority/oauth/token no_rust node \
    scripts/dist-tests/npm_token_race.js "$package" "$work/home-npm" "$authority" 8 \
    || failed "8 Node processes on one stale token"
if [ -f scripts/npm-tests.sh ]; then
    PATH="$norust" bash scripts/npm-tests.sh "$package"
fi

# --- install.sh -----------------------------------------------------------------------------
step "install.sh from a loopback HTTP server"
# serve DIR: a static HTTP server on a free loopback port; sets $served to its URL
serve() {
    local log=$work/http.$RANDOM.log
    python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$1" >"$log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do
        served=$(sed -n 's|^Serving HTTP on 127\.0\.0\.1 port \([0-9]*\).*|http://127.0.0.1:\1|p' "$log")
        [ -n "$served" ] && return
        sleep 0.05
    done
    cat "$log" >&2
    failed "the HTTP server did not start"
}
serve "$dist"
good=$work/install-good
no_rust sh "$dist/install.sh" --prefix "$good" --base-url "$served" || failed "install.sh from $served"
expect_version "$(no_rust "$good/bin/authstore" --version)"
[ -f "$good/share/man/man1/authstore.1" ] || failed "install.sh installed no man page"
no_rust "$good/bin/authstore" --codex-home "$work/home-demo" demo --processes 4 --duration 2 >"$work/demo.log" 2>&1 \
    || { cat "$work/demo.log" >&2; failed "authstore demo from the installed binary"; }
say "install.sh: installed, and the demo ran ($(grep -ci 'reuse' "$work/demo.log") lines on reuse)"

tampered=$work/tampered
cp -r "$dist" "$tampered"
tarball=$(cd "$tampered" && ls authstore-*-x86_64-unknown-linux-musl.tar.gz)
printf 'x' | dd of="$tampered/$tarball" bs=1 seek=4096 conv=notrunc status=none
serve "$tampered"
bad=$work/install-bad
status=0
no_rust sh "$tampered/install.sh" --prefix "$bad" --base-url "$served" 2>"$work/tampered.log" || status=$?
[ "$status" -eq 1 ] || failed "install.sh took a tampered tarball (exit code $status)"
grep -q 'does not match SHA256SUMS' "$work/tampered.log" || failed "install.sh did not say why: $(cat "$work/tampered.log")"
[ ! -e "$bad/bin/authstore" ] || failed "install.sh installed a tampered binary"
say "install.sh: refused the tampered tarball ($(cat "$work/tampered.log"))"

# --- Windows --------------------------------------------------------------------------------
zip=$dist/authstore-$version-x86_64-pc-windows-gnu.zip
if [ -f "$zip" ]; then
    step "the Windows zip under Wine"
    source scripts/wine-prefix.sh
    unzip -q "$zip" -d "$work/windows"
    exe=$work/windows/authstore-$version-x86_64-pc-windows-gnu/authstore.exe
    shown=$(no_rust timeout 120 wine "$exe" --version | tr -d '\r')
    expect_version "$shown"
    say "Windows zip: $shown under $(wine --version)"
else
    say "no Windows zip in $dist (scripts/dist.sh --ci builds none): not tested"
fi
say "all artifacts passed"
