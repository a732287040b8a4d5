"""The physical side of a simulated meter: its consumption and its clock.

Everything is a pure function of the meter's seed and of virtual time, so a
fleet is reproducible run after run and a test can recompute what a meter
must have measured without asking it.

Load model (all times are true UTC epoch seconds, independent of the meter's
drifting clock):

* the day is cut into 900 s *slots*; slot ``k`` covers ``[900 k, 900 k + 900)``;
* the active power of slot ``k`` in W (an integer) is
  ``round(peak_w * DAILY[hour] * WEEKLY[weekday] * (1000 + noise_k) / 1000 / 1000)``
  with ``hour`` / ``weekday`` (Monday = 0) those of the slot start,
  ``DAILY`` and ``WEEKLY`` in per mille, and
  ``noise_k = splitmix64(seed ^ k) % 401 - 200`` (so +-20 %);
* the reactive power of slot ``k`` in var is ``P_k * q_permille // 1000``;
* ``peak_w``, ``q_permille`` and the clock drift come from
  ``splitmix64(seed + n)`` for n = 1, 2, 3 (:func:`seeded`).

Energy is the exact integral of that step function: :meth:`LoadModel.cumulative`
gives joules since the epoch origin of the model's cursor.  Registers read it
in Wh (``floor(J / 3600)``), so load-profile interval deltas (differences of
registers) sum exactly to the register advance.
"""

from __future__ import annotations

import datetime as _dt
from typing import List, Tuple

import numpy as np

__all__ = ["splitmix64", "seeded", "LoadModel", "MeterClock", "civil", "SLOT", "DAILY", "WEEKLY"]

SLOT = 900
_M64 = (1 << 64) - 1

#: Share of the peak per hour of the day, per mille: night low, a morning and a
#: larger evening peak (a household profile; the numbers are the simulator's own).
DAILY = (
    180, 150, 140, 140, 150, 200, 420, 650, 600, 450, 400, 420,
    480, 450, 400, 420, 520, 750, 950, 1000, 900, 700, 450, 260,
)  # fmt: skip
#: Weekday factor, per mille, Monday first: weekends use more at home.
WEEKLY = (950, 940, 950, 960, 1000, 1120, 1150)
_UTC = _dt.timezone.utc
_DAILY, _WEEKLY = np.array(DAILY, dtype=np.int64), np.array(WEEKLY, dtype=np.int64)
_TIER1 = np.array([not 7 <= h < 23 for h in range(24)])  # LoadModel.tier of each hour


def splitmix64(x: int) -> int:
    """SplitMix64 (Steele, Lea, Flood, OOPSLA 2014): one 64-bit mixing step."""
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def splitmix64_many(x: np.ndarray) -> np.ndarray:
    """:func:`splitmix64` of each element of a uint64 array (wrapping arithmetic)."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def seeded(seed: int) -> Tuple[int, int, int]:
    """(peak W, reactive per mille, clock drift in ppm) of a meter seed."""
    peak = 1500 + splitmix64((seed + 1) & _M64) % 2501  # 1.5 .. 4 kW
    q = 100 + splitmix64((seed + 2) & _M64) % 301  # tan(phi) 0.1 .. 0.4
    ppm = splitmix64((seed + 3) & _M64) % 101 - 50  # -50 .. +50 ppm
    return peak, q, ppm


def civil(epoch: float) -> _dt.datetime:
    """UTC calendar time of an epoch second (a conversion, not a clock read)."""
    return _dt.datetime(1970, 1, 1, tzinfo=_UTC) + _dt.timedelta(seconds=int(epoch // 1))


class LoadModel:
    """Deterministic household load of one meter (see the module docstring).

    ``cumulative(t)`` walks a forward cursor over the slots, so evaluating it
    at increasing times costs one step per slot crossed."""

    __slots__ = ("seed", "peak_w", "q_permille", "origin", "_k", "_c", "_last")

    def __init__(self, seed: int, origin: float = 0.0) -> None:
        self.seed = seed & _M64
        self.peak_w, self.q_permille, _ = seeded(self.seed)
        self.origin = int(origin // SLOT)  # slot where the integral starts
        self._k = self.origin  # cursor slot, and the joules before it per register
        self._c: List[int] = [0, 0, 0, 0, 0, 0]
        self._last: Tuple[int, Tuple[int, int]] = (-1, (0, 0))  # the slot asked for last

    def slot_power(self, k: int) -> Tuple[int, int]:
        """(W, var) of slot ``k``."""
        if self._last[0] == k:
            return self._last[1]
        t = k * SLOT  # the hour and weekday (1970-01-01 was a Thursday) of the slot start
        hour, weekday = t % 86400 // 3600, (t // 86400 + 3) % 7
        noise = splitmix64(self.seed ^ (k & _M64)) % 401 - 200
        p = round(self.peak_w * DAILY[hour] * WEEKLY[weekday] * (1000 + noise) / 1e9)
        self._last = (k, (p, p * self.q_permille // 1000))
        return self._last[1]

    def _walk(self, c: List[int], k0: int, k1: int) -> None:
        for j in range(k0, k1):
            last = self._last
            p, q = last[1] if last[0] == j else self.slot_power(j)
            h = (j * SLOT // 3600) % 24
            tr = 0 if 7 <= h < 23 else 1  # tier(j), written out: one call less a slot
            c[0] += p * SLOT
            c[1] += q * SLOT
            c[2 + tr] += p * SLOT
            c[4 + tr] += q * SLOT

    @staticmethod
    def tier(k: int) -> int:
        """Tariff tier of slot ``k``: 0 from 07:00 to 23:00 UTC, 1 otherwise
        (the simulator's own two-rate tariff)."""
        h = (k * SLOT // 3600) % 24
        return 0 if 7 <= h < 23 else 1

    def slot_powers(self, k: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """:meth:`slot_power` of each slot of ``k`` (int64, at or after 0)."""
        t = k * SLOT
        hour, weekday = t % 86400 // 3600, (t // 86400 + 3) % 7
        noise = (splitmix64_many(np.uint64(self.seed) ^ k.astype(np.uint64)) % 401).astype(
            np.int64
        ) - 200
        share = _DAILY[hour] * _WEEKLY[weekday] * (1000 + noise) * self.peak_w
        p = np.rint(share / 1e9).astype(np.int64)  # round(): half to even, as np.rint
        return p, p * self.q_permille // 1000

    def cumulative_many(self, ts: np.ndarray) -> np.ndarray:
        """:meth:`cumulative` at each of the increasing true times ``ts``
        (rows of its six sums), in one pass over the slots they span; the
        cursor ends where :meth:`cumulative` at the last time leaves it."""
        ks = np.maximum(np.floor_divide(ts, SLOT).astype(np.int64), self.origin)
        k0, k1 = self._k, int(ks[-1])
        if int(ks[0]) < k0:  # behind the cursor: the scalar path sums those afresh
            return np.array([self.cumulative(float(t)) for t in ts], dtype=np.float64)
        p, q = self.slot_powers(np.arange(k0, k1 + 1, dtype=np.int64))
        tier1 = _TIER1[np.arange(k0, k1 + 1) * SLOT // 3600 % 24]
        add = np.zeros((len(p) + 1, 6), dtype=np.int64)  # joules of each slot, by register
        add[0] = self._c
        add[1:, 0], add[1:, 1] = p * SLOT, q * SLOT
        add[1:, 2], add[1:, 3] = np.where(tier1, 0, p * SLOT), np.where(tier1, p * SLOT, 0)
        add[1:, 4], add[1:, 5] = np.where(tier1, 0, q * SLOT), np.where(tier1, q * SLOT, 0)
        before = np.cumsum(add, axis=0)  # row r: the sums before slot k0 + r
        i = ks - k0
        dt = ts - (ks * SLOT).astype(np.float64)
        pe, qe = p[i] * dt, q[i] * dt
        out = before[i].astype(np.float64)
        t1 = tier1[i]
        out[:, 0] += pe
        out[:, 1] += qe
        out[:, 2] += np.where(t1, 0.0, pe)
        out[:, 3] += np.where(t1, pe, 0.0)
        out[:, 4] += np.where(t1, 0.0, qe)
        out[:, 5] += np.where(t1, qe, 0.0)
        self._k, self._c = k1, [int(x) for x in before[k1 - k0]]
        self._last = (k1, (int(p[-1]), int(q[-1])))
        return out

    def cumulative(self, t: float) -> Tuple[float, ...]:
        """Joules since the start of the origin slot at true time ``t``
        (``t`` at or after it): (active, reactive, active tier 0, active
        tier 1, reactive tier 0, reactive tier 1)."""
        k = max(int(t // SLOT), self.origin)
        if k < self._k:  # behind the cursor: sum afresh, leave the cursor
            c = [0, 0, 0, 0, 0, 0]
            self._walk(c, self.origin, k)
        else:
            c = self._c
            if k > self._k:
                self._walk(c, self._k, k)
                self._k = k
        last = self._last
        p, q = last[1] if last[0] == k else self.slot_power(k)
        dt = t - k * SLOT
        pe, qe = p * dt, q * dt
        if self.tier(k):
            return (c[0] + pe, c[1] + qe, c[2] + 0.0, c[3] + pe, c[4] + 0.0, c[5] + qe)
        return (c[0] + pe, c[1] + qe, c[2] + pe, c[3] + 0.0, c[4] + qe, c[5] + 0.0)


class MeterClock:
    """The meter's own clock: runs ``ppm`` parts per million fast (or slow)
    against virtual time and can be set.  ``meter(t)`` = the meter's epoch
    second at virtual time ``t``."""

    __slots__ = ("ppm", "_t0", "_m0")

    def __init__(self, start: float, ppm: float) -> None:
        self.ppm = ppm
        self._t0, self._m0 = 0.0, float(start)

    def meter(self, t: float) -> float:
        return self._m0 + (t - self._t0) * (1.0 + self.ppm * 1e-6)

    def virtual(self, m: float) -> float:
        """Virtual time at which the meter clock shows ``m``."""
        return self._t0 + (m - self._m0) / (1.0 + self.ppm * 1e-6)

    def virtual_many(self, m: np.ndarray) -> np.ndarray:
        """:meth:`virtual` of each meter-clock time of ``m``."""
        return self._t0 + (m - self._m0) / (1.0 + self.ppm * 1e-6)

    def set(self, t: float, m: float) -> None:
        self._t0, self._m0 = float(t), float(m)
