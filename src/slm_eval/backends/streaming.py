"""Streaming text that must end at a stop string: nothing past the stop, nothing streamed that is cut later."""

from __future__ import annotations

from collections.abc import Callable, Sequence


class StopStringStream:
    """Collects output pieces, holds back text that could be the start of a stop string, cuts at the first stop.

    Without stop strings every piece is passed on at once.
    """

    def __init__(self, stops: Sequence[str], emit: Callable[[str], None] | None) -> None:
        self._stops = tuple(stop for stop in stops if stop)
        self._emit = emit
        self._text = ""
        self._emitted = 0
        self.stopped = False

    @property
    def text(self) -> str:
        """The text so far, cut before a stop string once one has appeared."""
        return self._text

    def push(self, piece: str) -> bool:
        """Add a piece; returns ``True`` once a stop string has appeared (the caller should stop generating)."""
        if self.stopped or not piece:
            return self.stopped
        search_from = max(0, len(self._text) - max((len(s) for s in self._stops), default=0))
        self._text += piece
        if not self._stops:
            self._send(len(self._text))
            return False
        cuts = [at for at in (self._text.find(stop, search_from) for stop in self._stops) if at != -1]
        if cuts:
            self._text = self._text[: min(cuts)]
            self._send(len(self._text))
            self.stopped = True
            return True
        self._send(len(self._text) - self._held_back())
        return False

    def finish(self) -> str:
        """Pass on whatever was held back and return the whole text."""
        self._send(len(self._text))
        return self._text

    def _held_back(self) -> int:
        """Length of the longest end of the text that is the start of some stop string."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(self._text)), longest, -1):
                if self._text.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def _send(self, upto: int) -> None:
        if upto > self._emitted and self._emit is not None:
            self._emit(self._text[self._emitted : upto])
        self._emitted = max(self._emitted, upto)
