"""Which async library is running: asyncio or trio."""

from __future__ import annotations

import sys

__all__ = ["current_backend"]


def current_backend() -> str:
    """Return ``"trio"`` when running under trio, else ``"asyncio"``."""
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            return "trio"
    return "asyncio"
