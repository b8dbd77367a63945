# Shared by scripts/codex-interop.sh and scripts/editor-race-demo.sh (source it; it defines
# functions and variables, and exits on a missing prerequisite):
#
#   SCRIPT_NAME=...; . scripts/codex-env.sh
#   codex_install          # @openai/codex@$CODEX_VERSION from npm into target/, once; sets codex_bin
#   in_namespace SECS CMD  # runs CMD (bounded) in a new network namespace that has nothing but
#                          # loopback, and a new PID namespace, so that nothing outlives it
#
# Needs root (unshare), npm, util-linux `unshare`, iproute2 `ip`, coreutils `timeout`, cargo.

CODEX_VERSION=0.171.0
INSTALL_TIMEOUT=${CODEX_INTEROP_INSTALL_TIMEOUT:-600}

say() { echo "$SCRIPT_NAME: $*" >&2; }
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

# Only inside a loopback-only namespace, like every other Codex run.
in_namespace() {
  timeout -k 5 "$1" unshare --net --pid --fork --kill-child --mount-proc \
    bash -c 'ip link set lo up || { echo "$0: cannot bring up lo" >&2; exit 97; }; exec "$@"' \
    "$SCRIPT_NAME" "${@:2}"
}

# Installs Codex unless it is there, then checks its version (in the namespace too).
codex_install() {
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
  # A scratch home, so that nothing is written into the real ~/.codex.
  local scratch=$prefix/scratch-home version
  mkdir -p "$scratch"
  version=$(HOME=$scratch CODEX_HOME=$scratch in_namespace 30 "$codex_bin" --version) ||
    die "$codex_bin --version failed (remove $prefix to reinstall)"
  [ "$version" = "codex-cli $CODEX_VERSION" ] ||
    die "expected codex-cli $CODEX_VERSION, found '$version' (remove $prefix to reinstall)"
  say "$version at $codex_bin"
}
