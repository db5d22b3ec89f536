"""Prometheus metrics of multiplexers and pools (``pip install 'wsmux[metrics]'``).

A tool-like layer above the core: it reads ``stats()`` (and the statistics
of named streams in ``stats().named_streams``) and nothing in the core
imports it. :class:`WsmuxCollector` is a prometheus-client collector for a
registry of your own; :class:`MetricsServer` (made by :func:`serve_metrics`)
serves ``/metrics`` on 127.0.0.1 unless told otherwise. See docs/metrics.md
for the metric names and labels.
"""

try:
    import prometheus_client as _prometheus_client  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is in the test install
    raise ImportError(
        "wsmux.metrics needs prometheus-client: pip install 'wsmux[metrics]'"
    ) from exc

from ._collector import STATES, WsmuxCollector
from ._server import MetricsServer, serve_metrics

__all__ = ["STATES", "MetricsServer", "WsmuxCollector", "serve_metrics"]
