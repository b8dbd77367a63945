#!/usr/bin/env bash
# The npm package's tests (packaging/npm/authstore/test, node:test only, not shipped):
#
#   bash scripts/npm-tests.sh               the source package, with AUTHSTORE_BINARY pointing
#                                           at a debug build of the binary made here
#                                           (cargo build -p authstore-cli --features simulator)
#   bash scripts/npm-tests.sh PACKAGE_DIR   an installed copy (e.g. PREFIX/node_modules/authstore)
#                                           with its own bundled per-platform binary; no Rust
#                                           needed
#
# The tests run the embedded token authority through the binary (`authstore authority`) and a
# local resource server, on loopback only. Then, unless NPM_TESTS_TYPES=0, the typings are
# checked with `tsc --strict` (TypeScript and @types/node installed into a temporary directory
# with npm) on test/types.ts, as a TypeScript tool imports the package. Needs node >= 18 (and
# npm for the type check). Fails when a test fails or when none ran.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tests=$root/packaging/npm/authstore/test

if [ $# -gt 1 ]; then
    echo "usage: $0 [PACKAGE_DIR]" >&2
    exit 2
fi
command -v node >/dev/null || { echo "npm-tests: node is not installed" >&2; exit 1; }

if [ $# -eq 1 ]; then
    package=$(cd "$1" && pwd)
    [ -f "$package/package.json" ] || { echo "npm-tests: $package has no package.json" >&2; exit 2; }
    # The installed copy's own binary, as its users get it.
    unset AUTHSTORE_BINARY
else
    package=$root/packaging/npm/authstore
    cargo build --quiet -p authstore-cli --features simulator
    target=$(cargo metadata --format-version 1 --no-deps |
        node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
    export AUTHSTORE_BINARY=$target/debug/authstore
    [ -x "$AUTHSTORE_BINARY" ] || { echo "npm-tests: no binary at $AUTHSTORE_BINARY" >&2; exit 1; }
fi
export AUTHSTORE_PACKAGE_DIR=$package
# Nothing of the caller's Codex setup may leak into the tests.
unset CODEX_HOME CODEX_REFRESH_TOKEN_URL_OVERRIDE CODEX_APP_SERVER_LOGIN_CLIENT_ID AUTHSTORE_LOG
echo "npm-tests: testing $package with $(node --version)" >&2

scratch=$(mktemp -d "${TMPDIR:-/tmp}/authstore-npm-tests.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

status=0
(cd "$scratch" && node --test "$tests"/*.test.js "$tests"/*.test.mjs) | tee "$scratch/tap" || status=$?
if ! grep -Eq '^# pass [1-9]' "$scratch/tap"; then
    echo "npm-tests: no test passed" >&2
    status=1
fi

if [ "${NPM_TESTS_TYPES:-1}" != 0 ]; then
    if command -v npm >/dev/null; then
        types=$scratch/types
        mkdir -p "$types/node_modules"
        (cd "$types" && npm install --silent --no-audit --no-fund --no-save typescript @types/node >&2)
        ln -s "$package" "$types/node_modules/authstore"
        cp "$tests/types.ts" "$types/esm.mts"
        cp "$tests/types.ts" "$types/cjs.cts"
        cat >"$types/tsconfig.json" <<'JSON'
{ "compilerOptions": { "strict": true, "noEmit": true, "target": "es2022", "module": "nodenext",
  "types": ["node"] }, "files": ["esm.mts", "cjs.cts"] }
JSON
        if (cd "$types" && node_modules/.bin/tsc -p tsconfig.json); then
            echo "npm-tests: index.d.ts type-checks under tsc --strict (ESM and CommonJS)" >&2
        else
            echo "npm-tests: tsc --strict failed on test/types.ts" >&2
            status=1
        fi
    else
        echo "npm-tests: npm not found, type check skipped (NPM_TESTS_TYPES=0 to skip it quietly)" >&2
    fi
fi
exit "$status"
