"""``python -m wsgiserve.client.websocket``: the ``wsgiserve-ws`` command line."""
from __future__ import annotations

import sys

from wsgiserve.client.websocket.cli import main

sys.exit(main())
