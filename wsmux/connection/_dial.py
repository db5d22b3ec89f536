"""The default ``_create_ws``: choose the transport, then connect with it.

A :class:`Dialer` holds what the default hook needs (the URL, the options,
the name for the log) and remembers what the last connection chose, so that
``repr``, ``stats().transport`` and one INFO line per change can show it.
"""

from __future__ import annotations

from typing import Any

from .._log import log
from .._options import Options
from ._auto import choose_transport
from ._proxy import resolve_proxy
from ._transport import ScrubbingLogger, default_connect

__all__ = ["Dialer"]


class Dialer:
    """Opens the connections of a multiplexer that keeps the default hook.

    Args:
        options: The multiplexer's options.
        name: The multiplexer's name, for the log.
    """

    def __init__(self, options: Options, name: str) -> None:
        self.options = options
        self.name = name
        #: What the last connect chose ("" until then, for auto), and why.
        self.chosen = "" if options.transport == "auto" else options.transport
        self.why = ""

    async def dial(self, url: str) -> Any:
        """Open one connection with the transport the options resolve to.

        Args:
            url: Where to connect (read at each connection: an adapter may
                change its URL, a new listen key say, between connections).

        Returns:
            A connection, or an async context manager yielding one (trio).
        """
        opts = self.options
        transport, why = choose_transport(
            opts.transport, url, opts.connect_options, opts.ping_interval, opts.ping_timeout
        )
        if (transport, why) != (self.chosen, self.why):
            log.info("%s: transport %s (%s)", self.name, transport, why)
        self.chosen, self.why = transport, why
        if transport == "picows":
            from ._picows import picows_connect

            return await picows_connect(
                url,
                max_size=opts.max_size,
                ping_interval=opts.ping_interval,
                ping_timeout=opts.ping_timeout,
                open_timeout=opts.open_timeout,
                close_timeout=opts.close_timeout,
                **{"proxy": resolve_proxy(opts.proxy, url), **opts.connect_options},
            )
        options: dict[str, Any] = {
            "max_size": opts.max_size,
            "ping_interval": opts.ping_interval,
            "ping_timeout": opts.ping_timeout,
            "close_timeout": opts.close_timeout,
            "open_timeout": opts.open_timeout,
            "compression": None,
            "max_queue": 1024,
            "logger": ScrubbingLogger(url),
            "proxy": opts.proxy,
        }
        options.update(opts.connect_options)
        made = default_connect(url, options)
        if hasattr(made, "__await__"):
            return await made
        return made

    def transport_of(self, ws: Any) -> str:
        """The transport of ``ws`` (the live connection, or None), else the last chosen."""
        if ws is not None:
            kind = type(ws)
            if kind.__name__ == "PicowsConnection":
                return "picows"
            if kind.__module__.startswith("websockets."):
                return "websockets"
            return kind.__name__  # made by an overridden _create_ws
        return self.chosen or self.options.transport
