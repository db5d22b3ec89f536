"""Handlers: sync ones called inline, async ones fed by a stream of their own.

The hub registers and starts handlers; this module holds what runs them and
what reports their mistakes: an exception, a lag, or a plain function that
returns a coroutine (``lambda m: process(m)`` for an async ``process``).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from types import CoroutineType
from typing import Any, TypeAlias

from .._exceptions import StreamLagged
from .._log import RateLimitedLog
from ._stream import Stream

__all__ = [
    "Handler",
    "HandlerErrors",
    "SyncHandler",
    "feed_handler",
    "handler_name",
    "is_async_callable",
]

Handler: TypeAlias = Callable[[Any], "Awaitable[object] | object"]


def is_async_callable(fn: object) -> bool:
    """Tell whether calling ``fn`` gives a coroutine to await.

    True for coroutine functions, bound async methods, ``functools.partial``
    of them, and objects whose ``__call__`` is a coroutine function.

    Args:
        fn: A callable.

    Returns:
        True when ``fn`` is an async callable.
    """
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    )


def handler_name(fn: object) -> str:
    """A handler's qualified name for log lines, stream names and metrics labels.

    Never its repr: a ``functools.partial`` shows its arguments there (a
    client, a URL with a listen key) and any object its address. A partial,
    or a wrapper with ``__wrapped__``, is named after the function it wraps;
    an object after its class.
    """
    for _ in range(8):  # wrappers of wrappers, never a cycle
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif getattr(fn, "__wrapped__", None) is not None:
            fn = fn.__wrapped__  # type: ignore[attr-defined]
        else:
            break
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else type(fn).__qualname__


class HandlerErrors:
    """Counts and logs (rate-limited) what went wrong in handlers."""

    __slots__ = ("_lag_log", "_log", "count")

    def __init__(self) -> None:
        self._log = RateLimitedLog(logging.ERROR)
        self._lag_log = RateLimitedLog(logging.WARNING)
        #: Exceptions raised, and coroutines returned by sync handlers.
        self.count = 0

    def raised(self, fn: Handler, exc: Exception) -> None:
        """Record a handler's exception."""
        self.count += 1
        self._log("handler %s raised %r", handler_name(fn), exc, exc_info=exc)

    def returned_coroutine(self, fn: Handler, coro: Coroutine[Any, Any, Any]) -> None:
        """Close and record a coroutine that a sync handler returned."""
        # Nothing would ever run it, and Python's "never awaited" warning
        # names no handler.
        coro.close()
        self.count += 1
        self._log(
            "handler %s returned a coroutine (%s), which was not run: pass the async"
            " function itself to add_handler, not a function that calls it",
            handler_name(fn),
            getattr(coro, "__qualname__", "?"),
        )

    def lagged(self, fn: Handler, lost: int) -> None:
        """Record messages an async handler lost to overflow (not an error)."""
        self._lag_log("async handler %s lagged: %d message(s) lost", handler_name(fn), lost)


class SyncHandler:
    """A plain function called inline by the publisher, as a hub target."""

    __slots__ = ("_errors", "_multi", "_stamp", "fn")

    def __init__(self, fn: Handler, errors: HandlerErrors) -> None:
        self.fn = fn
        self._errors = errors
        self._stamp = 0
        self._multi = False

    def __repr__(self) -> str:
        return f"<handler {handler_name(self.fn)}>"

    def _put(self, msg: Any) -> None:
        try:
            result = self.fn(msg)
        except Exception as exc:
            self._errors.raised(self.fn, exc)
            return
        if result is not None and result.__class__ is CoroutineType:
            self._errors.returned_coroutine(self.fn, result)


async def feed_handler(fn: Handler, stream: Stream, errors: HandlerErrors) -> None:
    """Call an async handler with each message of its stream, until it ends.

    Args:
        fn: The coroutine function.
        stream: The handler's own stream.
        errors: Where exceptions and lags are reported.
    """
    while True:
        try:
            msg = await stream.receive()
        except StreamLagged as exc:
            errors.lagged(fn, exc.count)
            continue
        except Exception:
            return  # end of stream, closed, or the hub's fatal error
        try:
            await fn(msg)  # type: ignore[misc]
        except Exception as exc:
            errors.raised(fn, exc)


def decorator(
    add: Callable[..., None], filters: Any, options: dict[str, Any]
) -> Callable[[Any], Any]:
    """The body of every ``on()``: a decorator that adds a handler and returns it.

    Args:
        add: The owner's ``add_handler``.
        filters: The filters to pass on.
        options: Further ``add_handler`` options.

    Returns:
        A decorator that calls ``add(fn, filters, **options)`` and returns ``fn``.
    """

    def decorate(fn: Any) -> Any:
        add(fn, filters, **options)
        return fn

    return decorate
