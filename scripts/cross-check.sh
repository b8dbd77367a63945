#!/usr/bin/env bash
# Checks and lints authstore for every platform Codex runs on, from this Linux machine:
#
#   macOS (aarch64, x86_64), Windows (x86_64, GNU ABI), static Linux (x86_64 and aarch64 musl):
#     cargo clippy --all-targets --all-features -- -D warnings, per target;
#   the MSRV declared in Cargo.toml (rust-version): cargo check of the library and the binary.
#
#   bash scripts/cross-check.sh [TARGET...]     (default: all of the above)
#
# Installs what it needs: the rustup targets, the MSRV toolchain (minimal profile, with clippy
# not needed), and zig from the Python package index (`ziglang`) as the C compiler for ring's C
# code on the foreign targets. Checking needs no SDK and no linker: nothing is linked. The zig
# wrapper drops the flags the `cc` crate adds for Apple targets (--target=, -arch,
# -mmacosx-version-min=), which zig spells its own way.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "cross-check: $*" >&2; }

ALL_TARGETS=(aarch64-apple-darwin x86_64-apple-darwin x86_64-pc-windows-gnu
             x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi
MSRV=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)

rustup target add "${TARGETS[@]}" >&2
if ! python3 -c 'import ziglang' 2>/dev/null; then
    say "installing zig (PyPI package ziglang)"
    python3 -m pip install --quiet ziglang
fi

wrappers="$PWD/target/cross/bin"
mkdir -p "$wrappers"
printf '#!/usr/bin/env bash\nexec python3 -m ziglang ar "$@"\n' >"$wrappers/ar"
chmod +x "$wrappers/ar"
zig_target() {
    case "$1" in
        aarch64-apple-darwin) echo aarch64-macos ;;
        x86_64-apple-darwin) echo x86_64-macos ;;
        x86_64-pc-windows-gnu) echo x86_64-windows-gnu ;;
        x86_64-unknown-linux-musl) echo x86_64-linux-musl ;;
        aarch64-unknown-linux-musl) echo aarch64-linux-musl ;;
        *) return 1 ;;
    esac
}
make_wrapper() { # make_wrapper TRIPLE -> path of a `cc` for it
    local triple=$1 zt path
    zt=$(zig_target "$triple")
    path="$wrappers/cc-$triple"
    cat >"$path" <<WRAPPER
#!/usr/bin/env bash
# zig cc for $zt; drops the flags the cc crate adds that zig does not take.
args=()
skip=0
for a in "\$@"; do
    if [ \$skip = 1 ]; then skip=0; continue; fi
    case "\$a" in
        --target=*|-mmacosx-version-min=*|-mios-version-min=*) ;;
        -arch) skip=1 ;;
        *) args+=("\$a") ;;
    esac
done
exec python3 -m ziglang cc -target $zt "\${args[@]}"
WRAPPER
    chmod +x "$path"
    echo "$path"
}

status=0
for triple in "${TARGETS[@]}"; do
    cc=$(make_wrapper "$triple")
    var="CC_${triple//-/_}"
    say "clippy --all-targets --all-features --target $triple"
    if ! env "$var=$cc" "AR_${triple//-/_}=$wrappers/ar" cargo clippy --quiet --target "$triple" \
        --all-targets --all-features -- -D warnings; then
        say "FAILED: $triple"
        status=1
    fi
done

say "MSRV $MSRV: cargo check --lib --bins --all-features"
rustup toolchain install "$MSRV" --profile minimal >&2
if ! cargo "+$MSRV" check --quiet --lib --bins --all-features; then
    say "FAILED: MSRV $MSRV"
    status=1
fi
[ "$status" = 0 ] && say "all targets clean"
exit "$status"
