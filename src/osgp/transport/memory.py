"""In-memory channels for tests and in-process peers: ``mem://name``.

A :class:`MemoryLink` is two inboxes, one per direction; each end writes to
the other's inbox.  Message boundaries are kept (one receive, one send).  An
end is a sync :class:`osgp.transport.sync.MemoryTransport` (waits on the
inbox's condition) or an asyncio one (woken through its event loop), and the
two kinds may share a link.  ``listen(name)`` registers a link under
``mem://name`` for one ``connect(name)``.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Deque, Dict, Optional, Tuple

from osgp.transport.errors import ConnectError

__all__ = ["Inbox", "MemoryLink", "listen", "connect", "unlisten"]


class Inbox:
    """A thread-safe queue of messages that can be closed; ``waker`` is called
    (under the lock) on every put and on close."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: Deque[bytes] = deque()
        self.closed = False
        self.waker: Callable[[], None] = lambda: None

    def put(self, data: bytes) -> bool:
        """False when the inbox is closed (the reader has gone)."""
        with self.cond:
            if self.closed:
                return False
            self.items.append(data)
            self.cond.notify_all()
            self.waker()
            return True

    def get(self) -> Optional[bytes]:
        with self.cond:
            return self.items.popleft() if self.items else None

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
            self.waker()


class MemoryLink:
    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"mem://{name}"
        self.inboxes = (Inbox(), Inbox())  # [0] read by the connecting end, [1] by the listener

    def ends(self, side: int) -> Tuple[Inbox, Inbox]:
        """(inbox read by ``side``, inbox written by it)."""
        return self.inboxes[side], self.inboxes[1 - side]


_lock = threading.Lock()
_listening: Dict[str, MemoryLink] = {}


def listen(name: str) -> MemoryLink:
    with _lock:
        if name in _listening:
            raise ConnectError(f"mem://{name}", "already listening")
        link = _listening[name] = MemoryLink(name)
        return link


def unlisten(link: MemoryLink) -> None:
    with _lock:
        if _listening.get(link.name) is link:
            del _listening[link.name]


def connect(name: str) -> MemoryLink:
    with _lock:
        link = _listening.pop(name, None)
    if link is None:
        raise ConnectError(f"mem://{name}", "nobody listens on this name")
    return link
