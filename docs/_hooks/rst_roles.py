"""MkDocs hook: show Sphinx roles in docstrings as plain code.

The docstrings are Google style but cross-reference with Sphinx roles
(``:class:`Stream```), which the API reference would otherwise print as
``:class:Stream``. The role and a leading ``~`` are dropped, the code kept.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|attr|mod|exc|data|obj):(<code>)~?")


def on_page_content(html: str, **kwargs: Any) -> str:
    """Drop Sphinx roles in front of inline code in a rendered page."""
    return _ROLE.sub(r"\1", html)
