"""store=: two Codex homes (two machines) sharing one login in a throwaway PostgreSQL server
(initdb and pg_ctl in a temporary directory, trust authentication, loopback only). Skipped
when the build has no PostgreSQL store or the machine has no PostgreSQL server programs (CI
installs them)."""

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import authstore
import pytest

from conftest import BOUND, authstore_command, with_expiry

pytestmark = pytest.mark.skipif(
    not authstore.HAS_POSTGRES, reason="built without the PostgreSQL store"
)


def _bindir():
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_url():
    bindir = _bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server programs (initdb): apt-get install postgresql")
    # initdb refuses root: as root, the server runs as the postgres user.
    prefix = []
    if os.geteuid() == 0:
        if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
            pytest.skip("running as root without a postgres user to run the server")
        prefix = ["runuser", "-u", "postgres", "--"]
    directory = Path(tempfile.mkdtemp(prefix="authstore-py-pg-"))
    data, sockets, log = directory / "data", directory / "sockets", directory / "server.log"
    sockets.mkdir()
    if prefix:
        shutil.chown(directory, user="postgres")
        shutil.chown(sockets, user="postgres")

    def server(*args):
        # Output into a file: the server pg_ctl starts would hold a pipe open.
        with open(directory / "command.out", "w") as out:
            if prefix:
                shutil.chown(directory / "command.out", user="postgres")
            return subprocess.run(
                [*prefix, *args], stdout=out, stderr=out, timeout=BOUND, cwd=directory
            ).returncode

    assert server(
        str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
        "-E", "UTF8", "--locale=C", "--no-sync",
    ) == 0, (directory / "command.out").read_text()
    port = _free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sockets}"
    started = server(
        str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "30",
        "start",
    )
    assert started == 0, log.read_text() if log.exists() else ""
    try:
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    finally:
        server(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop")
        shutil.rmtree(directory, ignore_errors=True)


def test_two_machines_share_one_login_through_the_store(pg_url, tmp_path, authority):
    key = "python-" + tmp_path.name
    first_home, second_home = tmp_path / "machine-a", tmp_path / "machine-b"
    first = authstore.AuthManager(first_home, store=pg_url, store_key=key)
    assert "postgres://postgres@127.0.0.1" in first.location
    with pytest.raises(authstore.NotLoggedIn):
        first.token()
    document = authority.login_document()
    document["tokens"]["access_token"] = with_expiry(
        document["tokens"]["access_token"], time.time() + 60
    )
    first.login(document)
    # The local auth.json is the store's mirror.
    assert json.loads((first_home / "auth.json").read_text())["tokens"] == document["tokens"]

    second = authstore.AuthManager(second_home, store=pg_url, store_key=key)
    token = second.token()  # stale: refreshed once, through the store's transaction
    assert token != document["tokens"]["access_token"]
    assert first.token() == token
    run = subprocess.run(
        [authstore_command(), "--codex-home", str(tmp_path / "machine-c"), "--store", pg_url,
         "--store-key", key, "token"],
        capture_output=True, text=True, timeout=BOUND,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == token
    assert authority.stats()["refresh_calls"] == 1

    status = second.status()
    assert status["logged_in"] is True
    assert status["path"].endswith("#" + key)
    assert status["mirror"]["path"] == str(second_home / "auth.json")
    assert status["mirror"]["in_sync"] is True
