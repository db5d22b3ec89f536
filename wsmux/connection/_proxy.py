"""The ``proxy`` option: checked at construction, resolved for each transport.

websockets connects through HTTP CONNECT and SOCKS proxies itself (SOCKS with
python-socks) and reads the environment when ``proxy=True``; picows takes a
proxy URL. wsmux gives both transports the same meaning: ``True`` is the
environment's proxy by websockets' rule, None no proxy, a string that proxy.
"""

from __future__ import annotations

import importlib.util

from websockets.exceptions import InvalidProxy, InvalidURI
from websockets.proxy import get_proxy, parse_proxy
from websockets.uri import parse_uri

from .._log import redact_url

__all__ = ["check_proxy", "resolve_proxy"]


def check_proxy(proxy: object) -> None:
    """Refuse a ``proxy`` option that can never work, before any connection.

    Args:
        proxy: The option: True, False, None or a proxy URL.

    Raises:
        TypeError: It is none of these.
        ValueError: The URL is not a proxy URL (the message shows its scheme
            and host only).
        ImportError: A SOCKS proxy, and python-socks is not installed.
    """
    if proxy is None or isinstance(proxy, bool):
        return
    if not isinstance(proxy, str):
        raise TypeError(f"proxy must be a URL, True, False or None, not {type(proxy).__name__}")
    try:
        parsed = parse_proxy(proxy)
    except InvalidProxy as exc:
        raise ValueError(f"invalid proxy {redact_url(proxy)}: {exc.msg}") from None
    if parsed.scheme.startswith("socks") and importlib.util.find_spec("python_socks") is None:
        raise ImportError(
            f"a {parsed.scheme}:// proxy needs python-socks: pip install 'wsmux[socks]'"
        )


def resolve_proxy(proxy: str | bool | None, url: str) -> str | None:
    """The proxy URL to use for ``url``, or None to connect directly.

    Args:
        proxy: The checked option.
        url: The websocket URL.

    Returns:
        ``proxy`` itself, the environment's proxy for ``url`` when ``proxy``
        is True, or None.
    """
    if proxy is True:
        try:
            return get_proxy(parse_uri(url))
        except InvalidURI:
            return None
    if proxy is None or proxy is False:
        return None
    return proxy
