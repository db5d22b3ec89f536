"""The ``wsmux`` command line: tap, demo, record, replay, bridge (``bench``: :mod:`wsmux.bench`).

A tool: nothing in the core imports it. It may import wsmux's public names
(``from wsmux import ...``), :mod:`wsmux._log`, :mod:`wsmux._exceptions` and
:mod:`wsmux.testing`, never a layer's private modules. Start reading at
:func:`add_parsers`, then ``_tap`` and ``_demo``; ``_common`` holds their
argument types and stderr output, :mod:`wsmux.cli.binance` the adapter and
order book the demo shares with ``examples/``.
"""

from __future__ import annotations

from typing import Any

from . import _bridge, _demo, _record, _replay, _tap

__all__ = ["add_parsers"]


def add_parsers(sub: Any) -> None:
    """Add the ``tap``, ``demo``, ``record``, ``replay`` and ``bridge`` subcommands.

    Args:
        sub: The object ``ArgumentParser.add_subparsers`` returned.
    """
    _tap.add_parser(sub)
    _demo.add_parser(sub)
    _record.add_parser(sub)
    _replay.add_parser(sub)
    _bridge.add_parser(sub)
