"""Pull, not push: a half-duplex channel asks its sessions for the next frame.

When the medium is free the driver calls :meth:`Arbiter.poll_transmit`; the
arbiter asks the session whose next frame is most urgent (link-level frames
such as ACKs first, then by operation :class:`~osgp.session.events.Priority`,
then the session served longest ago) and never lets more than
``max_outstanding`` requests wait for responses at once (one exchange per
segment on a half-duplex power line; more where the medium allows).

Sessions tell the arbiter when what they want changes (``watch``), so the
arbiter keeps two heaps, of sessions with something to send and of deadlines,
and never scans every session: a thousand idle meters cost nothing.  A change
only marks its session; the arbiter asks it once, when it next polls, looks
for a deadline or counts what is outstanding (a session changes several
times in one callback: a response arrives, its task submits the next read).
"""

from __future__ import annotations

import heapq
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

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
        self._tick = 0
        self._ready: List[Tuple[int, int, int, int]] = []  # (priority, served, tick, id)
        self._timers: List[Tuple[float, int, int]] = []  # (deadline, tick, id)
        self._awaiting: Set[int] = set()
        self._dirty: Dict[int, Any] = {}  # sessions changed since the last look
        self._events: List[Any] = []
        self.has_events = False  # take_events has something
        # called when a session changes while no other change waits for a look
        # (a driver then polls soon: it need not watch every session itself)
        self.on_dirty: Optional[Callable[[], None]] = None
        for s in sessions:
            self.add(s)

    def add(self, session: Any) -> None:
        key = id(session)
        self._sessions[key] = session
        self._served.setdefault(key, 0)
        session.watch(self._changed)
        self._changed(session)

    def remove(self, session: Any) -> None:
        key = id(session)
        self._sessions.pop(key, None)
        self._served.pop(key, None)
        self._awaiting.discard(key)
        self._dirty.pop(key, None)
        session.unwatch(self._changed)

    @property
    def sessions(self) -> List[Any]:
        return list(self._sessions.values())

    @property
    def outstanding(self) -> int:
        """Requests on the medium still waiting for their responses."""
        if self._dirty:
            self._refresh()
        return len(self._awaiting)

    def _changed(self, session: Any) -> None:
        clean = not self._dirty
        self._dirty[id(session)] = session
        if clean and self.on_dirty is not None:
            self.on_dirty()

    def _refresh(self) -> None:
        """Ask each session changed since the last look what it wants now."""
        dirty, self._dirty = self._dirty, {}
        sessions, awaiting, served = self._sessions, self._awaiting, self._served
        for key, session in dirty.items():
            if key not in sessions:
                continue
            if session.awaiting:
                awaiting.add(key)
            else:
                awaiting.discard(key)
            self._tick += 1
            p = session.next_priority()
            if p is not None:
                heapq.heappush(self._ready, (p, served[key], self._tick, key))
            d = session.next_deadline()
            if d is not None:
                heapq.heappush(self._timers, (d, self._tick, key))

    def poll_transmit(self, now: float) -> Optional[Tuple[Any, bytes]]:
        """(session, frame) to put on the medium now, or None."""
        if self._dirty:
            self._refresh()
        ready = self._ready
        if not ready or (ready[0][0] >= 0 and len(self._awaiting) >= self.max_outstanding):
            return None  # no room, and no link-level frame (p < 0, they sort first) waits
        held: List[Tuple[int, int, int, int]] = []
        seen: Set[int] = set()
        picked: Optional[Tuple[Any, bytes]] = None
        while self._ready:
            entry = heapq.heappop(self._ready)
            p, _, _, key = entry
            s = self._sessions.get(key)
            if s is None or key in seen or s.next_priority() != p:
                continue  # stale entry: a newer one exists if the session wants to send
            seen.add(key)
            if p >= 0 and len(self._awaiting) >= self.max_outstanding:
                held.append(entry)  # no room: only link-level frames (p < 0) go now,
                break  # and they sort first
            frame = s.poll_transmit(now)
            if getattr(s, "has_events", False):
                self._events += s.take_events()
                self.has_events = bool(self._events)
            if frame is None:
                held.append(entry)  # not yet (a request gap): its timer brings it back
                continue
            self._turn += 1
            self._served[key] = self._turn
            picked = (s, frame)
            break
        for entry in held:
            heapq.heappush(self._ready, entry)
        return picked

    def take_events(self) -> List[Any]:
        """Events of operations that failed as a poll started them: a driver
        takes them after every :meth:`poll_transmit`."""
        ev, self._events = self._events, []
        self.has_events = False
        return ev

    def next_deadline(self) -> Optional[float]:
        """The earliest deadline of any session (response timers, request gaps)."""
        if self._dirty:
            self._refresh()
        while self._timers:
            d, _, key = self._timers[0]
            s = self._sessions.get(key)
            if s is not None and s.next_deadline() == d:
                return d
            heapq.heappop(self._timers)
        return None

    def handle_timeout(self, now: float) -> List[Event]:
        if self._dirty:
            self._refresh()
        events: List[Event] = []
        due: Dict[int, Any] = {}
        while self._timers and self._timers[0][0] <= now:
            d, _, key = heapq.heappop(self._timers)
            s = self._sessions.get(key)
            if s is not None and s.next_deadline() == d:
                due[key] = s
        for s in due.values():
            events += s.handle_timeout(now)
            self._changed(s)
        return events
