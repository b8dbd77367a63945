"""One client process of the multi-process tests: `python http_worker.py FLAVOUR HOME URL N`
sends one POST (body {"worker": N}) to URL with the auth of FLAVOUR (httpx, httpx-async,
requests) over the Codex home HOME, and prints {"status", "history"} (never a token)."""

import asyncio
import json
import sys

import authstore
import authstore.httpx
import authstore.requests
import httpx
import requests


def main(flavour, home, url, index):
    auth_manager = authstore.AuthManager(home)
    body = {"worker": index}
    if flavour == "httpx":
        with httpx.Client(auth=authstore.httpx.CodexAuth(auth_manager), trust_env=False) as client:
            response = client.post(url, json=body, timeout=60)
        history = [r.status_code for r in response.history]
    elif flavour == "httpx-async":
        async def send():
            auth = authstore.httpx.CodexAuth(auth_manager)
            async with httpx.AsyncClient(auth=auth, trust_env=False) as client:
                return await client.post(url, json=body, timeout=60)

        response = asyncio.run(send())
        history = [r.status_code for r in response.history]
    elif flavour == "requests":
        session = requests.Session()
        session.trust_env = False
        session.auth = authstore.requests.CodexAuth(auth_manager)
        response = session.post(url, json=body, timeout=60)
        history = [r.status_code for r in response.history]
    else:
        raise SystemExit(f"unknown flavour {flavour}")
    print(json.dumps({"status": response.status_code, "history": history}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
