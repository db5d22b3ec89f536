"""``transport="auto"``: picows when it can serve the connection, websockets otherwise.

The choice is made when a connection is opened, since only then is the
running backend known. picows is chosen when it is importable, the loop is
asyncio (uvloop included), every ``connect_options`` key means the same to
both transports, and the keepalive can be kept as asked (picows waits for a
pong at most one ``ping_interval``). Proxies (the ``proxy`` option, from the
environment by default) are honoured by both. Anything else
falls back to websockets, which serves every case: auto never fails where
``transport="websockets"`` would work.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from .._backend import current_backend

__all__ = ["PORTABLE_OPTIONS", "choose_transport"]

#: ``connect_options`` keys both transports take with one meaning.
PORTABLE_OPTIONS: Final = frozenset({"additional_headers"})


def choose_transport(
    requested: str,
    url: str | None,
    connect_options: Mapping[str, Any],
    ping_interval: float | None = None,
    ping_timeout: float | None = None,
) -> tuple[str, str]:
    """Resolve the ``transport`` option for a connection about to open.

    Args:
        requested: ``"auto"``, ``"websockets"`` or ``"picows"``.
        url: The URL to connect to.
        connect_options: The multiplexer's ``connect_options``.
        ping_interval: The keepalive interval.
        ping_timeout: How long a keepalive ping may wait for its pong
            (picows cannot wait longer than its interval).

    Returns:
        ``(transport, why)``: ``"websockets"`` or ``"picows"``, and a few
        words on why (for the log).
    """
    if requested != "auto":
        return requested, "as configured"
    from ._picows import picows

    if picows is None:
        return "websockets", "auto: picows is not installed (pip install 'wsmux[fast]')"
    backend = current_backend()
    if backend != "asyncio":
        return "websockets", f"auto: picows runs on asyncio only, this is {backend}"
    other = sorted(set(connect_options) - PORTABLE_OPTIONS)
    if other:
        return "websockets", f"auto: connect_options {', '.join(other)} are websockets' own"
    if ping_interval is not None and ping_timeout is not None and ping_timeout > ping_interval:
        return "websockets", "auto: picows cannot wait for a pong longer than ping_interval"
    return "picows", "auto: picows is installed and the loop is asyncio"
