#!/usr/bin/env bash
# The Python package's tests, as a package index would ship it: `maturin sdist` of
# bindings/python (the source distribution carries the library, the command-line and simulator
# crates it depends on), then `pip install` of that sdist into a fresh virtual environment (pip
# builds the wheel from it; the Rust toolchain compiles the extension), with the extras the
# tests use (httpx and requests, for authstore.httpx and authstore.requests), then pytest
# (bindings/python/tests) against the embedded token authority and local HTTP servers. Fails
# when a test fails or when pytest finds no test at all (its exit code 5).
#
#   bash scripts/python-tests.sh [SDIST]    (SDIST: test that sdist, e.g. scripts/dist.sh's,
#                                            instead of making one)
#
# AUTHSTORE_PYTHON_TESTS_PROFILE=dev builds the extension from the sdist in Cargo's dev profile
# instead of pip's release build: CI does, since its release wheel is tested on its own
# (scripts/dist-tests.sh) and the tests here are the same whatever the optimisation.
set -euo pipefail
given=${1:+$(realpath "$1")}
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
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet pytest
if [ -n "$given" ]; then
    sdist=("$given")
else
    "${pip[@]}" install --quiet "maturin>=1.5,<2"
    "$venv/bin/maturin" sdist --manifest-path bindings/python/Cargo.toml --out "$venv/sdist" >&2
    sdist=("$venv"/sdist/authstore-*.tar.gz)
fi
echo "python-tests: installing ${sdist[0]##*/}" >&2
build=()
if [ -n "${AUTHSTORE_PYTHON_TESTS_PROFILE:-}" ]; then
    build=(--config-settings "build-args=--profile $AUTHSTORE_PYTHON_TESTS_PROFILE")
fi
"${pip[@]}" install --quiet "${build[@]}" "${sdist[0]}[httpx,requests]"
# Run from the tests' directory so that the installed package is tested, not the source tree.
cd bindings/python/tests
status=0
"$venv/bin/python" -m pytest -q -p no:cacheprovider . || status=$?
if [ "$status" -eq 5 ]; then
    echo "python-tests: pytest collected no test" >&2
    exit 1
fi
exit "$status"
