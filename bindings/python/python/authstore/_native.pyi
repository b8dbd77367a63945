"""Types of the extension module; everything is re-exported by ``authstore``."""

import datetime
from collections.abc import Iterator
from os import PathLike
from typing import Any, Literal, Optional, Union

HAS_KEYRING: bool
"""Whether this build has Codex's keyring store and its encrypted secrets file
(``credentials_store=``, or ``cli_auth_credentials_store`` in ``config.toml``)."""
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
    (exit code 5). Raised as :class:`LockTimeout`, :class:`NetworkTimeout` or
    :class:`Unreachable` when it is one of those."""

class InvalidFile(AuthstoreError, ValueError):
    """``auth.json`` is not a valid credentials document or cannot be read; it was left
    untouched (exit code 6). Also a ``ValueError``."""

class LockTimeout(Unavailable, TimeoutError):
    """Another process held the lock past ``lock_timeout`` (``kind == "lock_timeout"``).
    Also a ``TimeoutError``."""

class NetworkTimeout(Unavailable, TimeoutError):
    """The token endpoint (or the shared store) did not answer within ``request_timeout``
    (``kind`` ``"transient"``, or ``"store_unavailable"``). Also a ``TimeoutError``."""

class Unreachable(Unavailable, ConnectionError):
    """The token endpoint (or the shared store) could not be reached: connection refused, no
    route, no such host, TLS failed (``kind`` ``"transient"``, or ``"store_unavailable"``).
    Also a ``ConnectionError``."""

class Credentials:
    """Credentials for one request. ``repr`` and ``str`` never show a token."""

    @property
    def access_token(self) -> Optional[str]:
        """The access token (None for an API-key login)."""
    @property
    def account_id(self) -> Optional[str]:
        """The ChatGPT account id, when known."""
    @property
    def user_id(self) -> Optional[str]:
        """The ChatGPT user id (from the id token), when known."""
    @property
    def email(self) -> Optional[str]:
        """The user's email (from the id token), when known."""
    @property
    def plan_type(self) -> Optional[str]:
        """The ChatGPT plan (``plus``, ``pro``, ...; from the id token), when known."""
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

    ``codex_home``: the Codex home, or the path of its ``auth.json`` (another file name is a
    ``ValueError``: Codex's lock files are named for the home); ``None`` as the command line
    resolves it (``$CODEX_HOME``, else ``~/.codex``). ``lock_timeout``: seconds to wait for
    another process's transaction (then :class:`LockTimeout`); ``request_timeout``: seconds to
    wait for the token endpoint (then :class:`NetworkTimeout`); ``store``: a ``postgres://``
    URL of a shared store (builds with ``HAS_POSTGRES``), with ``auth.json`` as its local
    mirror, the credential under ``store_key``.

    ``token_url`` and ``client_id``: this manager's token endpoint and OAuth client id
    (``None``: ``CODEX_REFRESH_TOKEN_URL_OVERRIDE`` and ``CODEX_APP_SERVER_LOGIN_CLIENT_ID``
    when set, else Codex's); a ``token_url`` that is not an ``http(s)`` URL is a
    ``ValueError``. ``refresh_window``: seconds before the access token's ``exp`` from which it
    counts as stale (default 300); ``refresh_interval``: the age of ``last_refresh`` from which
    tokens whose ``exp`` cannot be read count as stale (default 8 days). Negative or
    non-finite seconds are a ``ValueError``.

    ``credentials_store``: where the home keeps its login, whatever
    ``cli_auth_credentials_store`` in its ``config.toml`` says: ``"file"`` (``auth.json``),
    ``"keyring"`` (the OS keyring item Codex uses, or Codex's encrypted secrets file with
    ``secret_auth_storage``), ``"auto"`` (the keyring when it holds the login and answers, else
    the file). ``None``: ``AUTHSTORE_CREDENTIALS_STORE`` when set, else as Codex chooses from
    ``config.toml`` (default ``"file"``). Another word is a ``ValueError``; a ``config.toml``
    that cannot be parsed is a ``ValueError`` naming it. A keyring that does not answer or is
    locked is :class:`Unavailable` (from the constructor or the first read), with nothing
    written.

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
        token_url: Optional[str] = None,
        client_id: Optional[str] = None,
        refresh_window: float = 300.0,
        refresh_interval: float = 691200.0,
        credentials_store: Optional[str] = None,
    ) -> None: ...
    @property
    def location(self) -> str:
        """The path of ``auth.json``, or the shared store's location (never a password)."""
    def credentials(self) -> Credentials:
        """Fresh credentials, refreshed (once across all processes) when stale."""
    def token(self) -> str:
        """A valid access token."""
    def unauthorized(
        self, rejected: Union[Credentials, str], *, account_id: Optional[str] = None
    ) -> Credentials:
        """After a request got HTTP 401, with ``rejected``: the :class:`Credentials` it was
        made with, or the access token string it sent. Adopts newer credentials of the same
        identity another process wrote meanwhile (no refresh), or refreshes. For a string, the
        identity is the token's (its JWT claims name the account and user) or ``account_id``
        (for a token without them); another account's or user's login, or one whose user
        cannot be proven the same, is refused: :class:`ReloginRequired` with reason
        ``identity_changed``, nothing written. ``ValueError`` for ``account_id`` with
        Credentials, or one that contradicts the token's claims."""
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
