"""The auths for HTTP clients, `authstore.httpx.CodexAuth` (sync and async) and
`authstore.requests.CodexAuth`, against a local API that accepts only live tokens it was not told
to reject: the headers, no refresh for a fresh token, one recovery and one retry (body included)
after a 401 with exactly the credentials sent, a second 401 returned as the response, an event
loop that keeps running, and 8 processes that all get a 401 for one token making one authority
call."""

import asyncio
import importlib.metadata
import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import authstore
import authstore.httpx
import authstore.requests
import httpx
import pytest
import requests

from conftest import BOUND, authstore_command, closed_port, expect, tokens_of

FLAVOURS = ["httpx", "httpx-async", "requests"]


def send(flavour, manager, method, url, **kwargs):
    """One request with the flavour's auth over `manager`; returns (status, history statuses,
    body sent)."""
    if flavour == "httpx":
        with httpx.Client(auth=authstore.httpx.CodexAuth(manager), trust_env=False) as client:
            response = client.request(method, url, timeout=BOUND, **kwargs)
    elif flavour == "httpx-async":

        async def run():
            auth = authstore.httpx.CodexAuth(manager)
            async with httpx.AsyncClient(auth=auth, trust_env=False) as client:
                return await client.request(method, url, timeout=BOUND, **kwargs)

        response = asyncio.run(run())
    else:
        session = requests.Session()
        session.trust_env = False
        session.auth = authstore.requests.CodexAuth(manager)
        response = session.request(method, url, timeout=BOUND, **kwargs)
    return response.status_code, [r.status_code for r in response.history]


def on_disk(home):
    return json.loads((home / "auth.json").read_text())["tokens"]["access_token"]


def refresh_elsewhere(home):
    """Another process (the command line) refreshes the login."""
    run = subprocess.run(
        [authstore_command(), "--codex-home", str(home), "refresh", "--force"],
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_request_carries_the_login_and_a_fresh_token_costs_no_refresh(
    flavour, fresh_home, authority, resource
):
    home, document = fresh_home
    manager = authstore.AuthManager(home)
    for _ in range(3):
        assert send(flavour, manager, "GET", resource.url) == (200, [])
    assert len(resource.requests) == 3
    for token, account, _, _ in resource.requests:
        expect(token == document["tokens"]["access_token"], "not the stored access token")
        assert account == "acct-py"
    assert authority.stats()["refresh_calls"] == 0


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_stale_token_is_refreshed_before_the_request(flavour, stale_home, authority, resource):
    home, document = stale_home
    assert send(flavour, authstore.AuthManager(home), "GET", resource.url) == (200, [])
    [(token, _, _, _)] = resource.requests
    expect(token != document["tokens"]["access_token"], "the stale token was sent")
    expect(token == on_disk(home), "not the refreshed token")
    assert authority.stats()["refresh_calls"] == 1


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_401_recovers_with_exactly_the_credentials_sent_and_retries_once_with_the_body(
    flavour, fresh_home, authority, resource
):
    """While the request is on its way another process refreshes; the API rejects the token
    the request carried. Recovering with exactly those credentials adopts the other process's
    token (no authority call of its own); recovering with the manager's current ones (the
    newer token, read again) would refresh a second time."""
    home, document = fresh_home
    sent = document["tokens"]["access_token"]
    resource.reject(sent)
    resource.on_reject = lambda token: refresh_elsewhere(home)
    manager = authstore.AuthManager(home)
    body = {"prompt": "hello", "n": 1}
    assert send(flavour, manager, "POST", resource.url, json=body) == (200, [401])
    (first, _, first_body, first_status), (second, account, second_body, status) = (
        resource.requests
    )
    assert (first_status, status) == (401, 200)
    expect(first == sent, "the first attempt did not carry the stored token")
    expect(second == on_disk(home), "the retry did not carry the other process's token")
    expect(second != sent, "the retry carried the rejected token")
    assert account == "acct-py"
    assert json.loads(first_body) == json.loads(second_body) == body
    assert authority.stats()["refresh_calls"] == 1  # the other process's only


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_second_401_is_returned_as_the_response(flavour, fresh_home, authority, resource):
    home, document = fresh_home
    resource.reject_all = True
    manager = authstore.AuthManager(home)
    payload = {"data": b"payload"} if flavour == "requests" else {"content": b"payload"}
    assert send(flavour, manager, "PUT", resource.url, **payload) == (401, [401])
    assert len(resource.requests) == 2
    (first, _, first_body, _), (second, _, second_body, _) = resource.requests
    expect(first == document["tokens"]["access_token"], "not the stored token first")
    expect(second != first, "the retry carried the rejected token")
    expect(second == on_disk(home), "the retry did not carry the refreshed token")
    assert first_body == second_body == b"payload"
    assert authority.stats()["refresh_calls"] == 1  # the one recovery, not one per 401


def test_requests_sends_a_file_body_again_from_where_it_started(fresh_home, authority, resource):
    home, document = fresh_home
    resource.reject(document["tokens"]["access_token"])
    body = io.BytesIO(b"skip:the body")
    body.seek(5)
    session = requests.Session()
    session.trust_env = False
    session.auth = authstore.requests.CodexAuth(authstore.AuthManager(home))
    response = session.post(resource.url, data=body, timeout=BOUND)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert [b for _, _, b, _ in resource.requests] == [b"the body", b"the body"]


def test_requests_returns_the_401_for_a_body_it_cannot_send_again(
    fresh_home, authority, resource
):
    home, document = fresh_home
    resource.reject(document["tokens"]["access_token"])
    session = requests.Session()
    session.trust_env = False
    session.auth = authstore.requests.CodexAuth(authstore.AuthManager(home))
    chunks = (chunk for chunk in [b"once ", b"only"])
    response = session.post(resource.url, data=chunks, timeout=BOUND)
    assert response.status_code == 401
    assert len(resource.requests) == 1
    # The recovery was made: the next request carries the new token.
    assert authority.stats()["refresh_calls"] == 1
    assert session.get(resource.url, timeout=BOUND).status_code == 200
    expect(resource.requests[-1][0] == on_disk(home), "not the recovered token")


def test_an_authstore_error_is_raised_from_the_request(stale_home, resource):
    home, _ = stale_home
    manager = authstore.AuthManager(home, token_url=f"http://127.0.0.1:{closed_port()}/t")
    for flavour in FLAVOURS:
        with pytest.raises(authstore.Unreachable):
            send(flavour, manager, "GET", resource.url)
    assert resource.requests == []


def test_the_async_auth_never_blocks_the_event_loop(stale_home, authority, resource, lock_holder):
    """With the lock held by another process, the auth waits for it in a worker thread: the
    loop keeps running other tasks meanwhile, and the request completes once the lock is
    released. A blocking call on the loop would starve the ticker until the lock timeout."""
    home, _ = stale_home
    holder = lock_holder(home)
    manager = authstore.AuthManager(home, lock_timeout=10)
    inode = (home / "auth.lock").stat().st_ino

    def someone_waits_for_the_lock():
        with open("/proc/locks") as locks:
            return any("->" in line and f":{inode} " in line for line in locks)

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        auth = authstore.httpx.CodexAuth(manager)
        async with httpx.AsyncClient(auth=auth, trust_env=False) as client:
            request = asyncio.create_task(client.get(resource.url, timeout=BOUND))
            deadline = time.monotonic() + BOUND
            while not someone_waits_for_the_lock() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            waiting = someone_waits_for_the_lock()
            before = ticks
            await asyncio.sleep(0.5)
            ticked = ticks - before
            still_pending = not request.done()
            await asyncio.to_thread(holder.release)
            response = await request
        ticking.cancel()
        return waiting, ticked, still_pending, response.status_code

    waiting, ticked, still_pending, status = asyncio.run(main())
    assert waiting, "the auth never waited for the lock"
    assert still_pending, "the request finished while the lock was held"
    assert ticked >= 10, f"the event loop ran {ticked} ticks in 0.5 s while the auth waited"
    assert status == 200
    assert authority.stats()["refresh_calls"] == 1


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_8_processes_whose_requests_all_get_a_401_for_one_token_make_one_authority_call(
    flavour, fresh_home, authority, resource
):
    home, document = fresh_home
    rejected = document["tokens"]["access_token"]
    resource.reject(rejected)
    # No 401 is answered before all 8 requests arrived: all 8 carried the rejected token.
    resource.hold_rejections(8)
    worker = str(Path(__file__).with_name("http_worker.py"))
    processes = [
        subprocess.Popen(
            [sys.executable, worker, flavour, str(home), resource.url, str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for n in range(8)
    ]
    for process in processes:
        out, err = process.communicate(timeout=BOUND)
        assert process.returncode == 0, err
        assert json.loads(out) == {"status": 200, "history": [401]}
    stats = authority.stats()
    assert stats["refresh_calls"] == 1, stats
    assert stats["reuse_rejections"] == 0, stats
    assert stats["families_revoked"] == 0, stats
    new = on_disk(home)
    statuses = [status for *_, status in resource.requests]
    assert sorted(statuses) == [200] * 8 + [401] * 8
    rejected_requests = [r for r in resource.requests if r[3] == 401]
    retried = [r for r in resource.requests if r[3] == 200]
    expect(all(token == rejected for token, *_ in rejected_requests), "a first try differed")
    expect(all(token == new for token, *_ in retried), "a retry did not carry the new token")
    expect(new != rejected, "the store still holds the rejected token")
    workers = sorted(json.loads(body)["worker"] for _, _, body, _ in retried)
    assert workers == list(range(8))  # every retry with its own body


def test_the_auths_show_no_token_and_take_only_a_manager(fresh_home):
    home, document = fresh_home
    manager = authstore.AuthManager(home)
    manager.token()
    for auth in (authstore.httpx.CodexAuth(manager), authstore.requests.CodexAuth(manager)):
        assert auth.manager is manager
        for secret in tokens_of(document):
            expect(secret not in repr(auth), "a token in the auth's repr")
    for module in (authstore.httpx, authstore.requests):
        with pytest.raises(TypeError):
            module.CodexAuth("not a manager")


def test_the_core_package_depends_on_nothing_and_the_auths_are_extras():
    requirements = importlib.metadata.requires("authstore") or []
    assert requirements, "the extras are not declared"
    for requirement in requirements:
        assert "extra ==" in requirement, requirement
    extras = importlib.metadata.metadata("authstore").get_all("Provides-Extra")
    assert {"httpx", "requests"} <= set(extras)
    package = Path(authstore.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "httpx.py").is_file() and (package / "requests.py").is_file()


def test_importing_authstore_imports_no_http_client():
    code = "import sys, authstore; print(sorted({'httpx', 'requests'} & set(sys.modules)))"
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=BOUND
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_threads_sharing_one_auth_refresh_once(stale_home, authority, resource):
    home, _ = stale_home
    auth = authstore.httpx.CodexAuth(authstore.AuthManager(home))
    statuses = []

    def one():
        with httpx.Client(auth=auth, trust_env=False) as client:
            statuses.append(client.get(resource.url, timeout=BOUND).status_code)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND)
    assert statuses == [200] * 8
    assert authority.stats()["refresh_calls"] == 1


def test_the_readme_example_runs_as_written(fresh_home, authority, resource):
    """The package README's complete httpx program, pointed at this home and this API."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    after = readme.split("A complete program that calls an API with `httpx`:", 1)[1]
    program = after.split("```python\n", 1)[1].split("```", 1)[0]
    home, document = fresh_home
    assert 'Path.home() / ".codex" / "auth.json"' in program
    assert '"https://api.example.com"' in program
    assert "httpx.Client(auth=auth," in program
    program = program.replace('Path.home() / ".codex" / "auth.json"', repr(str(home / "auth.json")))
    program = program.replace('"https://api.example.com"', repr(resource.url.rsplit("/", 1)[0]))
    program = program.replace("httpx.Client(auth=auth,", "httpx.Client(auth=auth, trust_env=False,")
    resource.reject(document["tokens"]["access_token"])
    run = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=BOUND
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "200 {'ok': True}"
    assert [status for *_, status in resource.requests] == [401, 200]
    assert authority.stats()["refresh_calls"] == 1
