"""Counts what a peer makes us do without asking for anything, per window of frames.

The core reads no clock, so the window is a number of received frames
(``Http2Limits.flood_window_frames``): every quota restarts when the window is full. A
quota exceeded is a connection error ENHANCE_YOUR_CALM (RFC 9113 §5.4.1): the GOAWAY goes
out and the connection closes. See ``limits.py`` for the quotas and where they come from.
"""
from __future__ import annotations

from wsgiserve.http2.errors import ErrorCode, Http2ConnectionError
from wsgiserve.http2.limits import Http2Limits

__all__ = ["FloodGuard"]


class FloodGuard:
    """One connection's counters for the current window."""

    __slots__ = ("limits", "frames", "resets", "pings", "settings", "priority", "glitches",
                 "window_updates", "data_frames_sent")

    def __init__(self, limits: Http2Limits):
        self.limits = limits
        self._restart()

    def _restart(self) -> None:
        self.frames = 0
        self.resets = 0
        self.pings = 0
        self.settings = 0
        self.priority = 0
        self.glitches = 0
        self.window_updates = 0
        self.data_frames_sent = 0

    def count_frame(self) -> None:
        """One more frame received (the receiver inlines this: ``frames += 1``, then
        ``new_window()`` past ``flood_window_frames``)."""
        self.frames += 1
        if self.frames > self.limits.flood_window_frames:
            self.new_window()

    def new_window(self) -> None:
        """The frame just counted starts a new window: every quota restarts."""
        self._restart()
        self.frames = 1

    @staticmethod
    def _flood(what: str) -> Http2ConnectionError:
        return Http2ConnectionError(f"{what} flood", ErrorCode.ENHANCE_YOUR_CALM)

    def count_reset(self) -> None:
        """A stream reset by the peer, or by us because of what the peer sent."""
        self.resets += 1
        if self.resets > self.limits.max_resets_per_window:
            raise self._flood("stream reset")

    def count_ping(self) -> None:
        # A peer measuring bandwidth pings once per burst of DATA it receives.
        self.pings += 1
        if self.pings > self.limits.max_pings_per_window + self.data_frames_sent:
            raise self._flood("PING")

    def count_settings(self) -> None:
        self.settings += 1
        if self.settings > self.limits.max_settings_per_window:
            raise self._flood("SETTINGS")

    def count_priority(self) -> None:
        self.priority += 1
        if self.priority > self.limits.max_priority_per_window:
            raise self._flood("PRIORITY")

    def count_glitch(self, what: str) -> None:
        self.glitches += 1
        if self.glitches > self.limits.max_glitches_per_window:
            raise self._flood(what)

    def count_window_update(self) -> None:
        self.window_updates += 1
        if self.window_updates > (self.limits.max_window_updates_per_window
                                  + 2 * self.data_frames_sent):
            raise self._flood("WINDOW_UPDATE")
