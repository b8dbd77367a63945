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
token. For asyncio see :mod:`authstore.aio`.
"""

from ._native import (
    HAS_POSTGRES,
    AuthManager,
    AuthstoreError,
    Credentials,
    InvalidFile,
    NotLoggedIn,
    ReloginRequired,
    Unavailable,
    Watch,
)

__all__ = [
    "HAS_POSTGRES",
    "AuthManager",
    "AuthstoreError",
    "Credentials",
    "InvalidFile",
    "NotLoggedIn",
    "ReloginRequired",
    "Unavailable",
    "Watch",
]
