"""The Prometheus text exposition format 0.0.4: metric families in, bytes out.

A ``Family`` is one metric (its name, type and help) with its samples; ``render`` writes
the ``# HELP`` and ``# TYPE`` lines and one line per sample, label values escaped as the
format requires. Nothing here knows what wsgiserve measures (``metrics`` does).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = ["CONTENT_TYPE", "Family", "Labels", "render"]

# What Prometheus asks for and expects back for this format.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_KINDS: Final = frozenset({"counter", "gauge", "histogram", "untyped"})

Labels = Sequence[tuple[str, str]]


@dataclass
class Family:
    """One metric: ``samples`` are (name suffix, labels, value), the suffix being ""
    or, for a histogram, ``_bucket``, ``_sum`` and ``_count``."""

    name: str
    kind: str
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown metric type {self.kind!r}")

    def add(self, value: float, labels: Labels = (), suffix: str = "") -> None:
        self.samples.append((suffix, labels, value))

    def add_histogram(self, bounds: Sequence[float], counts: Sequence[int], total: float,
                      labels: Labels = ()) -> None:
        """One histogram series: ``counts`` per bucket (not cumulative), the last one
        above every bound; ``total`` is the sum of the observations."""
        running = 0
        for bound, count in zip([*bounds, math.inf], counts):
            running += count
            self.add(running, [*labels, ("le", _format_bound(bound))], "_bucket")
        self.add(total, labels, "_sum")
        self.add(running, labels, "_count")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_bound(bound: float) -> str:
    # As prometheus_client writes them ("1.0", not Go's "1"), so queries and dashboards
    # made for Python servers match the le label exactly.
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render(families: Iterable[Family]) -> bytes:
    """The exposition of ``families``, in order; a family without samples is left out."""
    lines: list[str] = []
    for family in families:
        if not family.samples:
            continue
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for suffix, labels, value in family.samples:
            if labels:
                text = ",".join(f'{name}="{_escape_label(v)}"' for name, v in labels)
                lines.append(f"{family.name}{suffix}{{{text}}} {_format_value(value)}")
            else:
                lines.append(f"{family.name}{suffix} {_format_value(value)}")
    lines.append("")
    return "\n".join(lines).encode("utf-8")
