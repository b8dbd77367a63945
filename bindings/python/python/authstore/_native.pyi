"""Types of the extension module; everything is re-exported by ``authstore``."""

import datetime
from collections.abc import Iterator
from os import PathLike
from typing import Any, Literal, Optional, Union

HAS_POSTGRES: bool
"""Whether this build has the shared PostgreSQL store (``store=``)."""

class AuthstoreError(Exception):
    """Base class of authstore's errors. The message is the ``authstore`` command's: what
    happened, the path, what to do; never a token."""

    kind: str
    """``not_logged_in``, ``relogin_required``, ``lock_timeout``, ``transient``,
    ``store_unavailable``, ``invalid_file``, ``unreadable``, ``lock_unsupported`` or ``other``."""
    path: Optional[str]
    """The file the error concerns, when it is one."""
    reason: Optional[str]

class NotLoggedIn(AuthstoreError):
    """No credentials in the store (the command's exit code 3)."""

class ReloginRequired(AuthstoreError):
    """The credentials can no longer be refreshed; the user must log in again (exit code 4)."""

    reason: str
    """``expired``, ``reused``, ``revoked``, ``rejected`` or ``identity_changed``."""

class Unavailable(AuthstoreError):
    """Try again later: lock timeout, token authority unreachable, shared store down
    (exit code 5)."""

class InvalidFile(AuthstoreError):
    """``auth.json`` is not a valid credentials document or cannot be read; it was left
    untouched (exit code 6)."""

class Credentials:
    """Credentials for one request. ``repr`` and ``str`` never show a token."""

    @property
    def access_token(self) -> Optional[str]:
        """The access token (None for an API-key login)."""
    @property
    def account_id(self) -> Optional[str]:
        """The ChatGPT account id, when known."""
    @property
    def expires_at(self) -> Optional[datetime.datetime]:
        """When the access token expires (an aware UTC datetime), when known."""
    @property
    def headers(self) -> dict[str, str]:
        """``Authorization: Bearer ...``, and ``ChatGPT-Account-Id`` when the account is known."""

class Watch(Iterator[dict[str, Any]]):
    """Events of :meth:`AuthManager.watch`."""

    def __iter__(self) -> "Watch": ...
    def __next__(self) -> dict[str, Any]: ...

class AuthManager:
    """Credentials from the Codex home's ``auth.json``, shared safely with every other process.

    ``codex_home`` as the command line resolves it (``$CODEX_HOME``, else ``~/.codex``);
    ``lock_timeout``: seconds to wait for another process's transaction (then
    :class:`Unavailable`); ``request_timeout``: seconds to wait for the token endpoint;
    ``store``: a ``postgres://`` URL of a shared store (builds with ``HAS_POSTGRES``), with
    ``auth.json`` as its local mirror, the credential under ``store_key``.

    Every call blocks with the GIL released; one manager can be shared between threads, not
    across ``fork`` (a child makes its own; the parent's fails there with AuthstoreError).
    """

    def __init__(
        self,
        codex_home: Union[str, "PathLike[str]", None] = None,
        *,
        lock_timeout: float = 60.0,
        request_timeout: float = 20.0,
        store: Optional[str] = None,
        store_key: str = "default",
    ) -> None: ...
    @property
    def location(self) -> str:
        """The path of ``auth.json``, or the shared store's location (never a password)."""
    def credentials(self) -> Credentials:
        """Fresh credentials, refreshed (once across all processes) when stale."""
    def token(self) -> str:
        """A valid access token."""
    def unauthorized(self, credentials: Credentials) -> Credentials:
        """After a request made with ``credentials`` got HTTP 401: adopts the credentials
        another process wrote meanwhile, or refreshes."""
    def refresh(self, force: bool = False) -> Literal["refreshed", "adopted", "fresh"]:
        """Refreshes when stale, or now with ``force``; says what happened."""
    def login(self, document: Union[dict[str, Any], str, bytes]) -> Credentials:
        """Installs an ``auth.json`` document under the lock. ``ValueError`` when it is not
        one."""
    def logout(self, revoke: bool = False) -> bool:
        """Removes ``auth.json`` under the lock (with ``revoke``, also revokes the refresh
        token, best effort). Returns whether there was anything to remove."""
    def status(self) -> dict[str, Any]:
        """What ``authstore status --json`` prints (never a secret)."""
    def watch(self, timeout: Optional[float] = None) -> Watch:
        """One dict per change any process makes (as ``authstore watch --json``); with
        ``timeout``, ends after that many seconds without a change."""

def run_cli(argv: list[str], executable: Optional[str] = None) -> int: ...
