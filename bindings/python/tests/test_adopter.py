"""What an adopter that had its own Codex refresh code needs: a token endpoint and a freshness
rule per manager, recovery from a 401 for a token string it holds (guarded by that token's
identity), Python's own exception classes, and the path of auth.json as well as its home."""

import datetime
import json
import subprocess
import time

import authstore
import pytest

from conftest import (
    BOUND,
    authstore_command,
    closed_port,
    expect,
    fake_jwt,
    tokens_of,
    with_expiry,
    write_auth,
)


def stale(document, seconds_left=60):
    """`document` whose access token expires in `seconds_left` seconds."""
    document["tokens"]["access_token"] = with_expiry(
        document["tokens"]["access_token"], time.time() + seconds_left
    )
    return document


def on_disk(home):
    return json.loads((home / "auth.json").read_text())


def _login(account="acct-py", user="user-py"):
    """A login document of fake tokens that no authority issued (for the recording
    endpoint)."""
    auth = {"chatgpt_account_id": account, "chatgpt_user_id": user}
    claims = {"exp": int(time.time()) + 3600, "https://api.openai.com/auth": auth}
    return {
        "OPENAI_API_KEY": None,
        "tokens": {
            "id_token": fake_jwt(dict(claims, email=f"{user}@example.com")),
            "access_token": fake_jwt(claims),
            "refresh_token": "rt-fake-1",
            "account_id": account,
        },
    }


# 1. A token endpoint per manager.


def test_two_managers_in_one_process_refresh_at_their_own_endpoints(
    tmp_path, authority, another_authority, monkeypatch
):
    # The process-wide override names nobody: neither manager may use it.
    monkeypatch.setenv("CODEX_REFRESH_TOKEN_URL_OVERRIDE", f"http://127.0.0.1:{closed_port()}/t")
    homes = {}
    for name, at in (("first", authority), ("second", another_authority)):
        homes[name] = tmp_path / name
        homes[name].mkdir()
        write_auth(homes[name], stale(at.login_document()))
    first = authstore.AuthManager(homes["first"], token_url=authority.token_url)
    second = authstore.AuthManager(homes["second"], token_url=another_authority.token_url)
    assert first.refresh() == "refreshed"
    assert second.refresh() == "refreshed"
    for _ in range(2):
        assert first.refresh() == "fresh"
        assert second.refresh() == "fresh"
    # Each authority knows only its own refresh tokens: a refresh at the other would have
    # been refused (invalid_grant), not counted here.
    assert authority.stats()["refresh_calls"] == 1
    assert another_authority.stats()["refresh_calls"] == 1
    expect(first.token() == on_disk(homes["first"])["tokens"]["access_token"], "first's token")
    expect(second.token() == on_disk(homes["second"])["tokens"]["access_token"], "second's")
    # token_url=None keeps the process-wide rule: the override, here unreachable.
    with pytest.raises(authstore.Unreachable):
        authstore.AuthManager(homes["first"], request_timeout=5).refresh(force=True)
    assert authority.stats()["refresh_calls"] == 1


def test_client_id_is_the_managers_own_else_codexs(tmp_path, recording_endpoint, monkeypatch):
    monkeypatch.delenv("CODEX_APP_SERVER_LOGIN_CLIENT_ID", raising=False)
    write_auth(tmp_path, _login())
    url = recording_endpoint.token_url
    authstore.AuthManager(tmp_path, token_url=url, client_id="app_adopter").refresh(force=True)
    authstore.AuthManager(tmp_path, token_url=url).refresh(force=True)
    monkeypatch.setenv("CODEX_APP_SERVER_LOGIN_CLIENT_ID", "app_from_env")
    authstore.AuthManager(tmp_path, token_url=url).refresh(force=True)
    authstore.AuthManager(tmp_path, token_url=url, client_id="app_adopter").refresh(force=True)
    assert [body["client_id"] for body in recording_endpoint.bodies] == [
        "app_adopter",
        "app_EMoamEEZ73f0CkXaXp7hrann",
        "app_from_env",
        "app_adopter",
    ]
    assert all(body["grant_type"] == "refresh_token" for body in recording_endpoint.bodies)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://auth.example.com/oauth/token",
        "auth.example.com/oauth/token",
        "file:///etc/passwd",
        "http://",
        "",
    ],
)
def test_a_token_url_that_is_not_http_is_a_value_error_naming_it(tmp_path, url):
    with pytest.raises(ValueError) as raised:
        authstore.AuthManager(tmp_path / "home", token_url=url)
    assert f"token_url={json.dumps(url)}" in str(raised.value)
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("client_id", ["", "two words", "line\nbreak"])
def test_a_client_id_that_cannot_be_one_is_a_value_error(tmp_path, client_id):
    with pytest.raises(ValueError) as raised:
        authstore.AuthManager(tmp_path, client_id=client_id)
    assert "client_id" in str(raised.value)


# 2. A freshness rule per manager.


def test_refresh_window_decides_when_a_token_is_stale(tmp_path, authority):
    write_auth(tmp_path, stale(authority.login_document(), seconds_left=600))
    assert authstore.AuthManager(tmp_path, refresh_window=60).refresh() == "fresh"
    assert authstore.AuthManager(tmp_path).refresh() == "fresh"  # default 300 s
    assert authority.stats()["refresh_calls"] == 0
    assert authstore.AuthManager(tmp_path, refresh_window=900).refresh() == "refreshed"
    assert authority.stats()["refresh_calls"] == 1


def test_refresh_interval_decides_when_exp_cannot_be_read(tmp_path, authority):
    document = authority.login_document()
    document["tokens"]["access_token"] = "opaque-access-token-without-claims"
    two_days_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2)
    document["last_refresh"] = two_days_ago.strftime("%Y-%m-%dT%H:%M:%SZ")
    write_auth(tmp_path, document)
    assert authstore.AuthManager(tmp_path).refresh() == "fresh"  # default 8 days
    assert authstore.AuthManager(tmp_path, refresh_interval=3 * 86400).refresh() == "fresh"
    assert authority.stats()["refresh_calls"] == 0
    assert authstore.AuthManager(tmp_path, refresh_interval=86400).refresh() == "refreshed"
    assert authority.stats()["refresh_calls"] == 1


@pytest.mark.parametrize("name", ["refresh_window", "refresh_interval"])
@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), -float("inf")])
def test_negative_or_non_finite_freshness_is_a_value_error(tmp_path, name, value):
    with pytest.raises(ValueError) as raised:
        authstore.AuthManager(tmp_path, **{name: value})
    assert name in str(raised.value)


def test_a_huge_refresh_window_makes_every_token_stale_without_failing(fresh_home, authority):
    home, _ = fresh_home
    # Past the end of what a timestamp can hold: stale, not a failure.
    assert authstore.AuthManager(home, refresh_window=1e19).refresh() == "refreshed"
    assert authority.stats()["refresh_calls"] == 1


# 3. The token the caller holds.


def test_unauthorized_with_a_token_string_adopts_a_newer_token_of_the_same_account(
    fresh_home, authority
):
    home, document = fresh_home
    rejected = document["tokens"]["access_token"]
    run = subprocess.run(
        [authstore_command(), "--codex-home", str(home), "refresh", "--force"],
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert run.returncode == 0, run.stderr
    newer = on_disk(home)["tokens"]["access_token"]
    # A manager that never read the store, given only the string the request carried.
    adopted = authstore.AuthManager(home).unauthorized(rejected)
    expect(adopted.access_token == newer, "the newer token on disk was not adopted")
    assert adopted.account_id == "acct-py"
    assert authority.stats()["refresh_calls"] == 1  # the command's; none for the 401


def test_unauthorized_with_the_token_still_stored_refreshes_once(fresh_home, authority):
    home, document = fresh_home
    rejected = document["tokens"]["access_token"]
    manager = authstore.AuthManager(home)
    recovered = manager.unauthorized(rejected)
    expect(recovered.access_token != rejected, "the rejected token came back")
    expect(recovered.access_token == on_disk(home)["tokens"]["access_token"], "not on disk")
    assert authority.stats()["refresh_calls"] == 1
    # The same rejection again: the store moved on, so no second refresh.
    again = manager.unauthorized(rejected)
    expect(again.access_token == recovered.access_token, "not the recovered token")
    assert authority.stats()["refresh_calls"] == 1


@pytest.mark.parametrize(
    "account,user", [("acct-other", "user-other"), ("acct-py", "user-other")]
)
def test_unauthorized_with_a_token_string_refuses_another_identitys_login(
    fresh_home, authority, account, user
):
    home, document = fresh_home
    rejected = document["tokens"]["access_token"]
    # Another account (or another user of the same account) logs in meanwhile.
    write_auth(home, authority.login_document(account=account, user=user))
    before = (home / "auth.json").read_bytes()
    with pytest.raises(authstore.ReloginRequired) as raised:
        authstore.AuthManager(home).unauthorized(rejected)
    assert raised.value.reason == "identity_changed"
    assert raised.value.kind == "relogin_required"
    assert (home / "auth.json").read_bytes() == before
    assert authority.stats()["refresh_calls"] == 0
    for text in (str(raised.value), repr(raised.value)):
        expect(rejected not in text, "the rejected token is in the error")


def test_unauthorized_with_an_opaque_token_and_its_account(tmp_path, authority):
    document = authority.login_document()
    document["tokens"]["access_token"] = "opaque-token-of-acct-py"
    write_auth(tmp_path, document)
    manager = authstore.AuthManager(tmp_path)
    # Another account named: refused, nothing spent.
    with pytest.raises(authstore.ReloginRequired) as raised:
        manager.unauthorized("opaque-token-of-acct-py", account_id="acct-other")
    assert raised.value.reason == "identity_changed"
    assert authority.stats()["refresh_calls"] == 0
    # Its own account, the token still stored: refreshed.
    manager = authstore.AuthManager(tmp_path)
    recovered = manager.unauthorized("opaque-token-of-acct-py", account_id="acct-py")
    assert recovered.account_id == "acct-py"
    assert authority.stats()["refresh_calls"] == 1


def test_unauthorized_refuses_what_it_cannot_use(fresh_home):
    home, document = fresh_home
    manager = authstore.AuthManager(home)
    credentials = manager.credentials()
    with pytest.raises(ValueError):
        manager.unauthorized(credentials, account_id="acct-py")
    with pytest.raises(ValueError):  # the token's own claims name acct-py
        manager.unauthorized(document["tokens"]["access_token"], account_id="acct-other")
    with pytest.raises(ValueError):
        manager.unauthorized("")
    with pytest.raises(TypeError):
        manager.unauthorized(42)


def test_credentials_show_who_they_are_never_a_secret(fresh_home):
    home, document = fresh_home
    credentials = authstore.AuthManager(home).credentials()
    assert credentials.email == "user-py@example.com"
    assert credentials.plan_type == "plus"
    assert credentials.user_id == "user-py"
    assert credentials.account_id == "acct-py"
    assert not hasattr(credentials, "refresh_token")
    assert not hasattr(credentials, "id_token")
    for text in (repr(credentials), str(credentials)):
        for secret in tokens_of(document):
            expect(secret not in text, "a token in the repr of Credentials")


def test_aio_unauthorized_takes_a_token_string_and_its_account(fresh_home, authority):
    import asyncio

    import authstore.aio

    home, document = fresh_home
    rejected = document["tokens"]["access_token"]
    manager = authstore.AuthManager(home)
    recovered = asyncio.run(authstore.aio.unauthorized(manager, rejected, account_id="acct-py"))
    expect(recovered.access_token != rejected, "the rejected token came back")
    assert recovered.account_id == "acct-py"
    assert authority.stats()["refresh_calls"] == 1


# 4. Python's own exception classes.


def test_a_lock_held_by_another_process_is_a_timeout_error(stale_home, lock_holder):
    home, document = stale_home
    lock_holder(home)
    manager = authstore.AuthManager(home, lock_timeout=0.3)
    try:
        manager.token()
    except TimeoutError as error:
        caught = error
    else:
        pytest.fail("no TimeoutError")
    assert isinstance(caught, authstore.Unavailable)
    assert isinstance(caught, authstore.LockTimeout)
    assert caught.kind == "lock_timeout"
    assert str(home / "auth.lock") in str(caught)
    for secret in tokens_of(document):
        expect(secret not in str(caught), "a token in the error")


def test_an_unreachable_token_endpoint_is_a_connection_error(stale_home):
    home, document = stale_home
    manager = authstore.AuthManager(home, token_url=f"http://127.0.0.1:{closed_port()}/oauth/token")
    try:
        manager.token()
    except ConnectionError as error:
        caught = error
    else:
        pytest.fail("no ConnectionError")
    assert isinstance(caught, authstore.Unavailable)
    assert isinstance(caught, authstore.Unreachable)
    assert not isinstance(caught, TimeoutError)
    assert caught.kind == "transient"
    for secret in tokens_of(document):
        expect(secret not in str(caught), "a token in the error")
    assert (home / "auth.json").read_text() == json.dumps(document)


def test_a_token_endpoint_that_does_not_answer_in_time_is_a_timeout_error(
    stale_home, silent_endpoint
):
    home, document = stale_home
    manager = authstore.AuthManager(home, token_url=silent_endpoint, request_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError) as raised:
        manager.token()
    assert time.monotonic() - started < BOUND
    assert isinstance(raised.value, authstore.NetworkTimeout)
    assert isinstance(raised.value, authstore.Unavailable)
    assert not isinstance(raised.value, ConnectionError)
    assert raised.value.kind == "transient"
    assert (home / "auth.json").read_text() == json.dumps(document)


def test_a_token_endpoint_that_answers_a_server_error_is_neither(tmp_path, recording_endpoint):
    """It was reached and it answered: Unavailable, but no TimeoutError or ConnectionError."""
    write_auth(tmp_path, stale(_login()))
    recording_endpoint.status = 500
    manager = authstore.AuthManager(tmp_path, token_url=recording_endpoint.token_url)
    with pytest.raises(authstore.Unavailable) as raised:
        manager.token()
    assert raised.value.kind == "transient"
    assert not isinstance(raised.value, (TimeoutError, ConnectionError))
    assert len(recording_endpoint.bodies) == 1


def test_an_invalid_file_is_a_value_error(tmp_path):
    (tmp_path / "auth.json").write_text("{not json")
    try:
        authstore.AuthManager(tmp_path).token()
    except ValueError as error:
        caught = error
    else:
        pytest.fail("no ValueError")
    assert isinstance(caught, authstore.InvalidFile)
    assert isinstance(caught, authstore.AuthstoreError)
    assert caught.kind == "invalid_file"
    assert caught.path == str(tmp_path / "auth.json")


def test_every_class_keeps_its_authstore_base():
    assert issubclass(authstore.LockTimeout, authstore.Unavailable)
    assert issubclass(authstore.NetworkTimeout, authstore.Unavailable)
    assert issubclass(authstore.Unreachable, authstore.Unavailable)
    assert issubclass(authstore.Unavailable, authstore.AuthstoreError)
    assert issubclass(authstore.InvalidFile, authstore.AuthstoreError)
    assert issubclass(authstore.InvalidFile, ValueError)
    assert not issubclass(authstore.Unavailable, (TimeoutError, ConnectionError))
    for name in ("LockTimeout", "NetworkTimeout", "Unreachable", "InvalidFile"):
        assert getattr(authstore, name).__module__ == "authstore"


# 5. The path of auth.json as well as its home.


def test_the_path_of_auth_json_names_its_home(stale_home, authority):
    home, _ = stale_home
    manager = authstore.AuthManager(home / "auth.json")
    assert manager.location == str(home / "auth.json")
    token = manager.token()
    expect(token == on_disk(home)["tokens"]["access_token"], "not the refreshed token")
    assert authority.stats()["refresh_calls"] == 1
    # Under the home's own lock, the one Codex takes.
    assert (home / "auth.lock").exists()
    assert authstore.AuthManager(home / "auth.json").status()["path"] == str(home / "auth.json")


def test_an_auth_json_path_in_a_home_yet_to_be_made_is_that_home(tmp_path, authority):
    manager = authstore.AuthManager(tmp_path / "new-home" / "auth.json")
    assert manager.location == str(tmp_path / "new-home" / "auth.json")
    manager.login(authority.login_document())
    assert (tmp_path / "new-home" / "auth.json").is_file()


@pytest.mark.parametrize("name", ["credentials.json", "codex-auth.json", "notes.txt"])
def test_another_file_name_is_a_value_error_saying_why(tmp_path, fresh_home, name):
    home, document = fresh_home
    other = home / name
    other.write_text(json.dumps(document))
    with pytest.raises(ValueError) as raised:
        authstore.AuthManager(other)
    message = str(raised.value)
    assert str(other) in message
    assert "auth.lock" in message and "Codex" in message
    with pytest.raises(ValueError):
        authstore.AuthManager(tmp_path / "missing" / "credentials.json")
