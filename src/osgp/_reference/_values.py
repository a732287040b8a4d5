"""Values shared by the table kernels and the table data model: the calendar
arithmetic, the widths of the format-dependent types and the Python values of
decoded TIME / NI slots.

Sits below both osgp.tables (the schema language) and the table kernels
(osgp._native.tables and its twin osgp._reference.tables), which build their
decoded mappings from these.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from osgp.errors import MalformedError

__all__ = [
    "TimeDate",
    "civil_from_days",
    "days_from_civil",
    "ni_value",
    "ni_width",
    "time_width",
]

_TIME_W = ((0, 6, 6, 5, 4), (0, 5, 5, 4, 4), (0, 3, 3, 3, 3))  # docs/protocol.md §7.1
_NI_W = (8, 4, 12, 6, 4, 6, 4, 3, 4, 5, 6, 8, 8, 21)  # docs/protocol.md §7.1


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d


def time_width(kind: int, tm_format: int) -> int:
    if kind > 2 or not 0 <= tm_format <= 4:
        return -1
    return _TIME_W[kind][tm_format]


def ni_width(fmt: int) -> int:
    return _NI_W[fmt] if 0 <= fmt < 14 else -1


class TimeDate(NamedTuple):
    """A decoded LTIME_DATE / STIME_DATE / TIME: calendar fields as stored.

    TM_FORMAT 1/2 years are ``2000 + YY`` (docs/protocol.md §3.4); TM_FORMAT 3/4
    (minutes / seconds since 1970, UTC) are converted to the calendar.
    Zero dates (never set) are kept as they are; :meth:`to_datetime` gives
    None for them."""

    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int

    def to_datetime(self) -> Any:
        import datetime as _dt

        try:
            return _dt.datetime(
                self.year,
                self.month,
                self.day,
                self.hour,
                self.minute,
                self.second,
                tzinfo=_dt.timezone.utc,
            )
        except (ValueError, OverflowError):
            return None

    def epoch(self) -> int:
        """Seconds since 1970-01-01 UTC (no validation)."""
        return (
            days_from_civil(self.year, self.month, self.day) * 86400
            + self.hour * 3600
            + self.minute * 60
            + self.second
        )

    @classmethod
    def from_datetime(cls, dt: Any) -> TimeDate:
        if dt.tzinfo is not None:
            import datetime as _dt

            dt = dt.astimezone(_dt.timezone.utc)
        return cls(dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second)


def _bits_to_float(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<q", bits))[0]


def ni_value(fmt: int, slot: int, data: bytes) -> Any:
    """Python value of an NI slot (docs/protocol.md §7.1 NI_FORMAT)."""
    if fmt in (0, 1):
        return _bits_to_float(slot)
    if fmt in (2, 3, 13):
        w = ni_width(fmt)
        text = data[slot : slot + w].decode("latin-1").strip(" \0")
        try:
            return float(text) if text else 0.0
        except ValueError:
            raise MalformedError(
                f"FLOAT_CHAR value {text!r} is not a number", layer="table NI", offset=slot
            ) from None
    if fmt == 4:
        return slot / 10000  # INT32 with 4 implied decimals
    return slot
