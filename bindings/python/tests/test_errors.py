"""Every exception class, raised as documented: the command line's message naming the path,
never a token; the stored file left byte for byte as it was."""

import json
import os
import subprocess
import threading
import time

import authstore
import pytest

from conftest import BOUND, authstore_command, tokens_of, with_expiry, write_auth


def assert_no_secret(error, secrets):
    for text in (str(error), repr(error), repr(error.args)):
        for secret in secrets:
            assert secret not in text


def test_not_logged_in_on_an_empty_home(tmp_path):
    manager = authstore.AuthManager(tmp_path / "empty")
    for call in (manager.token, manager.credentials, manager.refresh):
        with pytest.raises(authstore.NotLoggedIn) as raised:
            call()
        assert isinstance(raised.value, authstore.AuthstoreError)
        assert str(tmp_path / "empty" / "auth.json") in str(raised.value)
        assert raised.value.path == str(tmp_path / "empty" / "auth.json")
        assert raised.value.kind == "not_logged_in"
    assert not (tmp_path / "empty").exists()


def test_the_message_is_the_command_lines(tmp_path):
    with pytest.raises(authstore.NotLoggedIn) as raised:
        authstore.AuthManager(tmp_path).token()
    run = subprocess.run(
        [authstore_command(), "--codex-home", str(tmp_path), "token"],
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert run.returncode == 3
    # The same message; the command line adds a help: line of its own, naming its options.
    message, help_line = run.stderr.strip().split("\n")
    assert message == f"authstore: {raised.value}"
    assert help_line.startswith("help: ") and "--from" not in str(raised.value)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"tokens": {"access_token": 42}}',
        b"\x00\xff garbage",
        # Secrets in a broken document stay out of the message too.
        b'{"tokens": {"access_token": "eyJ.fake-secret-at.x", "refresh_token": 7}}',
        b'{"tokens": {"access_token": "eyJ.fake-secret-at.x", "refresh_token": "fake-secret-rt"',
    ],
)
def test_invalid_file_leaves_auth_json_unchanged(tmp_path, content):
    path = tmp_path / "auth.json"
    path.write_bytes(content)
    path.chmod(0o600)
    manager = authstore.AuthManager(tmp_path)
    for call in (manager.token, lambda: manager.refresh(force=True), manager.logout):
        with pytest.raises(authstore.InvalidFile) as raised:
            call()
        assert str(path) in str(raised.value)
        assert raised.value.path == str(path)
        assert_no_secret(raised.value, ["fake-secret-at", "fake-secret-rt"])
        assert path.read_bytes() == content


def test_relogin_required_when_the_refresh_token_was_spent_elsewhere(stale_home, authority):
    home, document = stale_home
    # Another client spends the refresh token and keeps its successor to itself.
    successor = authority.spend(document["tokens"]["refresh_token"])
    manager = authstore.AuthManager(home)
    with pytest.raises(authstore.ReloginRequired) as raised:
        manager.token()
    assert raised.value.reason in ("reused", "revoked")
    assert raised.value.kind == "relogin_required"
    assert str(home / "auth.json") in str(raised.value)
    assert_no_secret(raised.value, tokens_of(document) + tokens_of({"tokens": successor}))


def test_unavailable_when_another_process_holds_the_lock(stale_home, lock_holder):
    home, document = stale_home
    lock_holder(home)
    before = (home / "auth.json").read_bytes()
    manager = authstore.AuthManager(home, lock_timeout=0.3)
    with pytest.raises(authstore.Unavailable) as raised:
        manager.token()
    assert raised.value.kind == "lock_timeout"
    assert isinstance(raised.value, TimeoutError)
    assert str(home / "auth.lock") in str(raised.value)
    assert_no_secret(raised.value, tokens_of(document))
    assert (home / "auth.json").read_bytes() == before


def test_unavailable_when_the_token_endpoint_is_unreachable(stale_home, monkeypatch):
    home, document = stale_home
    # A loopback port nobody listens on (the authority's, after it stopped, would do too).
    monkeypatch.setenv("CODEX_REFRESH_TOKEN_URL_OVERRIDE", "http://127.0.0.1:9/oauth/token")
    manager = authstore.AuthManager(home, request_timeout=5)
    with pytest.raises(authstore.Unavailable) as raised:
        manager.token()
    assert raised.value.kind == "transient"
    assert isinstance(raised.value, ConnectionError)
    assert_no_secret(raised.value, tokens_of(document))


def test_bad_arguments_are_value_errors(tmp_path):
    with pytest.raises(ValueError):
        authstore.AuthManager(tmp_path, lock_timeout=-1)
    with pytest.raises(TypeError):
        authstore.AuthManager(tmp_path, 5.0)  # the timeouts are keyword-only


def test_a_thread_keeps_running_while_another_waits_for_the_lock(stale_home, lock_holder):
    """The wait releases the GIL: with it held, this thread could not run while the other
    waits, and would only get to look after the waiter had given up."""
    home, _ = stale_home
    holder = lock_holder(home)
    manager = authstore.AuthManager(home, lock_timeout=BOUND)
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(manager.token()))
    waiter.start()
    # Until the waiter blocks in the kernel on auth.lock (Linux lists blocked flock waiters in
    # /proc/locks with "->"), this thread keeps polling: it can only while the GIL is free.
    inode = (home / "auth.lock").stat().st_ino
    deadline = time.monotonic() + BOUND
    seen_blocked = False
    while not seen_blocked and waiter.is_alive() and time.monotonic() < deadline:
        with open("/proc/locks") as locks:
            seen_blocked = any("->" in line and f":{inode} " in line for line in locks)
    assert seen_blocked, "this thread never saw the waiter blocked on the lock"
    assert waiter.is_alive(), "the waiter finished while the lock was held"
    assert outcome == []
    holder.release()
    waiter.join(BOUND)
    assert not waiter.is_alive()
    assert len(outcome) == 1


@pytest.mark.skipif(not authstore.HAS_POSTGRES, reason="built without the PostgreSQL store")
def test_unavailable_when_the_shared_store_is_down_without_showing_its_password(tmp_path):
    # Port 9 on loopback: nobody listens, the connection is refused at once.
    url = "postgres://someone:pg-password-secret@127.0.0.1:9/db"
    with pytest.raises(authstore.Unavailable) as raised:
        authstore.AuthManager(tmp_path, store=url)
    assert raised.value.kind == "store_unavailable"
    assert isinstance(raised.value, ConnectionError)  # refused: unreachable
    assert "postgres://someone@127.0.0.1:9/db" in str(raised.value)
    assert_no_secret(raised.value, ["pg-password-secret"])
    with pytest.raises(ValueError):
        authstore.AuthManager(tmp_path, store="mysql://somewhere")


def test_a_manager_made_before_a_fork_says_so_in_the_child(fresh_home):
    home, _ = fresh_home
    manager = authstore.AuthManager(home)
    manager.token()
    child = os.fork()
    if child == 0:  # the child: must fail at once, never hang on the parent's threads
        try:
            manager.token()
            code = 1
        except authstore.AuthstoreError as error:
            code = 0 if "fork" in str(error) else 2
        except BaseException:
            code = 3
        os._exit(code)
    waited = []
    waiter = threading.Thread(target=lambda: waited.append(os.waitpid(child, 0)), daemon=True)
    waiter.start()
    waiter.join(BOUND)
    if not waited:
        os.kill(child, 9)
        pytest.fail("the forked child hung")
    [(_, status)] = waited
    assert os.waitstatus_to_exitcode(status) == 0
    assert manager.token()  # the parent's manager still works
