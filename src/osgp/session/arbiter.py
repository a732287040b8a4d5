"""Pull, not push: a half-duplex channel asks its sessions for the next frame.

When the medium is free the driver calls :meth:`Arbiter.poll_transmit`; the
arbiter asks the session whose next frame is most urgent (link-level frames
such as ACKs first, then by operation :class:`~osgp.session.events.Priority`,
then the session served longest ago) and never lets more than
``max_outstanding`` requests wait for responses at once (one exchange per
segment on a half-duplex power line; more where the medium allows).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

from osgp.errors import ConfigurationError
from osgp.session.events import Event

__all__ = ["Arbiter"]


class Arbiter:
    """Chooses which session transmits next on one channel."""

    def __init__(self, sessions: Iterable[Any] = (), *, max_outstanding: int = 1) -> None:
        if max_outstanding < 1:
            raise ConfigurationError("max_outstanding must be at least 1")
        self.max_outstanding = max_outstanding
        self._sessions: Dict[int, Any] = {}
        self._served: Dict[int, int] = {}
        self._turn = 0
        for s in sessions:
            self.add(s)

    def add(self, session: Any) -> None:
        self._sessions[id(session)] = session
        self._served.setdefault(id(session), 0)

    def remove(self, session: Any) -> None:
        self._sessions.pop(id(session), None)
        self._served.pop(id(session), None)

    @property
    def sessions(self) -> List[Any]:
        return list(self._sessions.values())

    @property
    def outstanding(self) -> int:
        """Requests on the medium still waiting for their responses."""
        return sum(1 for s in self._sessions.values() if s.awaiting)

    def poll_transmit(self, now: float) -> Optional[Tuple[Any, bytes]]:
        """(session, frame) to put on the medium now, or None."""
        room = self.outstanding < self.max_outstanding
        candidates = []
        for key, s in self._sessions.items():
            p = s.next_priority()
            if p is None or (p >= 0 and not room):
                continue
            candidates.append((p, self._served[key], key, s))
        candidates.sort(key=lambda c: (c[0], c[1]))
        for _, _, key, s in candidates:
            frame = s.poll_transmit(now)
            if frame is not None:
                self._turn += 1
                self._served[key] = self._turn
                return s, frame
        return None

    def next_deadline(self) -> Optional[float]:
        """The earliest deadline of any session (response timers, request gaps)."""
        best: Optional[float] = None
        for s in self._sessions.values():
            d = s.next_deadline()
            if d is not None and (best is None or d < best):
                best = d
        return best

    def handle_timeout(self, now: float) -> List[Event]:
        events: List[Event] = []
        for s in list(self._sessions.values()):
            d = s.next_deadline()
            if d is not None and d <= now:
                events += s.handle_timeout(now)
        return events
