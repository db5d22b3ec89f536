"""``wsmux bench``: throughput, latency and memory scenarios against a raw websockets loop.

A tool, imported by nothing in the core.
"""
