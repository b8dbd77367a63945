"""Python processes and the command line whose token URL is the home's broker (`authstore
broker`, the URL a session gets from `agent install --broker`): they hold `auth.lock` while they
refresh, so the broker forwards their request instead of waiting for that lock; together they
make one authority call, and nobody waits for a lock timeout (a short one would fail them)."""

import json
import signal
import subprocess
import sys

from conftest import BOUND, _read_line, authstore_command

#: The request timeout (5 s) is longer than this lock timeout: a process whose refresh waited
#: on the broker while the broker waited on its lock would fail with a lock timeout or a
#: timed-out request, either of which is an error here.
PYTHON_TOKEN = (
    "import sys, authstore\n"
    "manager = authstore.AuthManager(sys.argv[1], token_url=sys.argv[2], lock_timeout=4,"
    " request_timeout=5)\n"
    "print(manager.token())\n"
)


def test_python_and_cli_processes_pointed_at_the_broker_refresh_once_without_waiting(
    stale_home, authority
):
    home, document = stale_home
    broker = subprocess.Popen(
        [
            authstore_command(),
            "--codex-home",
            str(home),
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            authority.token_url,
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = _read_line(broker.stdout, BOUND)
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        processes = []
        for _ in range(8):
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", PYTHON_TOKEN, str(home), url],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                    text=True,
                )
            )
            processes.append(
                subprocess.Popen(
                    [
                        authstore_command(),
                        "--codex-home",
                        str(home),
                        "--lock-timeout",
                        "4",
                        "--request-timeout",
                        "5",
                        "token",
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    env={"CODEX_REFRESH_TOKEN_URL_OVERRIDE": url, "PATH": "/usr/bin:/bin"},
                )
            )
        printed = []
        for process in processes:
            out, err = process.communicate(timeout=BOUND)
            assert process.returncode == 0, err
            printed.append(out.strip())
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=BOUND)
    stats = authority.stats()
    assert stats["refresh_calls"] == 1, stats
    assert stats["reuse_rejections"] == 0, stats
    on_disk = json.loads((home / "auth.json").read_text())
    assert set(printed) == {on_disk["tokens"]["access_token"]}
    assert on_disk["tokens"]["access_token"] != document["tokens"]["access_token"]
