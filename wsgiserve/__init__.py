"""wsgiserve: a pre-fork WSGI server and an HTTP/1.1 client on one sans-IO protocol core.

The public API is small; everything not named in ``__all__`` is internal.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
