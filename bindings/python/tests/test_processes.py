"""Many processes, Python and the command line, on one stale token: one refresh call at the
authority (which revokes the whole family if a spent refresh token comes back), no reuse, and
the same new token printed by every process."""

import json
import subprocess
import sys
import threading

import authstore

from conftest import BOUND, authstore_command

PYTHON_TOKEN = "import sys, authstore; print(authstore.AuthManager(sys.argv[1]).token())"


def test_16_python_and_16_cli_processes_refresh_once_and_print_one_token(stale_home, authority):
    home, document = stale_home
    processes = []
    for _ in range(16):
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", PYTHON_TOKEN, str(home)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        )
        processes.append(
            subprocess.Popen(
                [authstore_command(), "--codex-home", str(home), "token"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        )
    printed = []
    for process in processes:
        out, err = process.communicate(timeout=BOUND)
        assert process.returncode == 0, err
        printed.append(out.strip())
    stats = authority.stats()
    assert stats["refresh_calls"] == 1, stats
    assert stats["reuse_rejections"] == 0, stats
    assert stats["families_revoked"] == 0, stats
    assert len(printed) == 32
    assert len(set(printed)) == 1
    [token] = set(printed)
    assert token != document["tokens"]["access_token"]
    on_disk = json.loads((home / "auth.json").read_text())
    assert on_disk["tokens"]["access_token"] == token
    # And the token is fresh for a manager that starts now: no further refresh.
    assert authstore.AuthManager(home).token() == token
    assert authority.stats()["refresh_calls"] == 1


def test_threads_sharing_one_manager_refresh_once(stale_home, authority):
    home, _ = stale_home
    manager = authstore.AuthManager(home)
    tokens = []
    threads = [threading.Thread(target=lambda: tokens.append(manager.token())) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND)
    assert not any(thread.is_alive() for thread in threads)
    assert len(tokens) == 16 and len(set(tokens)) == 1
    assert authority.stats()["refresh_calls"] == 1
