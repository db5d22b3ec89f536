"""The ``wsmux`` command line (``tap``, ``demo``): a tool, imported by nothing in the core."""
