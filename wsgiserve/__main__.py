"""``python -m wsgiserve``: the same as the ``wsgiserve`` console script."""
from __future__ import annotations

from wsgiserve.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
