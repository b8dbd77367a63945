"""``requests`` authentication with the Codex login: ``authstore.requests.CodexAuth(manager)``.

Install with ``pip install 'authstore[requests]'``. Hand the auth to a session or a request::

    import requests, authstore, authstore.requests

    session = requests.Session()
    session.auth = authstore.requests.CodexAuth(authstore.AuthManager())
    session.get("https://chatgpt.com/backend-api/...")

Every request gets ``Authorization`` and ``ChatGPT-Account-Id`` from
:meth:`AuthManager.credentials <authstore.AuthManager.credentials>` (a fresh token costs no
refresh; a stale one is refreshed once across every process). On a ``401`` the auth calls
:meth:`AuthManager.unauthorized <authstore.AuthManager.unauthorized>` with exactly the
credentials that request carried, then sends the request once more, body included, with what
it returned (the ``401`` is in the new response's ``history``); a second ``401`` is returned to
the caller as the response, not raised. A body that cannot be sent twice (a generator) is not
resent: the ``401`` is returned, after the recovery, so that the next request has the new
credentials. An authstore error (:class:`authstore.ReloginRequired`, ...) is raised from the
request.
"""

from __future__ import annotations

import io
from typing import Any, Callable, Optional, cast

from requests.auth import AuthBase
from requests.cookies import extract_cookies_to_jar
from requests.models import PreparedRequest, Response

from . import AuthManager, Credentials

__all__ = ["CodexAuth"]

#: The headers the auth sets; removed first, so that a header the new credentials lack (an
#: unknown account) is not left from the old ones.
_HEADERS = ("Authorization", "ChatGPT-Account-Id")


def _apply(request: PreparedRequest, credentials: Credentials) -> None:
    for name in _HEADERS:
        request.headers.pop(name, None)
    request.headers.update(credentials.headers)


def _body_position(body: Any) -> Optional[int]:
    """Where a file-like body starts, so that it can be sent again; ``None`` for a body that
    is sent whole each time (bytes, str, nothing)."""
    if body is None or isinstance(body, (bytes, str)):
        return None
    try:
        position = body.tell()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None
    return position if isinstance(position, int) else None


def _can_resend(body: Any) -> bool:
    if body is None or isinstance(body, (bytes, bytearray, str)):
        return True
    return callable(getattr(body, "seek", None))


class CodexAuth(AuthBase):
    """A :class:`requests.auth.AuthBase` that sends the Codex login of ``manager`` with every
    request, and recovers once from a ``401``. One auth may serve many sessions and threads."""

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

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        credentials = self._manager.credentials()
        _apply(request, credentials)
        hook = self._on_response(credentials, _body_position(request.body))
        request.register_hook("response", hook)
        return request

    def _on_response(
        self, credentials: Credentials, position: Optional[int]
    ) -> Callable[..., Response]:
        """The response hook of one request: it holds the credentials that request carried."""

        def retry_once(response: Response, **kwargs: Any) -> Response:
            request = response.request
            if response.status_code != 401 or request is None:
                return response
            # The copy sent below must not retry again.
            request.deregister_hook("response", retry_once)
            recovered = self._manager.unauthorized(credentials)
            if not _can_resend(request.body):
                return response
            # As requests' own HTTPDigestAuth retries: consume and release the 401, send a
            # copy with the new headers (and the cookies the 401 set) on the same adapter.
            response.content
            response.close()
            retry = request.copy()
            if position is not None:
                cast(Any, retry.body).seek(position)
            _apply(retry, recovered)
            if response.raw is not None and retry._cookies is not None:
                extract_cookies_to_jar(retry._cookies, request, response.raw)
                retry.prepare_cookies(retry._cookies)
            answer = response.connection.send(retry, **kwargs)
            answer.history.append(response)
            answer.request = retry
            return answer

        return retry_once

    def __repr__(self) -> str:
        return f"CodexAuth({self._manager!r})"
