# Sourced by the scripts that run one test target of the command-line crate outside `cargo test`
# (scripts/keyring-tests.sh, scripts/static-binary.sh, scripts/codex-interop.sh):
#
#   . scripts/test-binary.sh
#   bin=$(test_binary TARGET [FEATURE ...])   # builds it if needed, prints the executable's path
#   (cd crates/authstore-cli && "$bin" ...)    # cargo runs a test binary in its package's directory
#
# With AUTHSTORE_CI_FEATURES set (CI sets failpoints,postgres), the binary is built exactly as
# the README's test command builds it: every default member of the workspace with those
# features (plus authstore-cli/FEATURE for each FEATURE given), so that the dependencies resolve
# to the same features and CI reuses that build instead of compiling them again; `cargo test -p
# authstore-cli` alone would resolve them differently. Without it: `cargo test -p authstore-cli
# --features FEATURE,...`, the smallest build.
#
# Extra cargo arguments (e.g. --target, --profile) are not supported: the test binaries run on
# this machine.

test_binary() {
    local target=$1
    shift
    local args=(--no-run --message-format=json-render-diagnostics --test "$target")
    local features=("$@")
    if [[ -n "${AUTHSTORE_CI_FEATURES:-}" ]]; then
        local all=$AUTHSTORE_CI_FEATURES feature
        for feature in "${features[@]}"; do all+=",authstore-cli/$feature"; done
        args+=(--features "$all")
    else
        args+=(-p authstore-cli)
        if ((${#features[@]})); then
            args+=(--features "$(IFS=,; echo "${features[*]}")")
        fi
    fi
    local found
    found=$(cargo test "${args[@]}" | python3 -c '
import json, sys
target = sys.argv[1]
for line in sys.stdin:
    message = json.loads(line)
    if (message.get("reason") == "compiler-artifact" and message.get("executable")
            and message["target"]["name"] == target
            and message["manifest_path"].endswith("crates/authstore-cli/Cargo.toml")):
        print(message["executable"])' "$target") || return 1
    if [[ -z "$found" || ! -x "$found" ]]; then
        echo "test-binary: cargo built no test target $target of authstore-cli" >&2
        return 1
    fi
    echo "$found"
}
