"""The worker's ``ServerContext`` built from the ``Config``: the HTTP limits, timeouts, access
log, forwarded-header trust, the TLS/PROXY preamble (its SSLContext built here, once per
worker process) and, when h2 is on, HTTP/2's settings. The loop adds its own services
(``submit``, the request counter, metrics, WebSockets) to what this returns.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from wsgiserve.config import Config
from wsgiserve.http import HttpLimits
from wsgiserve.log import make_access_log
from wsgiserve.server.worker.context import ServerContext
from wsgiserve.server.worker.forwarded import ProxySettings
from wsgiserve.server.worker.http2 import http2_limits
from wsgiserve.server.worker.preamble import preamble_settings

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

__all__ = ["context_from_config", "limits_from_config"]


def limits_from_config(config: Config) -> HttpLimits:
    limits = config.limits
    return HttpLimits(
        max_request_line_bytes=limits.limit_request_line,
        max_fields=limits.limit_request_fields,
        max_field_bytes=limits.limit_request_field_size,
        max_head_bytes=limits.limit_request_head,
        max_chunk_line_bytes=limits.limit_chunk_ext,
        max_trailer_bytes=limits.limit_trailer,
        max_body_bytes=limits.limit_request_body,
    )


def context_from_config(config: Config, app: WSGIApplication,
                        hooks: Mapping[str, Callable[..., object]], worker: object,
                        threads: int) -> ServerContext:
    """``worker``: what hooks are given; ``threads``: the worker's serving threads."""
    workers = config.workers
    context = ServerContext(
        app=app, limits=limits_from_config(config), keepalive_s=workers.keep_alive,
        header_timeout_s=workers.header_timeout,
        body_timeout_s=workers.timeout if workers.timeout > 0 else 30.0,
        script_name=config.server.script_name.rstrip("/"),
        access_log=make_access_log(config.logging),
        hooks=hooks, worker=worker, use_sendfile=config.server.sendfile,
        proxy=ProxySettings.from_config(config.proxy),
        # Builds the SSLContext once per worker process (so a HUP's new workers read
        # renewed certificates); None when neither TLS nor the PROXY protocol is on.
        preamble=preamble_settings(config.tls, config.proxy,
                                   config.server.proxy_protocol,
                                   config.server.http_protocols))
    http2 = config.http2
    if "h2" in config.server.http_protocols:
        context.http2_limits = http2_limits(
            http2.http2_max_concurrent_streams, http2.http2_initial_window_size,
            http2.http2_max_frame_size, http2.http2_max_header_list_size)
        context.http2_cleartext = http2.http2_cleartext
        context.http2_max_streams_in_app = http2.http2_max_streams_in_app or threads
    return context
