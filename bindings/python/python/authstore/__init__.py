"""Share one Codex ``auth.json`` between many processes without ever reusing a rotated
refresh token.

Every change is one transaction under Codex's own lock (``auth.lock``): re-read inside it,
refreshed at most once across all processes, written atomically and durably. The blocking
calls release the GIL; one :class:`AuthManager` can be shared between threads.

>>> manager = AuthManager()                      # $CODEX_HOME, else ~/.codex
>>> requests.get(url, headers=manager.credentials().headers)   # doctest: +SKIP

Errors are :class:`AuthstoreError` subclasses: :class:`NotLoggedIn`, :class:`ReloginRequired`
(``.reason``), :class:`Unavailable` (lock timeout, network, store down) and
:class:`InvalidFile`; each message is the ``authstore`` command's, naming the path, never a
token. They are Python's classes too where one fits: a lock or endpoint that did not answer in
time is a ``TimeoutError`` (:class:`LockTimeout`, :class:`NetworkTimeout`), one that could not
be reached a ``ConnectionError`` (:class:`Unreachable`), :class:`InvalidFile` a
``ValueError``. For asyncio see :mod:`authstore.aio`; for HTTP clients, the auths of
:mod:`authstore.httpx` and :mod:`authstore.requests` (extras ``httpx`` and ``requests``).
"""

from ._native import (
    HAS_KEYRING,
    HAS_POSTGRES,
    AuthManager,
    AuthstoreError,
    Credentials,
    InvalidFile,
    LockTimeout,
    NetworkTimeout,
    NotLoggedIn,
    ReloginRequired,
    Unavailable,
    Unreachable,
    Watch,
)

__all__ = [
    "HAS_KEYRING",
    "HAS_POSTGRES",
    "AuthManager",
    "AuthstoreError",
    "Credentials",
    "InvalidFile",
    "LockTimeout",
    "NetworkTimeout",
    "NotLoggedIn",
    "ReloginRequired",
    "Unavailable",
    "Unreachable",
    "Watch",
]
