"""``python -m wsgiserve.client``: the curl-like command line (see ``cli.py``)."""
from __future__ import annotations

import sys

from wsgiserve.client.cli import main

sys.exit(main())
