"""``httpx`` authentication with the Codex login: ``authstore.httpx.CodexAuth(manager)``.

Install with ``pip install 'authstore[httpx]'``. Hand the auth to a client, sync or async::

    import httpx, authstore, authstore.httpx

    auth = authstore.httpx.CodexAuth(authstore.AuthManager())
    with httpx.Client(auth=auth) as client:
        client.get("https://chatgpt.com/backend-api/...")

Every request gets ``Authorization`` and ``ChatGPT-Account-Id`` from
:meth:`AuthManager.credentials <authstore.AuthManager.credentials>` (a fresh token costs no
refresh; a stale one is refreshed once across every process). On a ``401`` the auth calls
:meth:`AuthManager.unauthorized <authstore.AuthManager.unauthorized>` with exactly the
credentials that request carried, then sends the request once more, body included, with what
it returned; a second ``401`` is returned to the caller as the response, not raised. An
authstore error (:class:`authstore.ReloginRequired`, :class:`authstore.Unavailable`, ...) is
raised from the request.

With :class:`httpx.AsyncClient` the manager's blocking calls run in a worker thread
(``asyncio.to_thread``, as :mod:`authstore.aio` does, or ``anyio.to_thread`` under
another event loop), so the
event loop never waits for the lock or the token endpoint.
"""

from __future__ import annotations

import asyncio
import functools
from typing import AsyncGenerator, Callable, Generator, TypeVar

import httpx

from . import AuthManager, Credentials

__all__ = ["CodexAuth"]

_T = TypeVar("_T")

#: The headers the auth sets; removed first, so that a header the new credentials lack (an
#: unknown account) is not left from the old ones.
_HEADERS = ("Authorization", "ChatGPT-Account-Id")


def _apply(request: httpx.Request, credentials: Credentials) -> None:
    for name in _HEADERS:
        request.headers.pop(name, None)
    request.headers.update(credentials.headers)


async def _in_thread(function: Callable[[], _T]) -> _T:
    """``function()`` in a worker thread, on whichever event loop runs httpx."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        # Not asyncio (trio): httpx's own async library runs it.
        import anyio.to_thread

        return await anyio.to_thread.run_sync(function)
    return await asyncio.to_thread(function)


class CodexAuth(httpx.Auth):
    """An :class:`httpx.Auth` that sends the Codex login of ``manager`` with every request,
    and recovers once from a ``401``. For :class:`httpx.Client` and
    :class:`httpx.AsyncClient` alike; one auth may serve many clients and threads."""

    # The body is read before the first attempt, so that the retry can send it again.
    requires_request_body = True

    def __init__(self, manager: AuthManager) -> None:
        if not isinstance(manager, AuthManager):
            raise TypeError(
                f"CodexAuth takes an authstore.AuthManager, not {type(manager).__name__}"
            )
        self._manager = manager

    @property
    def manager(self) -> AuthManager:
        """The manager whose credentials are sent."""
        return self._manager

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        request.read()
        credentials = self._manager.credentials()
        _apply(request, credentials)
        response = yield request
        if response.status_code == 401:
            _apply(request, self._manager.unauthorized(credentials))
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        credentials = await _in_thread(self._manager.credentials)
        _apply(request, credentials)
        response = yield request
        if response.status_code == 401:
            unauthorized = functools.partial(self._manager.unauthorized, credentials)
            recovered = await _in_thread(unauthorized)
            _apply(request, recovered)
            yield request

    def __repr__(self) -> str:
        return f"CodexAuth({self._manager!r})"
