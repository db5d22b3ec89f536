"""``wsmux bench``: throughput, latency and memory scenarios against a raw websockets loop.

A tool: nothing in the core imports it. It may import wsmux's public names
(``from wsmux import ...``) and nothing private of the layers. Start reading
at ``_run`` (:func:`run_bench`, the ``bench`` subcommand), then
``_scenarios`` (the registry and throughput), ``_latency`` (paced feed, the
tail), ``_memory`` (RSS and the memory probe) and ``_report`` (results,
targets, the table). ``_server`` is the feed server, run in a process of
its own.
"""

from ._report import BenchResult, ScenarioResult, Target, format_table, print_table
from ._run import add_parser, run_bench

__all__ = [
    "BenchResult",
    "ScenarioResult",
    "Target",
    "add_parser",
    "format_table",
    "print_table",
    "run_bench",
]
