"""The API against the embedded authority: credentials, token, refresh, unauthorized, login,
logout, status, watch; and that no token shows in a repr."""

import datetime
import json
import subprocess
import threading

import authstore
import pytest

from conftest import BOUND, authstore_command, expect, jwt_payload, keyring_item, tokens_of


def test_credentials_of_a_fresh_login_are_read_without_a_refresh(fresh_home, authority):
    home, document = fresh_home
    manager = authstore.AuthManager(home)
    credentials = manager.credentials()
    assert credentials.access_token == document["tokens"]["access_token"]
    assert credentials.account_id == "acct-py"
    expected = jwt_payload(document["tokens"]["access_token"])["exp"]
    assert credentials.expires_at == datetime.datetime.fromtimestamp(
        expected, datetime.timezone.utc
    )
    assert credentials.expires_at.tzinfo is not None
    assert credentials.headers == {
        "Authorization": "Bearer " + document["tokens"]["access_token"],
        "ChatGPT-Account-Id": "acct-py",
    }
    assert manager.token() == document["tokens"]["access_token"]
    assert manager.refresh() == "fresh"
    assert authority.stats()["refresh_calls"] == 0


def test_a_stale_token_is_refreshed_once_and_written(stale_home, authority):
    home, document = stale_home
    manager = authstore.AuthManager(home)
    token = manager.token()
    assert token != document["tokens"]["access_token"]
    assert manager.token() == token
    written = json.loads((home / "auth.json").read_text())
    assert written["tokens"]["access_token"] == token
    assert written["tokens"]["refresh_token"] != document["tokens"]["refresh_token"]
    assert authority.stats()["refresh_calls"] == 1


def test_refresh_says_what_happened(stale_home, authority):
    home, _ = stale_home
    first = authstore.AuthManager(home)
    assert first.refresh() == "refreshed"
    assert first.refresh() == "fresh"
    assert authstore.AuthManager(home).refresh() == "fresh"
    assert first.refresh(force=True) == "refreshed"
    assert authority.stats()["refresh_calls"] == 2


def test_unauthorized_adopts_what_another_process_wrote(fresh_home, authority):
    home, _ = fresh_home
    manager = authstore.AuthManager(home)
    rejected = manager.credentials()
    run = subprocess.run(
        [authstore_command(), "--codex-home", str(home), "refresh", "--force"],
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert run.returncode == 0, run.stderr
    adopted = manager.unauthorized(rejected)
    assert adopted.access_token != rejected.access_token
    on_disk = json.loads((home / "auth.json").read_text())
    assert adopted.access_token == on_disk["tokens"]["access_token"]
    assert authority.stats()["refresh_calls"] == 1


def test_login_takes_a_dict_or_json_text_and_logout_removes_the_file(tmp_path, authority):
    manager = authstore.AuthManager(tmp_path)
    document = authority.login_document(account="acct-a", user="user-a")
    assert manager.login(document).account_id == "acct-a"
    assert json.loads((tmp_path / "auth.json").read_text())["tokens"] == document["tokens"]
    other = authority.login_document(account="acct-a", user="user-a")
    manager.logout()
    assert manager.login(json.dumps(other)).access_token == other["tokens"]["access_token"]
    assert manager.logout() is True
    assert not (tmp_path / "auth.json").exists()
    assert manager.logout() is False
    with pytest.raises(ValueError):
        manager.login({"tokens": "not an object"})
    with pytest.raises(TypeError):
        manager.login(42)


def test_status_is_what_status_json_prints(fresh_home):
    home, _ = fresh_home
    status = authstore.AuthManager(home).status()
    run = subprocess.run(
        [authstore_command(), "--codex-home", str(home), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert run.returncode == 0, run.stderr
    assert status == json.loads(run.stdout)
    assert status["logged_in"] is True
    assert status["account_id"] == "acct-py"
    assert status["email"] == "user-py@example.com"
    assert status["path"] == str(home / "auth.json")


def test_watch_yields_what_watch_json_prints(fresh_home, authority):
    home, _ = fresh_home
    manager = authstore.AuthManager(home)
    watch = manager.watch(timeout=BOUND)
    events = []
    reader = threading.Thread(target=lambda: events.append(next(watch)))
    reader.start()
    run = subprocess.run(
        [authstore_command(), "--codex-home", str(home), "refresh", "--force"],
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert run.returncode == 0, run.stderr
    reader.join(BOUND)
    assert not reader.is_alive()
    [event] = events
    assert event["event"] == "refreshed"
    assert event["account_id"] == "acct-py"
    assert set(event) == {"event", "account_id", "user_id", "email", "expires_at", "time"}
    # With nothing changing, a timeout ends the iteration.
    assert list(manager.watch(timeout=0.2)) == []


def test_no_token_in_any_repr_or_str(stale_home):
    home, document = stale_home
    manager = authstore.AuthManager(home)
    credentials = manager.credentials()
    secrets = tokens_of(document) + [credentials.access_token]
    written = json.loads((home / "auth.json").read_text())
    secrets += tokens_of(written)
    shown = [repr(credentials), str(credentials), repr(manager), str(manager)]
    shown.append(json.dumps(manager.status()))
    for text in shown:
        for secret in secrets:
            assert secret not in text
    assert "acct-py" in repr(credentials)


def test_the_authstore_command_is_installed_and_is_the_cli(tmp_path):
    run = subprocess.run(
        [authstore_command(), "--help"], capture_output=True, text=True, timeout=BOUND
    )
    assert run.returncode == 0, run.stderr
    assert "Print a valid access token" in run.stdout
    run = subprocess.run(
        [authstore_command(), "--codex-home", str(tmp_path), "token"],
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert run.returncode == 3
    assert str(tmp_path / "auth.json") in run.stderr
    run = subprocess.run(
        [authstore_command(), "no-such-command"], capture_output=True, text=True, timeout=BOUND
    )
    assert run.returncode == 2


def test_the_demo_runs_from_the_installed_command():
    """The demo starts its workers as more processes of the `authstore` command: under Python
    that is the console script, not the interpreter."""
    run = subprocess.run(
        [
            authstore_command(),
            "demo",
            "--processes",
            "2",
            "--duration",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(run.stdout)
    [coordinated] = [s for s in summary["strategies"] if s["strategy"] == "coordinated"]
    assert coordinated["requests_served"] > 0
    assert coordinated["reuse_rejections"] == 0


def test_aio_gives_the_managers_answers_refreshing_once(stale_home, authority):
    import asyncio

    import authstore.aio

    home, _ = stale_home
    manager = authstore.AuthManager(home)

    async def main():
        tokens = await asyncio.gather(*(authstore.aio.token(manager) for _ in range(8)))
        credentials = await authstore.aio.credentials(manager)
        return tokens, credentials, await authstore.aio.refresh(manager)

    tokens, credentials, refreshed = asyncio.run(main())
    assert len(set(tokens)) == 1
    assert credentials.access_token == tokens[0]
    assert refreshed == "fresh"
    assert authority.stats()["refresh_calls"] == 1


def test_credentials_store_overrides_the_home_config(fresh_home, monkeypatch):
    """credentials_store="file" reads auth.json whatever config.toml says (a keyring that is
    not there is never asked), and status() says it was overridden; None is as Codex chooses,
    AUTHSTORE_CREDENTIALS_STORE first."""
    home, document = fresh_home
    (home / "config.toml").write_text('cli_auth_credentials_store = "keyring"\n')
    # No Secret Service can answer on this bus.
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={home / 'no-bus'}")
    monkeypatch.delenv("AUTHSTORE_CREDENTIALS_STORE", raising=False)

    manager = authstore.AuthManager(home, credentials_store="file")
    expect(
        manager.token() == document["tokens"]["access_token"],
        "credentials_store='file' did not read auth.json",
    )
    chosen = manager.status()["credentials_store"]
    assert chosen["store"] == "file"
    assert chosen["source"] == "override"

    # None: the keyring, as config.toml says, which does not answer here.
    with pytest.raises(authstore.Unavailable) as raised:
        authstore.AuthManager(home).token()
    assert "keyring" in str(raised.value)

    monkeypatch.setenv("AUTHSTORE_CREDENTIALS_STORE", "file")
    from_env = authstore.AuthManager(home)
    assert from_env.status()["credentials_store"]["source"] == "override"
    expect(
        from_env.token() == document["tokens"]["access_token"],
        "AUTHSTORE_CREDENTIALS_STORE=file did not read auth.json",
    )


def test_credentials_store_keyring_without_a_keyring_is_unavailable(fresh_home, monkeypatch):
    """The keyring store with no Secret Service: Unavailable naming the store, and auth.json,
    which the keyring store never reads, left as it was."""
    assert authstore.HAS_KEYRING, "the package is built with the keyring store"
    home, _ = fresh_home
    before = (home / "auth.json").read_bytes()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={home / 'no-bus'}")
    with pytest.raises(authstore.Unavailable) as raised:
        authstore.AuthManager(home, credentials_store="keyring").token()
    assert "keyring" in str(raised.value).lower()
    assert (home / "auth.json").read_bytes() == before


@pytest.mark.parametrize("word", ["vault", "ephemeral", ""])
def test_credentials_store_rejects_other_words(tmp_path, word):
    with pytest.raises(ValueError) as raised:
        authstore.AuthManager(tmp_path, credentials_store=word)
    assert "credentials_store=" in str(raised.value)


def test_an_unparseable_config_is_a_value_error_naming_it(fresh_home, monkeypatch):
    home, _ = fresh_home
    monkeypatch.delenv("AUTHSTORE_CREDENTIALS_STORE", raising=False)
    (home / "config.toml").write_text("cli_auth_credentials_store = keyring\n")
    with pytest.raises(ValueError) as raised:
        authstore.AuthManager(home).token()
    assert "config.toml" in str(raised.value)


def test_the_keyring_store_is_codexs_item_read_refreshed_and_written_in_place(
    secret_service, stale_home, authority
):
    """A home whose Codex keeps its login in the keyring (config.toml): the manager installs
    the login in Codex's item, refreshes the stale token once through the authority, writes the
    new tokens back to the item, and never writes auth.json."""
    home, document = stale_home
    (home / "auth.json").unlink()
    (home / "config.toml").write_text('cli_auth_credentials_store = "keyring"\n')
    manager = authstore.AuthManager(home)
    manager.login(document)
    chosen = manager.status()["credentials_store"]
    assert chosen["store"] == "keyring"
    item = chosen["keyring_item"]
    assert item["service"] == "Codex Auth"
    assert item["account"].startswith("cli|")
    stored = json.loads(keyring_item(secret_service, item["service"], item["account"]) or "{}")
    expect(
        stored.get("tokens", {}).get("refresh_token") == document["tokens"]["refresh_token"],
        "the login is not in Codex's keyring item",
    )

    token = manager.token()
    assert authority.stats()["refresh_calls"] == 1
    expect(token != document["tokens"]["access_token"], "the stale token was handed out")
    stored = json.loads(keyring_item(secret_service, item["service"], item["account"]) or "{}")
    expect(
        stored.get("tokens", {}).get("access_token") == token,
        "the refreshed token is not in Codex's keyring item",
    )
    # A second manager (another process's view) takes the new token with no call.
    expect(authstore.AuthManager(home).token() == token, "another manager read another token")
    assert authority.stats()["refresh_calls"] == 1
    assert not (home / "auth.json").exists()
