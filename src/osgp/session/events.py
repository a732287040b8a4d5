"""What sessions report, and the handles of client operations."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Union

from osgp.errors import OSGPError, ProtocolError

if TYPE_CHECKING:  # pragma: no cover
    from osgp.session.client import ClientSession

__all__ = [
    "Watched",
    "Priority",
    "Operation",
    "OperationCancelled",
    "Completed",
    "Failed",
    "AlertReceived",
    "Served",
    "Event",
]


class Priority(IntEnum):
    """Who goes first on a shared channel (lower is sooner)."""

    ALARM = 0
    ON_DEMAND = 1
    OPERATION = 2
    SCHEDULED = 3
    BACKGROUND = 4


class OperationCancelled(ProtocolError):
    """The operation was cancelled before it completed."""


class Operation:
    """Handle of one client operation: ``done``, ``result``, ``error``,
    ``exchanges`` (messages sent, retries excluded) and ``retries``."""

    __slots__ = (
        "name",
        "priority",
        "order",
        "_gen",
        "_session",
        "done",
        "result",
        "error",
        "exchanges",
        "retries",
        "cancelled",
    )

    def __init__(
        self,
        name: str,
        gen: Any,  # a generator, or a one-exchange step of the session
        priority: int,
        order: int,
        session: ClientSession,
    ) -> None:
        self.name = name
        self.priority = int(priority)
        self.order = order
        self._gen = gen
        self._session = session
        self.done = False
        self.result: Any = None
        self.error: Optional[OSGPError] = None
        self.exchanges = 0
        self.retries = 0
        self.cancelled = False

    def cancel(self) -> bool:
        """Cancel the operation.  A queued one fails at once with
        :class:`OperationCancelled`; one in flight fails when its current
        exchange ends, so no response is left for another operation.  Returns
        False when it is already done."""
        if self.done:
            return False
        self.cancelled = True
        self._session._cancelled(self)
        return True

    def __repr__(self) -> str:
        return f"Operation({self.name}, done={self.done})"


class _Event:
    """Small immutable event: slots, equality and repr by fields (a frozen
    dataclass costs about a microsecond more to build, once per operation)."""

    __slots__: tuple = ()

    def __init__(self, *values: Any) -> None:
        if len(values) != len(self.__slots__):
            raise TypeError(f"{type(self).__name__} takes {len(self.__slots__)} values")
        for name, v in zip(self.__slots__, values):
            object.__setattr__(self, name, v)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _fields(self) -> tuple:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._fields() == self._fields()

    def __hash__(self) -> int:
        return hash((type(self), self._fields()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({inner})"


class Completed(_Event):
    """An operation completed with ``result``."""

    __slots__ = ("op", "result")
    op: Operation
    result: Any

    def __init__(self, op: Operation, result: Any) -> None:
        _set_op(self, op)
        _set_result(self, result)


_new = object.__new__
_set_op = Completed.__dict__["op"].__set__
_set_result = Completed.__dict__["result"].__set__


def completed(op: Operation, result: Any) -> Completed:
    """``Completed(op, result)`` built through its slots (a session builds one
    per operation; this skips the Python-level ``__init__``)."""
    ev = _new(Completed)
    _set_op(ev, op)
    _set_result(ev, result)
    return ev


class Failed(_Event):
    """An operation failed with ``error``."""

    __slots__ = ("op", "error")
    op: Operation
    error: OSGPError


class AlertReceived(_Event):
    """A MEP alert (two zero bytes): the device has something to report."""

    __slots__ = ()


class Served(_Event):
    """Device side: a request was answered."""

    __slots__ = ("request", "response")
    request: Any
    response: bytes


Event = Union[Completed, Failed, AlertReceived, Served]


class Watched:
    """The arbiter's hook on a participant that is not a session (a
    discovery engine, a broadcaster): ``watch(callback)`` is called back
    with the participant whenever what it wants to send may have changed."""

    def __init__(self) -> None:
        self._watchers: List[Callable[[Any], None]] = []

    def watch(self, callback: Callable[[Any], None]) -> None:
        self._watchers.append(callback)

    def unwatch(self, callback: Callable[[Any], None]) -> None:
        if callback in self._watchers:
            self._watchers.remove(callback)

    def _changed(self) -> None:
        for w in list(self._watchers):
            w(self)
