"""Fixtures: the embedded token authority, run as the installed `authstore authority` command
(rotation, family revocation on reuse, counters at GET /sim/stats), and Codex homes logged in
through it. Every wait is bounded; nothing leaves loopback; every token is a fake JWT the
authority made."""

import base64
import contextlib
import json
import os
import http.server
import queue
import shutil
import signal
import socket
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


@contextlib.contextmanager
def running_authority():
    """The embedded authority on a free loopback port, stopped on exit."""
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
        yield Authority(process, line.split()[-1].rstrip("/"))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=BOUND)


@pytest.fixture
def authority(monkeypatch):
    """A fresh authority on a free loopback port; its token URL is exported for this process
    and the processes it starts."""
    with running_authority() as authority:
        monkeypatch.setenv("CODEX_REFRESH_TOKEN_URL_OVERRIDE", authority.token_url)
        monkeypatch.delenv("CODEX_APP_SERVER_LOGIN_CLIENT_ID", raising=False)
        monkeypatch.delenv("CODEX_HOME", raising=False)
        monkeypatch.delenv("AUTHSTORE_STORE", raising=False)
        yield authority


@pytest.fixture
def another_authority():
    """A second authority, of its own (nothing exported): for managers given its token_url."""
    with running_authority() as authority:
        yield authority


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


def expect(condition, message):
    """`assert condition, message` whose failure shows the message only: never the values
    compared (tokens, even fake ones, stay out of failure messages)."""
    if not condition:
        raise AssertionError(message)


def closed_port():
    """A loopback port nobody listens on: a connection to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_endpoint():
    """A token URL whose server takes the connection (the kernel's backlog) and never
    answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/oauth/token"


def _serve(handler_class):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    return server, thread


class RecordingTokenEndpoint:
    """A token endpoint that records each request's JSON body and answers with new fake
    tokens of the identity it was given (what an authority that does not rotate would)."""

    def __init__(self, account="acct-py", user="user-py"):
        self.bodies = []
        #: The status it answers with; anything but 200 comes with an error body.
        self.status = 200
        endpoint = self
        auth = {"chatgpt_account_id": account, "chatgpt_user_id": user}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                endpoint.bodies.append(json.loads(self.rfile.read(length)))
                claims = {"exp": int(time.time()) + 3600, "https://api.openai.com/auth": auth}
                answer = json.dumps(
                    {
                        "access_token": fake_jwt(dict(claims, n=len(endpoint.bodies))),
                        "id_token": fake_jwt(claims),
                        "refresh_token": f"rt-recorded-{len(endpoint.bodies)}",
                    }
                    if endpoint.status == 200
                    else {"error": "server_error"}
                ).encode()
                self.send_response(endpoint.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server, self.thread = _serve(Handler)
        self.token_url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth/token"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(BOUND)


@pytest.fixture
def recording_endpoint():
    endpoint = RecordingTokenEndpoint()
    yield endpoint
    endpoint.close()


def fake_jwt(claims):
    """An unsigned JWT carrying `claims`, as the embedded authority makes them."""

    def part(value):
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.unsigned"


class ResourceServer:
    """An API on loopback: it answers 200 to a request whose bearer token is a live fake JWT
    (as the authority issues them: `exp` in the future) that it was not told to reject, and 401
    otherwise. It records every request: (token, account header, body).

    `reject(token)`: that token gets 401 from then on. `reject_all`: every token does.
    `on_reject`: called (once) with the token when the first rejected request arrives, before
    the 401 is answered. `hold_rejections(n)`: the 401s are answered only once `n` requests
    with a rejected token have arrived (so that `n` clients all carry the same token)."""

    def __init__(self):
        self.requests = []
        self.rejected = set()
        self.reject_all = False
        self.on_reject = None
        self._held = 0
        self._arrived = 0
        self._lock = threading.Condition()
        resource = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
                token = token if scheme == "Bearer" and token else None
                account = self.headers.get("ChatGPT-Account-Id")
                status = resource._status(token)
                with resource._lock:
                    resource.requests.append((token, account, body, status))
                self.send_response(status)
                answer = b'{"ok": true}' if status == 200 else b'{"error": "unauthorized"}'
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args):
                pass

        self.server, self.thread = _serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"

    def reject(self, token):
        with self._lock:
            self.rejected.add(token)

    def hold_rejections(self, count):
        self._held = count

    def _status(self, token):
        with self._lock:
            rejected = self.reject_all or token is None or token in self.rejected
            if not rejected:
                try:
                    live = jwt_payload(token)["exp"] > time.time()
                except Exception:
                    live = False
                return 200 if live else 401
            self._arrived += 1
            first = self._arrived == 1
            hook, self.on_reject = (self.on_reject, None) if first else (None, None)
            deadline = time.monotonic() + BOUND
            self._lock.notify_all()
            while self._arrived < self._held and time.monotonic() < deadline:
                self._lock.wait(deadline - time.monotonic())
        if hook is not None:
            hook(token)
        return 401

    def tokens(self, status=None):
        with self._lock:
            return [t for t, _, _, s in self.requests if status is None or s == status]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(BOUND)


@pytest.fixture
def resource():
    server = ResourceServer()
    yield server
    server.close()



@pytest.fixture
def secret_service(tmp_path_factory, monkeypatch):
    """A Secret Service of this test's own: a private session bus (dbus-daemon) with
    gnome-keyring's secrets component, its files under a scratch HOME, the login collection
    created and unlocked with a known password; its address exported for this process and the
    ones it starts. Skips, saying why, where dbus-daemon, gnome-keyring or secret-tool is not
    installed (CI installs them), unless AUTHSTORE_KEYRING_TESTS=1."""
    missing = [
        tool
        for tool in ("dbus-daemon", "gnome-keyring-daemon", "secret-tool")
        if shutil.which(tool) is None
    ]
    if missing:
        if os.environ.get("AUTHSTORE_KEYRING_TESTS") == "1":
            pytest.fail(f"AUTHSTORE_KEYRING_TESTS=1 but {', '.join(missing)} not installed")
        pytest.skip(f"no Secret Service: {', '.join(missing)} not installed")
    root = tmp_path_factory.mktemp("secret-service")
    home = root / "home"
    runtime = root / "runtime"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    env = dict(
        os.environ,
        HOME=str(home),
        XDG_RUNTIME_DIR=str(runtime),
        XDG_DATA_HOME=str(home / ".local" / "share"),
    )
    bus = subprocess.Popen(
        [
            "dbus-daemon",
            "--session",
            "--nofork",
            "--print-address=1",
            f"--address=unix:path={runtime / 'bus'}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        address = _read_line(bus.stdout, BOUND).strip()
        expect(address.startswith("unix:"), f"dbus-daemon printed no address: {address!r}")
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        for command, password in (
            (["gnome-keyring-daemon", "--unlock", "--components=secrets"], b"authstore-test"),
            (["gnome-keyring-daemon", "--start", "--components=secrets"], None),
        ):
            # Not captured: the daemon it forks keeps its stdout and stderr open.
            subprocess.run(
                command,
                input=password,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=BOUND,
                check=True,
            )
        for _ in range(50):
            probe = subprocess.run(
                ["secret-tool", "store", "--label=probe", "service", "authstore-probe"],
                input=b"probe",
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=BOUND,
            )
            if probe.returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail("gnome-keyring did not answer on the private bus within 5 s")
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        yield env
    finally:
        # gnome-keyring-daemon leaves when its bus goes away.
        bus.terminate()
        bus.wait(timeout=BOUND)


def keyring_item(env, service, account):
    """The secret of the Secret Service item (service, account), as secret-tool reads it, or
    None. Never shown in a failure message by the callers."""
    found = subprocess.run(
        ["secret-tool", "lookup", "service", service, "username", account],
        env=env,
        capture_output=True,
        timeout=BOUND,
    )
    return found.stdout.decode() if found.returncode == 0 and found.stdout else None
