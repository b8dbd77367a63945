#!/usr/bin/env bash
# The Python package's tests: builds the wheel from this tree into a fresh virtual environment
# (pip fetches maturin from PyPI; the Rust toolchain builds the extension), then runs pytest
# (bindings/python/tests) against the embedded token authority. Fails when a test fails or
# when pytest finds no test at all (its exit code 5).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=$(mktemp -d "${TMPDIR:-/tmp}/authstore-pyvenv.XXXXXX")
trap 'rm -rf "$venv"' EXIT
if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 makes virtual environments only with python3-venv.
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
    rm -rf "$venv"
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check ./bindings/python pytest
# Run from the tests' directory so that the installed package is tested, not the source tree.
cd bindings/python/tests
status=0
"$venv/bin/python" -m pytest -q -p no:cacheprovider . || status=$?
if [ "$status" -eq 5 ]; then
    echo "python-tests: pytest collected no test" >&2
    exit 1
fi
exit "$status"
