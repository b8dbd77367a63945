"""An installed wheel's Python API against the embedded token authority (scripts/dist-tests.sh).

    python python_api.py CODEX_HOME AUTHORITY_BASE_URL

The home holds a login whose access token is inside the refresh window: one call of
credentials() must refresh it exactly once at the authority, store the new tokens in auth.json
and hand out the new access token. Failure messages name what differed, never a token.
"""

import hashlib
import json
import sys
import urllib.request
from pathlib import Path

import authstore


def stats(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/sim/stats", timeout=10) as answer:
        return json.load(answer)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def main() -> None:
    home, base = Path(sys.argv[1]), sys.argv[2].rstrip("/")
    before_doc = json.loads((home / "auth.json").read_text())
    before = stats(base)
    manager = authstore.AuthManager(home, token_url=f"{base}/oauth/token")
    credentials = manager.credentials()
    after = stats(base)
    after_doc = json.loads((home / "auth.json").read_text())

    calls = after["refresh_calls"] - before["refresh_calls"]
    assert calls == 1, f"expected 1 refresh call at the authority, saw {calls}"
    assert after["reuse_rejections"] == before["reuse_rejections"], "a refresh token was reused"
    old, new = before_doc["tokens"], after_doc["tokens"]
    assert digest(new["refresh_token"]) != digest(old["refresh_token"]), "auth.json kept the old refresh token"
    assert digest(credentials.access_token) == digest(new["access_token"]), (
        "credentials() handed out another access token than auth.json holds"
    )
    assert credentials.headers["Authorization"] == f"Bearer {credentials.access_token}", "wrong Authorization header"
    assert repr(credentials).find(credentials.access_token) < 0, "repr(credentials) shows the token"
    print(f"python API: one refresh, access token {digest(old['access_token'])}… -> {digest(new['access_token'])}…")


if __name__ == "__main__":
    main()
