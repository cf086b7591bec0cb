"""Reading a running server's /metrics in tests: the samples parsed by prometheus_client's
own text parser (an independent reader of the exposition format)."""
from __future__ import annotations

import http.client

from prometheus_client.parser import text_string_to_metric_families


def metric_total(port: int, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``, as the metrics
    listener on 127.0.0.1:``port`` answers now."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())
