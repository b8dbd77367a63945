#!/usr/bin/env bash
# Builds the release artifacts this machine can build into dist/, all with the workspace's version:
#
#   authstore-VERSION-x86_64-unknown-linux-musl.tar.gz    static binaries (musl), with the
#   authstore-VERSION-aarch64-unknown-linux-musl.tar.gz   completions, the man page, the licences
#   authstore-VERSION-x86_64-pc-windows-gnu.zip           and a short README
#   authstore-VERSION-py3-none-*.whl                      abi3 wheels (CPython 3.9+): manylinux2014
#                                                         and musllinux_1_2, x86_64 and aarch64;
#                                                         Windows x86_64 (GNU ABI)
#   authstore-VERSION.tar.gz (Python sdist)               dist/python/, beside the wheels
#   authstore-VERSION.tgz, authstore-linux-x64-VERSION.tgz, ...   npm: the package and its
#                                                         per-platform packages, Codex's layout
#   authstore-VERSION-source.tar.gz, authstore.rb         the source and a Homebrew formula for it
#   install.sh, SHA256SUMS                                the installer; checksums of everything
#
#   bash scripts/dist.sh [--ci] [--base-url URL]
#
# --ci builds only the Linux x86_64 artifacts (the static tarball, the manylinux2014 wheel, the
# sdist, the npm package with its linux-x64 package), which CI tests (scripts/dist-tests.sh); the
# others stay covered by scripts/cross-check.sh (clippy per target) and scripts/wine-tests.sh,
# within CI's time.
# --base-url is where the release's files will be downloadable (the Homebrew formula's url; the
# default is the GitHub release of this version).
#
# Not built here, because this machine cannot: macOS binaries and wheels (linking needs Apple's
# SDK, and releases need Apple's signing), and MSVC builds (Windows artifacts use the GNU ABI,
# mingw-w64, which needs no Visual C++ runtime). A release machine with Xcode runs
# `cargo build --release -p authstore-cli --features postgres --target aarch64-apple-darwin`
# (and x86_64-apple-darwin) and `maturin build --release -m bindings/python/Cargo.toml
# --target universal2-apple-darwin`; packaging/README.dist.md says the rest.
#
# Installs what it needs: rustup targets, Debian's musl-tools and mingw-w64, and a tools venv
# (target/dist-tools: ziglang, cargo-zigbuild, maturin) from the Python index. Prints how long
# each artifact took.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
say() { echo "dist: $*" >&2; }

ci=false
base_url=
while [ $# -gt 0 ]; do
    case $1 in
        --ci) ci=true ;;
        --base-url) base_url=${2:?--base-url takes a URL}; shift ;;
        *) echo "usage: scripts/dist.sh [--ci] [--base-url URL]" >&2; exit 2 ;;
    esac
    shift
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || { say "cannot read the workspace version from Cargo.toml"; exit 1; }
base_url=${base_url:-https://github.com/authstore/authstore/releases/download/v$version}
out=$root/dist
stage=$root/target/dist-stage
rm -rf "$out" "$stage"
mkdir -p "$out/python" "$stage"
# Archives list their files in one order, owned by root, dated by the commit: the same tree
# gives the same archive.
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)
# SOURCE_DATE_EPOCH (the wheels' file times) is given to maturin alone: the cc crate counts it in
# the fingerprint of ring's C build, so exported it would rebuild the static binary that
# scripts/static-binary.sh built and tested, and the shipped one would not be that one.

timed() { # timed NAME COMMAND...: runs COMMAND, then says how long NAME took
    local name=$1 started=$SECONDS
    shift
    "$@"
    say "$name: $((SECONDS - started)) s"
}

apt_install() { # apt_install COMMAND PACKAGE...
    command -v "$1" >/dev/null 2>&1 && return
    shift
    say "installing $*"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2
}

tools=$root/target/dist-tools
if [ ! -x "$tools/bin/cargo-zigbuild" ]; then
    say "installing the tools venv ($tools)"
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check \
        "ziglang>=0.13,<0.14" "cargo-zigbuild>=0.19,<0.21" "maturin>=1.5,<2"
fi
export PATH="$tools/bin:$PATH"

# --- static binaries ------------------------------------------------------------------------

# The same build as scripts/static-binary.sh (same target, profile, features and C compiler),
# so that in CI the binary the tests ran against is the one that ships.
build_musl_x86_64() {
    apt_install musl-gcc musl-tools
    rustup target add x86_64-unknown-linux-musl >&2
    CC_x86_64_unknown_linux_musl=musl-gcc cargo build -p authstore-cli --release \
        --features postgres --target x86_64-unknown-linux-musl --bin authstore
}
# aarch64: zig is the C compiler and linker (ring's C and assembly), through cargo-zigbuild.
build_musl_aarch64() {
    rustup target add aarch64-unknown-linux-musl >&2
    cargo zigbuild -p authstore-cli --release --features postgres \
        --target aarch64-unknown-linux-musl --bin authstore
}
build_windows() {
    apt_install x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64
    rustup target add x86_64-pc-windows-gnu >&2
    cargo build -p authstore-cli --release --features postgres \
        --target x86_64-pc-windows-gnu --bin authstore
}

# The host's own binary writes the completions and the man page for every archive (they come
# from the clap definitions, the same on every target).
host_bin=$root/target/x86_64-unknown-linux-musl/release/authstore
docs=$stage/docs
write_docs() {
    mkdir -p "$docs/completions"
    "$host_bin" completions bash >"$docs/completions/authstore.bash"
    "$host_bin" completions zsh >"$docs/completions/_authstore"
    "$host_bin" completions fish >"$docs/completions/authstore.fish"
    "$host_bin" completions powershell >"$docs/completions/_authstore.ps1"
    "$host_bin" man >"$docs/authstore.1"
}

# archive TARGET EXE: stages authstore-VERSION-TARGET/ and packs it (tar.gz, or zip for Windows)
archive() {
    local target=$1 exe=$2 name="authstore-$version-$1"
    local dir=$stage/$name
    mkdir -p "$dir"
    cp "$exe" "$dir/"
    cp -r "$docs/completions" "$docs/authstore.1" "$dir/"
    cp LICENSE-MIT LICENSE-APACHE "$dir/"
    sed -e "s/@VERSION@/$version/g" -e "s/@TARGET@/$target/g" packaging/README.dist.md >"$dir/README.md"
    find "$dir" -exec touch -h -d "@$epoch" {} +
    if [[ $target == *windows* ]]; then
        (cd "$stage" && find "$name" -print | LC_ALL=C sort | zip -q -X -@ "$out/$name.zip")
    else
        tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
            -cf - "$name" | gzip -n -9 >"$out/$name.tar.gz"
    fi
}

timed "static binary x86_64-unknown-linux-musl" build_musl_x86_64
write_docs
archive x86_64-unknown-linux-musl "$host_bin"
if ! $ci; then
    timed "static binary aarch64-unknown-linux-musl" build_musl_aarch64
    archive aarch64-unknown-linux-musl target/aarch64-unknown-linux-musl/release/authstore
fi
if ! $ci; then
    timed "Windows binary x86_64-pc-windows-gnu" build_windows
    archive x86_64-pc-windows-gnu target/x86_64-pc-windows-gnu/release/authstore.exe
fi

# --- Python ---------------------------------------------------------------------------------

maturin_build() { # maturin_build TARGET [MATURIN ARGS...]
    local target=$1
    shift
    rustup target add "$target" >&2
    SOURCE_DATE_EPOCH=$epoch maturin build --release --manifest-path bindings/python/Cargo.toml --target "$target" \
        --out "$out/python" "$@" >&2
}
timed "wheel manylinux2014 x86_64" maturin_build x86_64-unknown-linux-gnu --zig --compatibility manylinux2014
if ! $ci; then
    timed "wheel manylinux2014 aarch64" maturin_build aarch64-unknown-linux-gnu --zig --compatibility manylinux2014
    timed "wheel musllinux_1_2 x86_64" maturin_build x86_64-unknown-linux-musl --zig --compatibility musllinux_1_2
    timed "wheel musllinux_1_2 aarch64" maturin_build aarch64-unknown-linux-musl --zig --compatibility musllinux_1_2
    # pyo3 writes the import library of python3.dll itself (no Python for Windows needed).
    timed "wheel Windows x86_64" maturin_build x86_64-pc-windows-gnu --features pyo3/generate-import-lib
fi
timed "sdist" env SOURCE_DATE_EPOCH="$epoch" maturin sdist --manifest-path bindings/python/Cargo.toml --out "$out/python" >&2

# --- npm ------------------------------------------------------------------------------------

npm_stage=$stage/npm
# npm_platform NAME OS CPU BINARY: the per-platform package @authstore/NAME
npm_platform() {
    local dir=$npm_stage/$1
    mkdir -p "$dir/bin"
    sed -e "s/@PLATFORM@/$1/g" -e "s/@OS@/$2/g" -e "s/@CPU@/$3/g" -e "s/@VERSION@/$version/g" \
        packaging/npm/platform/package.json.in >"$dir/package.json"
    cp "$4" "$dir/bin/"
    cp LICENSE-MIT LICENSE-APACHE "$dir/"
    (cd "$dir" && npm pack --silent --pack-destination "$out" >/dev/null)
}
npm_packages() {
    mkdir -p "$npm_stage"
    cp -r packaging/npm/authstore "$npm_stage/authstore"
    cp LICENSE-MIT LICENSE-APACHE "$npm_stage/authstore/"
    # One version everywhere: the package's and its optional dependencies'.
    node -e '
        const fs = require("fs"), file = process.argv[1], version = process.argv[2];
        const manifest = JSON.parse(fs.readFileSync(file, "utf8"));
        manifest.version = version;
        for (const name of Object.keys(manifest.optionalDependencies)) manifest.optionalDependencies[name] = version;
        fs.writeFileSync(file, JSON.stringify(manifest, null, 2) + "\n");
    ' "$npm_stage/authstore/package.json" "$version"
    (cd "$npm_stage/authstore" && npm pack --silent --pack-destination "$out" >/dev/null)
    npm_platform linux-x64 linux x64 "$host_bin"
    if ! $ci; then
        npm_platform linux-arm64 linux arm64 target/aarch64-unknown-linux-musl/release/authstore
        npm_platform win32-x64 win32 x64 target/x86_64-pc-windows-gnu/release/authstore.exe
    fi
}
timed "npm packages" npm_packages

# --- source, Homebrew, installer, checksums -------------------------------------------------

source_name=authstore-$version-source
git archive --format=tar --prefix="authstore-$version/" HEAD | gzip -n -9 >"$out/$source_name.tar.gz"
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
    say "note: the source tarball holds the last commit; the working tree has uncommitted changes"
fi
source_sha=$(sha256sum "$out/$source_name.tar.gz" | cut -d' ' -f1)
sed -e "s|@VERSION@|$version|g" -e "s|@URL@|$base_url/$source_name.tar.gz|g" \
    -e "s|@SHA256@|$source_sha|g" packaging/homebrew/authstore.rb.in >"$out/authstore.rb"
cp install.sh "$out/install.sh"

(cd "$out" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
say "version $version, $(find "$out" -type f | wc -l) files in $out:"
(cd "$out" && find . -type f -printf '%P\t%s bytes\n' | LC_ALL=C sort) >&2
