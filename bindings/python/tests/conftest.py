"""Fixtures: the embedded token authority, run as the installed `authstore authority` command
(rotation, family revocation on reuse, counters at GET /sim/stats), and Codex homes logged in
through it. Every wait is bounded; nothing leaves loopback; every token is a fake JWT the
authority made."""

import base64
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

#: No process in these tests may take longer than this (seconds).
BOUND = 60


def authstore_command():
    """The `authstore` command the package installed beside this interpreter."""
    path = Path(sys.executable).parent / "authstore"
    assert path.is_file(), f"{path} is not installed: pip install ./bindings/python"
    return str(path)


class Authority:
    def __init__(self, process, base_url):
        self.process = process
        self.base_url = base_url
        self.token_url = base_url + "/oauth/token"

    def stats(self):
        with urllib.request.urlopen(self.base_url + "/sim/stats", timeout=BOUND) as answer:
            return json.load(answer)

    def login_document(self, account="acct-py", user="user-py"):
        body = json.dumps(
            {"account_id": account, "user_id": user, "email": f"{user}@example.com", "plan": "plus"}
        ).encode()
        request = urllib.request.Request(
            self.base_url + "/sim/login",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=BOUND) as answer:
            return json.load(answer)

    def spend(self, refresh_token):
        """Spends `refresh_token` as another client would (the authority rotates it)."""
        body = json.dumps(
            {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "x"}
        ).encode()
        request = urllib.request.Request(
            self.token_url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=BOUND) as answer:
            return json.load(answer)


def _read_line(stream, bound):
    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=bound)


@pytest.fixture
def authority(monkeypatch):
    """A fresh authority on a free loopback port; its token URL is exported for this process
    and the processes it starts."""
    process = subprocess.Popen(
        [authstore_command(), "authority", "--port", "0"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "CODEX_HOME"},
    )
    try:
        line = _read_line(process.stdout, BOUND)
        assert line.startswith("listening on http://127.0.0.1:"), line
        base_url = line.split()[-1].rstrip("/")
        monkeypatch.setenv("CODEX_REFRESH_TOKEN_URL_OVERRIDE", base_url + "/oauth/token")
        monkeypatch.delenv("CODEX_HOME", raising=False)
        monkeypatch.delenv("AUTHSTORE_STORE", raising=False)
        yield Authority(process, base_url)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=BOUND)


def jwt_payload(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def with_expiry(token, exp):
    """The fake JWT `token` with its `exp` claim set to `exp` (the authority checks refresh
    tokens only, so an access token may be re-dated)."""
    header, _, signature = token.split(".")
    claims = jwt_payload(token)
    claims["exp"] = int(exp)
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{payload}.{signature}"


def write_auth(home, document):
    path = Path(home) / "auth.json"
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return path


@pytest.fixture
def stale_home(tmp_path, authority):
    """A Codex home logged in through the authority, whose access token has 60 s left (inside
    the 5-minute refresh window). Returns (home, document)."""
    document = authority.login_document()
    document["tokens"]["access_token"] = with_expiry(
        document["tokens"]["access_token"], time.time() + 60
    )
    write_auth(tmp_path, document)
    return tmp_path, document


@pytest.fixture
def fresh_home(tmp_path, authority):
    """A Codex home logged in through the authority with fresh tokens. Returns (home, document)."""
    document = authority.login_document()
    write_auth(tmp_path, document)
    return tmp_path, document


def tokens_of(document):
    """Every secret in an auth.json document."""
    tokens = document.get("tokens") or {}
    return [
        v
        for k, v in tokens.items()
        if k in ("access_token", "refresh_token", "id_token") and v
    ]


class LockHolder:
    """Another process holding `auth.lock` (flock, as Codex and authstore take it) until
    released."""

    def __init__(self, home):
        code = (
            "import fcntl, sys\n"
            f"f = open({str(Path(home) / 'auth.lock')!r}, 'a+')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert _read_line(self.process.stdout, BOUND).strip() == "held"

    def release(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=BOUND)


@pytest.fixture
def lock_holder():
    holders = []

    def hold(home):
        holder = LockHolder(home)
        holders.append(holder)
        return holder

    yield hold
    for holder in holders:
        holder.release()


def which_authstore():
    return shutil.which("authstore", path=str(Path(sys.executable).parent))
