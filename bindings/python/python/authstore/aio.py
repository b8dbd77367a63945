"""asyncio: the same calls, run in a worker thread so that the event loop keeps running.

The blocking calls release the GIL, so a thread waiting for the lock or the token endpoint
does not slow the loop down. ``await authstore.aio.token(manager)`` is
``await asyncio.to_thread(manager.token)``; the functions here only name that.
"""

import asyncio
from typing import Any, Callable, Optional, TypeVar, Union

from . import AuthManager, Credentials

__all__ = ["credentials", "token", "unauthorized", "refresh"]

_T = TypeVar("_T")


async def _run(function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    return await asyncio.to_thread(function, *args, **kwargs)


async def credentials(manager: AuthManager) -> Credentials:
    """:meth:`AuthManager.credentials` without blocking the event loop."""
    return await _run(manager.credentials)


async def token(manager: AuthManager) -> str:
    """:meth:`AuthManager.token` without blocking the event loop."""
    return await _run(manager.token)


async def unauthorized(
    manager: AuthManager,
    rejected: Union[Credentials, str],
    *,
    account_id: Optional[str] = None,
) -> Credentials:
    """:meth:`AuthManager.unauthorized` without blocking the event loop."""
    if account_id is None:
        return await _run(manager.unauthorized, rejected)
    return await _run(manager.unauthorized, rejected, account_id=account_id)


async def refresh(manager: AuthManager, force: bool = False) -> str:
    """:meth:`AuthManager.refresh` without blocking the event loop."""
    return await _run(manager.refresh, force)
