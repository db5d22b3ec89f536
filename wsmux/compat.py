"""Drop-in replacement for ``AsyncWebsocketStreamInterface`` (seed 004).

An adapter written for AsyncWebsocketStreamInterface runs by changing its
import::

    from wsmux.compat import AsyncWebsocketStreamInterface

The class starts itself when constructed (inside a running asyncio loop) and
keeps the old names: ``stream_filter(_filters)``, ``present_ws``, ``send``,
``exit``, ``add_handler`` and ``wait_enter_handing_ws``. Everything else is
:class:`wsmux.Multiplexer`'s, reconnection and exactly-once rotation included.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from ._mux import Multiplexer
from .fanout._match import Filters
from .fanout._stream import Overflow, Stream

__all__ = ["AsyncWebsocketStreamInterface"]


class AsyncWebsocketStreamInterface(Multiplexer):
    """The seed 004 API on top of :class:`wsmux.Multiplexer`.

    Subclasses implement ``_create_ws``, ``_when2create_new_ws`` and
    ``_parse_raw_data`` exactly as before. Construction starts the
    connection in a background asyncio task.

    Public attributes a subclass sets before calling ``super().__init__()``
    are kept: a ``self.url`` set that way is the URL connected to, unless a
    URL is passed as well.

    Args:
        *args: Passed to :class:`wsmux.Multiplexer`.
        **kwargs: Passed to :class:`wsmux.Multiplexer`.

    Raises:
        RuntimeError: No asyncio event loop is running.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "AsyncWebsocketStreamInterface must be created inside a running asyncio loop"
            ) from None
        preset = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        if "url" in preset and not args and "url" not in kwargs:
            kwargs["url"] = preset["url"]
        super().__init__(*args, **kwargs)
        for name, value in preset.items():
            if name != "url":
                setattr(self, name, value)
        self._runner = loop.create_task(self.run(), name="wsmux compat runner")

    def stream_filter(  # type: ignore[override]
        self,
        _filters: Filters = None,
        *,
        maxsize: int = 1024,
        overflow: Overflow = "lag",
        gaps: Literal["raise", "ignore"] = "ignore",
        **options: Any,
    ) -> Stream:
        """Open a filtered stream (the seed 004 signature).

        Args:
            _filters: A list of dicts, as in AsyncWebsocketStreamInterface.
            maxsize: The most messages buffered.
            overflow: The overflow policy.
            gaps: ``"raise"`` to get ConnectionGap at an unplanned reconnect.
            **options: Further :meth:`Multiplexer.stream_filter` options.

        Returns:
            The stream; close it with ``await stream.close()``.
        """
        return super().stream_filter(
            _filters, maxsize=maxsize, overflow=overflow, gaps=gaps, **options
        )

    async def wait_enter_handing_ws(self) -> None:
        """Wait until the first connection is open.

        Raises:
            Exception: The error the connection failed with, if it did.
        """
        while self.present_ws is None:
            if self._runner.done():
                self._runner.result()
                return
            waiter = asyncio.ensure_future(self._state_changed.wait())
            await asyncio.wait([waiter, self._runner], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

    async def exit(self) -> None:
        """Close the connection and every stream, and wait until done.

        Raises:
            Exception: The error the connection had died of, if any.
        """
        await super().exit()
        await asyncio.shield(self._runner)
