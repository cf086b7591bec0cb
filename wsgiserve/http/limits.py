"""Size limits for the parsers: every byte a parser keeps is bounded by one of these.

Built by the server from its configuration (``config.Limits``) and by the client from its
options; the HTTP layer knows nothing of either.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# RFC 9112 §3: "It is RECOMMENDED that all HTTP senders and recipients support, at a
# minimum, request-line lengths of 8000 octets." nginx's large_client_header_buffers is 8k.
DEFAULT_MAX_REQUEST_LINE_BYTES: Final = 8190
# gunicorn's limit_request_fields default.
DEFAULT_MAX_FIELDS: Final = 100
# gunicorn and nginx both allow one field line of 8 KiB.
DEFAULT_MAX_FIELD_BYTES: Final = 8190
# The whole head: nginx allows 4 x 8k buffers by default; we allow 64 KiB.
DEFAULT_MAX_HEAD_BYTES: Final = 65536
# Chunk extensions carry nothing we use; 4 KiB bounds the line (h11 allows 16 KiB per line).
DEFAULT_MAX_CHUNK_LINE_BYTES: Final = 4096
DEFAULT_MAX_TRAILER_BYTES: Final = 8190


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Limits applied by ``RequestParser`` and ``ResponseParser``.

    ``max_body_bytes`` of 0 means unlimited (a request body over it is answered 413).
    """

    max_request_line_bytes: int = DEFAULT_MAX_REQUEST_LINE_BYTES
    max_fields: int = DEFAULT_MAX_FIELDS
    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES
    max_chunk_line_bytes: int = DEFAULT_MAX_CHUNK_LINE_BYTES
    max_trailer_bytes: int = DEFAULT_MAX_TRAILER_BYTES
    max_body_bytes: int = 0

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if value < 0 or (value == 0 and name != "max_body_bytes"):
                raise ValueError(f"HttpLimits.{name}: must be > 0, got {value}")
