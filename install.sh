#!/bin/sh
# Installs the static authstore binary for this machine (Linux x86_64 or aarch64) from a release:
# downloads SHA256SUMS and the machine's tarball, refuses the tarball unless its SHA-256 is the
# one SHA256SUMS lists, then installs the binary into PREFIX/bin and the man page into
# PREFIX/share/man/man1 (PREFIX defaults to ~/.local).
#
#   curl -fsSL BASE_URL/install.sh | sh -s -- [--prefix DIR] [--version VERSION] [--base-url URL]
#   sh install.sh [--prefix DIR] [--version VERSION] [--base-url URL]
#
# BASE_URL (or AUTHSTORE_BASE_URL) is the directory that holds the release's files; the default
# is the latest GitHub release. Without --version the one tarball for this machine that
# SHA256SUMS lists is taken. Nothing is changed unless the checksum matches.
# Exit codes: 0 installed; 1 download, checksum or install failed; 2 usage or unsupported machine.
set -eu

base_url=${AUTHSTORE_BASE_URL:-https://github.com/authstore/authstore/releases/latest/download}
prefix=${HOME:?HOME is not set; give --prefix}/.local
version=

fail() { echo "authstore install: $*" >&2; exit 1; }
usage() { echo "authstore install: $*" >&2; echo "usage: install.sh [--prefix DIR] [--version VERSION] [--base-url URL]" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case $1 in
        --prefix) [ $# -ge 2 ] || usage "--prefix takes a directory"; prefix=$2; shift ;;
        --version) [ $# -ge 2 ] || usage "--version takes a version"; version=$2; shift ;;
        --base-url) [ $# -ge 2 ] || usage "--base-url takes a URL"; base_url=$2; shift ;;
        -h|--help) sed -n '2,13s/^# \{0,1\}//p' "$0" 2>/dev/null || true; exit 0 ;;
        *) usage "unknown argument: $1" ;;
    esac
    shift
done
base_url=${base_url%/}

case $(uname -s) in
    Linux) ;;
    *) echo "authstore install: no prebuilt binary for $(uname -s) here; use Homebrew, npm, pipx or cargo install (see the README)" >&2; exit 2 ;;
esac
case $(uname -m) in
    x86_64|amd64) target=x86_64-unknown-linux-musl ;;
    aarch64|arm64) target=aarch64-unknown-linux-musl ;;
    *) echo "authstore install: no prebuilt binary for $(uname -m); use cargo install (see the README)" >&2; exit 2 ;;
esac

if command -v curl >/dev/null 2>&1; then
    fetch() { curl --proto '=https,http,file' -fsSL -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
    fetch() { wget -q -O "$2" "$1"; }
else
    fail "neither curl nor wget is installed"
fi
if command -v sha256sum >/dev/null 2>&1; then
    sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
    sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
    fail "neither sha256sum nor shasum is installed"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/authstore-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

fetch "$base_url/SHA256SUMS" "$tmp/SHA256SUMS" || fail "cannot download $base_url/SHA256SUMS"
if [ -n "$version" ]; then
    tarball=authstore-$version-$target.tar.gz
else
    tarball=$(sed -n "s/^[0-9a-f]\{64\}  \(authstore-[^ /]*-$target\.tar\.gz\)\$/\1/p" "$tmp/SHA256SUMS")
    [ -n "$tarball" ] || fail "$base_url/SHA256SUMS lists no tarball for $target"
    [ "$(printf '%s\n' "$tarball" | wc -l)" -eq 1 ] || fail "$base_url/SHA256SUMS lists several tarballs for $target; give --version"
fi
expected=$(sed -n "s/^\([0-9a-f]\{64\}\)  $(printf '%s' "$tarball" | sed 's/\./\\./g')\$/\1/p" "$tmp/SHA256SUMS")
[ -n "$expected" ] || fail "$base_url/SHA256SUMS lists no $tarball"

fetch "$base_url/$tarball" "$tmp/$tarball" || fail "cannot download $base_url/$tarball"
actual=$(sha256 "$tmp/$tarball")
if [ "$actual" != "$expected" ]; then
    fail "$tarball does not match SHA256SUMS (expected $expected, got $actual); nothing was installed"
fi

tar -xzf "$tmp/$tarball" -C "$tmp" || fail "cannot unpack $tarball"
dir=$tmp/${tarball%.tar.gz}
[ -f "$dir/authstore" ] || fail "$tarball holds no authstore binary"

bin=$prefix/bin
man=$prefix/share/man/man1
mkdir -p "$bin" "$man" || fail "cannot create $bin"
# Copy beside the destination, then rename: a running authstore keeps its old file, and an
# interrupted install leaves no half-written binary.
cp "$dir/authstore" "$bin/.authstore.install.$$" && chmod 0755 "$bin/.authstore.install.$$" \
    && mv -f "$bin/.authstore.install.$$" "$bin/authstore" \
    || { rm -f "$bin/.authstore.install.$$"; fail "cannot install into $bin"; }
cp "$dir/authstore.1" "$man/authstore.1" 2>/dev/null || true

echo "installed $("$bin/authstore" --version) to $bin/authstore"
case ":$PATH:" in
    *":$bin:"*) ;;
    *) echo "note: $bin is not on your PATH; add it, e.g. export PATH=\"$bin:\$PATH\"" ;;
esac
