"""A simulated meter's regular interval ends, a span at a time.

While only load-profile interval ends, demand interval ends and self reads
fall due, a meter's state moves by a pure function of virtual time: the
load model (:mod:`osgp.sim.model`) gives the energy at every end, the
interval and demand ends between two self reads do not read each other's
state, and a self read reads both.  :func:`advance_regular` computes each
stretch between self reads in one NumPy pass (energies, registers, deltas,
demand maxima) and writes its load-profile intervals into the BT64 ring a
block run at a time: the same images, the same state, as closing one end
after the other (``SimMeter._lp_close``, ``_demand_close``, ``_self_read``,
which the tests hold it to).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Tuple

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from osgp.sim.meter import SimMeter

__all__ = ["advance_regular", "SPAN_ENDS"]

#: Interval ends from which a span is walked here rather than one end at a
#: time: the NumPy pass costs about as much as 20 single ends, then little
#: per end (measured with the simulator's default load profile).
SPAN_ENDS = 24

_WH = 3600.0  # joules per Wh: registers read floor(J / 3600)


def advance_regular(m: SimMeter, now: float, demand_interval: int, power_fail_flag: int) -> None:
    """Close every interval, demand and self-read end of ``m`` due by ``now``
    in the order ``SimMeter._events`` gives them (by time; at one instant the
    interval end, then the demand end, then the self read)."""
    clock, step = m.clock, m.lp.step
    while True:
        sr = clock.virtual(m._sr_next)
        until = min(now, sr)  # the ends up to a self read due by now first, then the read
        lp_at = _due(m, m._lp_next, step, until)
        dmd_at = _due(m, m._dmd_next, demand_interval, until)
        _close_span(m, lp_at, dmd_at, demand_interval, power_fail_flag)
        if sr > now:
            return
        if sr > m.now:
            m.now = sr
        m._self_read(m._sr_next)
        m._sr_next += 86400


def _due(m: SimMeter, first: float, step: int, until: float) -> Tuple[np.ndarray, np.ndarray]:
    """(meter-clock times, virtual times) of the ends ``first``, ``first +
    step``, ... that fall at or before virtual time ``until``."""
    virtual = m.clock.virtual
    n = max(int((m.clock.meter(until) - first) // step) + 1, 0)
    while n and virtual(first + (n - 1) * step) > until:
        n -= 1
    while virtual(first + n * step) <= until:
        n += 1
    at = first + step * np.arange(n, dtype=np.float64)  # whole seconds: exact sums
    return at, m.clock.virtual_many(at)


def _close_span(
    m: SimMeter,
    lp_at: Tuple[np.ndarray, np.ndarray],
    dmd_at: Tuple[np.ndarray, np.ndarray],
    demand_interval: int,
    pf_flag: int,
) -> None:
    n_lp, n_dmd = len(lp_at[0]), len(dmd_at[0])
    if not n_lp and not n_dmd:
        return
    # an end the clock has already passed (it was set forward) closes now
    lp_t, dmd_t = np.maximum(lp_at[1], m.now), np.maximum(dmd_at[1], m.now)
    if m.lp.step == demand_interval and n_lp == n_dmd and lp_at[0][0] == dmd_at[0][0]:
        # the interval and demand ends fall at the same instants
        lp_e = dmd_e = _energies(m, lp_t)
    else:
        both = _energies(m, np.concatenate((lp_t, dmd_t)))
        lp_e, dmd_e = both[:n_lp], both[n_lp:]
    last = max(lp_t[-1] if n_lp else -np.inf, dmd_t[-1] if n_dmd else -np.inf)
    if last > m.now:
        m.now = float(last)
    m._e_memo = None
    if n_lp:
        _lp_closes(m, lp_at[0], lp_e, pf_flag)
    if n_dmd:
        _demand_closes(m, dmd_at[0], dmd_e, demand_interval)


def _energies(m: SimMeter, times: np.ndarray) -> np.ndarray:
    """``SimMeter._energy()`` at each virtual time (rows of six joule sums)."""
    base = np.asarray(m._base, dtype=np.float64)
    if not m._flowing:
        return np.broadcast_to(base, (len(times), len(base)))
    if len(times) > 1 and not (times[1:] >= times[:-1]).all():
        order = np.argsort(times, kind="stable")
        f = np.empty((len(times), 6), dtype=np.float64)
        f[order] = m.model.cumulative_many(m.start + times[order])
    else:
        f = m.model.cumulative_many(m.start + times)
    return (base + f) - np.asarray(m._f_base, dtype=np.float64)


def _lp_closes(m: SimMeter, at: np.ndarray, energy: np.ndarray, pf_flag: int) -> None:
    """``SimMeter._lp_close`` at each meter time of ``at`` in turn."""
    from osgp.sim.meter import write_block_end

    c = m.lp
    readings = np.floor_divide(energy[:, : c.channels], _WH).astype(np.int64)
    prev = np.vstack((np.asarray(m._lp_prev, dtype=np.int64), readings[:-1]))
    deltas = (readings - prev).astype("<i4")
    n = len(at)
    flags = np.full(n, 0 if m.powered else pf_flag, dtype=np.uint8)
    flags[0] |= m._lp_flags
    m._lp_prev = tuple(int(x) for x in readings[-1])
    m._lp_next = float(at[-1]) + c.step
    m._lp_flags = 0
    if not m.lp_enabled:
        return
    img = m._lp_img
    pos = 0
    while pos < n:
        if m._lp_valid == 0 or m._lp_nvi == c.intervals or m._lp_new_block:
            m._lp_open_block()
        i0 = m._lp_nvi
        k = min(n - pos, c.intervals - i0)
        base, end = m._lp_last * c.block_size, pos + k - 1
        write_block_end(img, base, float(at[end]), tuple(int(x) for x in readings[end]), c)
        bits = ((1 << k) - 1) << i0  # SIMPLE_INT_STATUS bits i0 .. i0 + k - 1
        for b in range(i0 // 8, (i0 + k - 1) // 8 + 1):
            img[base + c.simple_off + b] |= (bits >> (8 * b)) & 0xFF
        ip = base + c.int0 + i0 * c.int_size
        rec = np.frombuffer(img, dtype=np.uint8, count=k * c.int_size, offset=ip)
        rec = rec.reshape(k, c.int_size)
        rec[:, 0] = flags[pos : pos + k] << 4  # common flags high nibble, channel 0 status low
        rec[:, c.ext :] = deltas[pos : pos + k].view(np.uint8).reshape(k, 4 * c.channels)
        del rec  # the image may be resized again
        m._lp_nvi = i0 + k
        pos += k
    m._stamp += n


def _demand_closes(m: SimMeter, at: np.ndarray, energy: np.ndarray, interval: int) -> None:
    """``SimMeter._demand_close`` at each meter time of ``at`` in turn."""
    wh = np.floor_divide(energy[:, [0, 2, 3]], _WH).astype(np.int64)
    prev = np.vstack((np.asarray(m._dmd_start, dtype=np.int64), wh[:-1]))
    demand = (wh - prev) * 3600 // interval
    for i in range(3):
        j = int(np.argmax(demand[:, i]))  # the first end with the span's largest demand
        if demand[j, i] > m._max[i]:
            m._max[i], m._max_t[i] = int(demand[j, i]), float(at[j])
    m._dmd_start = (int(wh[-1, 0]), int(wh[-1, 1]), int(wh[-1, 2]))
    m._dmd_j0 = float(energy[-1, 0])
    m._dmd_next = float(at[-1]) + interval
    m._stamp += len(at)
