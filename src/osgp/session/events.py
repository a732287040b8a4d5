"""What sessions report, and the handles of client operations."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Generator, Optional, Union

from osgp.errors import OSGPError, ProtocolError

if TYPE_CHECKING:  # pragma: no cover
    from osgp.session.client import ClientSession

__all__ = [
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
        gen: Generator[Any, Any, Any],
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


@dataclass(frozen=True)
class Completed:
    op: Operation
    result: Any


@dataclass(frozen=True)
class Failed:
    op: Operation
    error: OSGPError


@dataclass(frozen=True)
class AlertReceived:
    """A MEP alert (two zero bytes): the device has something to report."""


@dataclass(frozen=True)
class Served:
    """Device side: a request was answered."""

    request: Any
    response: bytes


Event = Union[Completed, Failed, AlertReceived, Served]
